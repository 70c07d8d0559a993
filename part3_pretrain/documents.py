"""Retail documents to read: order emails, shipping notices, tickets, return forms, listings, invoices, chats.

The exchanges of ``domain`` are one customer message and one reply. Real support text also holds
documents that an agent reads before answering: an order confirmation, a courier's notice, a
ticket with internal notes, a returns form, a product listing, an invoice, a chat of a few turns.
``retail_documents(n, seed)`` writes ``n`` distinct short ones, cycling over ``DOCUMENT_KINDS``,
with slot values from open-ended pools (default ``open_values.open_pools()``), so a model
pretrained on them learns to find a specific in a varied document and copy it.

* Each kind has several layouts (field orders shuffled, optional fields and lines, alternative
  wordings per line), so no layout is one memorisable string.
* Where a document has a dialogue, its lines start "Customer: " and "Agent: " as in the rest of
  the corpus (no other line starts so: a ticket's customer field is "Name:" or "Client:"). Every
  agent turn restates at least one value that appears earlier in the document, and states no
  value of the document's own that is not there, except new information it gives (a tracking
  number or a courier the customer asked for). In a chat the last agent turn restates a value of
  the customer's first turn.
* Values are never parsed: any string shape works (an order id that already starts with "#" gets
  no second one). The one exception is arithmetic on invoices, done only when every amount shown
  reads "$<dollars>.<cents>"; otherwise the invoice shows no subtotal, discount or total.
* Numbers made up here (tracking, ticket, return and invoice numbers, totals, addresses) are
  redrawn whenever they would contain a held-out slot value (``slots.heldout_pattern``).

Everything is a pure function of (n, seed, values): seeded ``random.Random`` instances only, no
iteration over sets or hash-ordered containers. Imports only the standard library and part 3.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from part3_pretrain.open_values import open_pools
from part3_pretrain.slots import SlotPools, heldout_pattern

# A layout line: a template; a tuple of alternative templates (one that has all its values is
# drawn; "" leaves the line out); a list of lines written in a shuffled order; or the name of a
# topic's line ("@issue", "@note"). Templates are ``str.format`` strings over the fill's keys; one
# with a newline writes two lines together (an optional customer turn and its answer).
Line = str | tuple[str, ...] | list
MAX_WORDS = 110
MAX_CHARS = 700

# --------------------------------------------------------------------------------------------
# 1. Order confirmation emails.
# --------------------------------------------------------------------------------------------
_ORDER_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        (
            "Order confirmed: {order_ref}",
            "Subject: Order confirmed: {order_ref}",
            "Your order {order_ref} is confirmed",
        ),
        (
            "Hi {name}, thanks for your order placed on {date}.",
            "Hi {name}, we've received your order from {date}.",
            "Hello {name}, your order is in.",
        ),
        ("Items: 1 x {product} {amount}", "Items: {qty} x {product} ({amount})", "Item: {product}"),
        ("Ships with {carrier}. We'll email tracking once it leaves us.", "Delivery by {carrier}, 3-5 business days."),
        ("Promo applied: {promo_code}", ""),
    ),
    (
        ("Thanks for your order, {name}!", "Thank you, {name}!", "Order received"),
        ("Order {order_ref} | placed {date}", "Order {order_ref} ({date})", "Order number: {order_id}"),
        ("{product} .... {amount}", "{qty} x {product} .... {amount}", "{product}"),
        ("Carrier: {carrier}", "Shipping method: {carrier} standard", ""),
        ("Questions? Just reply to this email.", "Need changes? Reply within an hour.", ""),
    ),
    (
        ("ORDER CONFIRMATION", "Order summary", "Confirmation"),
        [
            "Order number: {order_id}",
            ("Name: {name}", "Ship to: {name}"),
            "Order date: {date}",
            ("Item: {product}", "Product: {product}"),
            ("Total: {amount}", "Amount paid: {amount}"),
            ("Shipping: {carrier}", "Courier: {carrier}"),
            ("Code: {promo_code}", "Discount code: {promo_code}", ""),
        ],
    ),
    (
        (
            "{name}, we've got your order! {order_ref} ({product}, {amount}) will ship with {carrier}.",
            "{name}, we've got your order! {order_ref} for the {product} will ship with {carrier}.",
            "We've got your order! {order_ref} ({product}) is being packed.",
        ),
        ("Placed {date}.", "Ordered on {date}.", ""),
        ("You saved with code {promo_code}.", ""),
    ),
    (
        ("Receipt for order {order_ref}", "Your receipt - order {order_id}"),
        ("{date}", "Date: {date}", ""),
        ("1x {product} - {amount}", "{qty}x {product} - {amount}", "{product}"),
        ("Paid with card ending {card4}", "Card: **** {card4}", ""),
        ("Promo: {promo_code}", ""),
        ("Shipping: {carrier}", "Sent via {carrier}", ""),
    ),
    (
        ("Dear {name},", "Hello {name},", "Hello,"),
        (
            "We have received your order of {date} for the {product} ({amount}).",
            "We have received your order for the {product} ({amount}).",
            "We have received your order for the {product}.",
        ),
        ("It will be sent by {carrier}, and your order number is {order_ref}.", "Your order number is {order_ref}."),
        ("Kind regards, the shop team", "Best wishes, customer care", ""),
    ),
)
_ORDER_REPLIES: tuple[tuple[str, str], ...] = (
    ("Customer: when did I place this order?", "Agent: You placed order {order_ref} on {date}."),
    ("Customer: what date was this ordered?", "Agent: Order {order_ref} was placed on {date}, {name}."),
    ("Customer: which courier is delivering it?", "Agent: {carrier} is delivering order {order_ref}."),
    ("Customer: who's shipping my {product}?", "Agent: Your {product} ships with {carrier}."),
    ("Customer: how much did I pay?", "Agent: You paid {amount} for the {product}."),
    ("Customer: what was the total again?", "Agent: The total for order {order_ref} was {amount}."),
    ("Customer: what's my order number?", "Agent: It's {order_ref} - the {product}."),
    ("Customer: what's my order number again?", "Agent: Your order number is {order_id}."),
    ("Customer: did my code go through?", "Agent: Yes, {promo_code} was applied to order {order_ref}."),
    ("Customer: can you confirm what I ordered?", "Agent: Order {order_ref} is for the {product}, placed {date}."),
    ("Customer: can you confirm what I ordered?", "Agent: Sure, {name}: one {product}, order {order_ref}."),
    ("Customer: which card did I use?", "Agent: The card ending {card4}, for {amount}."),
)

# --------------------------------------------------------------------------------------------
# 2. Shipping and delivery notices ({eta}: the date it is expected now; {old_eta}: before a delay).
# --------------------------------------------------------------------------------------------
_SHIPPING_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        ("Shipping update for order {order_ref}", "Your order {order_ref} has shipped"),
        ("{carrier} tracking: {tracking}", "Tracking number ({carrier}): {tracking}"),
        ("Expected delivery: {eta}", "Estimated arrival: {eta}"),
        ("Item: {product}", "Contents: {qty} x {product}", ""),
    ),
    (
        ("Good news, {name}! Your {product} is on its way.", "Your {product} is on its way, {name}."),
        "Carrier: {carrier}",
        ("Tracking number: {tracking}", "Track it with {tracking}."),
        ("Arriving by {eta}", "Due {eta}", ""),
    ),
    (
        ("DELIVERY NOTICE", "Dispatch note", "Parcel details"),
        [
            ("Order: {order_ref}", "Order no. {order_id}"),
            ("Courier: {carrier}", "Carrier: {carrier}"),
            "Tracking: {tracking}",
            ("Estimated arrival: {eta}", "ETA: {eta}"),
            ("Recipient: {name}", ""),
        ],
    ),
    (
        ("Delivery delayed: order {order_ref}", "Update: order {order_ref} will be late"),
        ("{carrier} has moved the delivery date of your parcel.", "{carrier} reported a delay at their depot."),
        ("Old date: {old_eta} | New date: {eta}", "It was due {old_eta}; it is now expected {eta}."),
        ("Tracking: {tracking}", ""),
        ("Sorry for the wait.", "We'll keep you posted.", ""),
    ),
    (
        (
            "Hi {name}, your {product} (order {order_ref}) will arrive later than planned.",
            "Hi {name}, order {order_ref} will arrive later than planned.",
        ),
        "{carrier} now expects to deliver it on {eta} instead of {old_eta}.",
        ("You can follow it with tracking number {tracking}.", ""),
    ),
    (
        ("Out for delivery today: {product}", "Arriving today: {product}"),
        ("Order {order_id} - {carrier}, tracking {tracking}", "Order {order_ref}, {carrier} {tracking}"),
        ("Deliver to: {name}, {address}", "Address: {address}", ""),
    ),
    (
        ("{carrier} | Parcel {tracking} | Status: in transit | ETA {eta}", "{carrier} | {tracking} | ETA {eta}"),
        ("Sender reference: order {order_ref}", "Ref: {order_id}"),
        ("Deliver to: {address}", ""),
    ),
)
_SHIPPING_REPLIES: tuple[tuple[str, str], ...] = (
    ("Customer: when will it get here?", "Agent: {carrier} expects to deliver order {order_ref} on {eta}."),
    ("Customer: when does it arrive?", "Agent: It's due {eta}, {name}."),
    ("Customer: what's the tracking number?", "Agent: It's {tracking}, with {carrier}."),
    ("Customer: which company has my parcel?", "Agent: {carrier} has it - tracking number {tracking}."),
    ("Customer: why did the date change from {old_eta}?", "Agent: {carrier} reported a delay; it's now due {eta}."),
    ("Customer: is this my {product}?", "Agent: Yes, tracking {tracking} is your {product}."),
    ("Customer: is this parcel my {product}?", "Agent: Yes, order {order_ref} is the {product}."),
    ("Customer: where is it being delivered?", "Agent: To {address}, by {carrier}."),
    ("Customer: which order is this?", "Agent: This is order {order_ref}, the {product}."),
)

# --------------------------------------------------------------------------------------------
# 3. Support tickets: fields, an issue and an internal note per topic, then the agent's reply.
# --------------------------------------------------------------------------------------------
_TICKET_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        ("Ticket {ticket} | Priority: {priority}", "Ticket {ticket} | {priority}"),
        ("Name: {name}", "Client: {name}"),
        "Order: {order_ref}",
        ("Item: {product}", ""),
        "@issue",
        "@note",
    ),
    (
        ("#{ticket} [open] {priority} priority, via {channel}", "#{ticket} [open] via {channel}"),
        ["Name: {name}", "Order: {order_ref}", "Item: {product}"],
        "@issue",
        "@note",
    ),
    (
        ("Case {ticket} - opened {date} via {channel}", "Case {ticket} - opened via {channel}"),
        ("Client: {name} (order {order_id})", "Order {order_ref}"),
        ("Product: {product}", ""),
        "@issue",
        "@note",
    ),
    (
        ("SUPPORT TICKET", "Support case"),
        [("ID: {ticket}", "Ticket no: {ticket}"), "Status: open", ("Priority: {priority}", ""), "Name: {name}"],
        [("Order number: {order_id}", "Order: {order_ref}"), ("Product: {product}", "")],
        "@issue",
        "@note",
    ),
    (
        ("INTERNAL - ticket {ticket}", "Internal ticket {ticket}"),
        ("{name} | order {order_ref} | {product}", "{name} | order {order_ref}"),
        "@issue",
        ("Priority: {priority}", ""),
        "@note",
    ),
)
_TICKET_TOPICS: Mapping[str, Mapping[str, Line]] = {
    "damaged": {
        "@issue": ("Issue: {product} arrived damaged", "Issue: item broken on arrival", "Problem: cracked in the box"),
        "@note": (
            "Note (agent {staff}): customer called twice, wants a replacement.",
            "Note ({staff}): photos received, damage confirmed.",
            "Internal: {staff} checked the photos - approve a replacement.",
        ),
    },
    "late": {
        "@issue": ("Issue: parcel late, {carrier} tracking not moving", "Problem: not delivered, was due {eta}"),
        "@note": (
            "Note (agent {staff}): {carrier} tracking {tracking}, last scan 5 days ago.",
            "Note ({staff}): customer needs it before the weekend.",
        ),
    },
    "charged_twice": {
        "@issue": ("Issue: charged twice ({amount} each)", "Problem: double charge of {amount}"),
        "@note": (
            "Note (agent {staff}): both payments visible, one to refund.",
            "Note ({staff}): bank statement attached, card ending {card4}.",
        ),
    },
    "wrong_colour": {
        "@issue": ("Issue: ordered {color}, received {other_color}", "Problem: wrong colour sent ({other_color})"),
        "@note": (
            "Note (agent {staff}): {color} in stock, can swap.",
            "Note ({staff}): customer is keeping the box for the return.",
        ),
    },
    "promo": {
        "@issue": ("Issue: promo code {promo_code} not applied", "Problem: code {promo_code} rejected at checkout"),
        "@note": (
            "Note (agent {staff}): code was valid on {date}, customer paid {amount}.",
            "Note ({staff}): code still active, refund the discount.",
        ),
    },
    "address": {
        "@issue": ("Issue: wrong address, should go to {address}", "Request: change delivery address to {address}"),
        "@note": ("Note (agent {staff}): not dispatched yet.", "Note ({staff}): warehouse can hold it until noon."),
    },
}
_TICKET_REPLIES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "damaged": (
        ("", "Agent: Hi {name}, sorry your {product} arrived damaged. A replacement for order {order_ref} is coming."),
        ("", "Agent: {name}, I'm sorry about the broken {product}. I've sent a new one on order {order_ref}."),
        ("", "Agent: Sorry about the damage, {name}. Order {order_ref} gets a free replacement, shipped today."),
        ("", "Agent: Sorry about the damage. I've set up a replacement on order {order_ref}."),
    ),
    "late": (
        ("", "Agent: Hi {name}, I've asked {carrier} to trace order {order_ref} and will update you tomorrow."),
        ("", "Agent: Sorry for the wait, {name}. {carrier} is tracing order {order_ref} ({tracking})."),
        ("", "Agent: {name}, order {order_ref} was due {eta}; I've opened a trace and will write again tomorrow."),
        ("", "Agent: Sorry order {order_ref} is late. I've opened a trace with the courier."),
    ),
    "charged_twice": (
        ("", "Agent: Hi {name}, you were charged {amount} twice for order {order_ref}; I've refunded one payment."),
        ("", "Agent: Sorry {name} - the second charge of {amount} is refunded and should show in 3-5 days."),
        ("", "Agent: Sorry about that - the extra {amount} charge on order {order_ref} is refunded."),
    ),
    "wrong_colour": (
        ("", "Agent: Hi {name}, sorry we sent {other_color}. A {color} {product} is on its way for order {order_ref}."),
        ("", "Agent: {name}, order {order_ref} is switched to {color}; please return the {other_color} one."),
        ("", "Agent: Sorry for the mix-up. A {color} one ships today on order {order_ref}."),
        ("", "Agent: Sorry we sent {other_color}. Which colour did you order? I'll swap it on order {order_ref}."),
    ),
    "promo": (
        ("", "Agent: Hi {name}, I've applied {promo_code} to order {order_ref} and refunded the discount."),
        ("", "Agent: Sorry {name}, code {promo_code} should have worked. I've refunded its value."),
        ("", "Agent: Code {promo_code} is now applied to order {order_ref}; the discount is refunded."),
    ),
    "address": (
        ("", "Agent: Hi {name}, order {order_ref} will now go to {address}."),
        ("", "Agent: Done, {name} - the {product} on order {order_ref} ships to {address}."),
        ("", "Agent: Updated: order {order_ref} goes to {address}."),
    ),
}

# --------------------------------------------------------------------------------------------
# 4. Returns and refund forms.
# --------------------------------------------------------------------------------------------
_RETURN_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        ("Return request {rma}", "Return {rma}"),
        [
            "Order: {order_ref}",
            "Item: {product}",
            "Reason: {reason}",
            ("Refund: {amount} to {method}", "Refund: {amount}"),
            ("Requested: {date}", ""),
        ],
    ),
    (
        ("RETURNS FORM", "Returns and refunds"),
        ("Name: {name}", ""),
        ("Order number: {order_id}", "Order: {order_ref}"),
        ("Product returned: {product}", "Item: {product}"),
        ("Why: {reason}", "Reason for return: {reason}"),
        ("Refund due: {amount}", ""),
        ("Refund method: {method}", ""),
        "RMA: {rma}",
    ),
    (
        ("Return authorised - {rma}", "Return approved: {rma}"),
        (
            "{name}, please pack the {product} from order {order_ref} and drop it off with {carrier}.",
            "Please pack the {product} from order {order_ref} and drop it off with {carrier}.",
        ),
        ("Refund of {amount} goes to your {method} after inspection.", "Refund of {amount} after inspection.", ""),
    ),
    (
        ("Refund form | order {order_ref} | {date}", "Refund form | order {order_ref}"),
        ("Item: {product} ({amount})", "Item: {product}"),
        "Reason given: {reason}",
        ("Send back with: {carrier}, label attached", ""),
        "Reference: {rma}",
    ),
    (
        ("Return {rma} received {date}", "Return {rma} received"),
        ("Status: inspected, refund approved", "Status: approved"),
        [("Amount: {amount}", ""), ("Paid to: {method}", ""), "Item: {product}", ("Order: {order_ref}", "")],
    ),
)
_RETURN_REPLIES: tuple[tuple[str, str], ...] = (
    ("", "Agent: Your return {rma} for the {product} is approved; {amount} will go back to your {method}."),
    ("", "Agent: Thanks {name}, return {rma} is logged for order {order_ref}."),
    ("", "Agent: Return {rma} confirmed. Once the {product} reaches us we refund {amount}."),
    ("Customer: has my refund gone through?", "Agent: Yes - {amount} for return {rma} was sent to your {method}."),
    ("Customer: what's my return number?", "Agent: It's {rma}, for the {product}."),
    ("Customer: how much will I get back?", "Agent: {amount}, refunded to your {method}."),
    ("Customer: how do I send it back?", "Agent: Drop the {product} off with {carrier} and quote {rma}."),
    ("Customer: did you get my reason?", "Agent: Yes - reason noted as {reason} for order {order_ref}."),
)

# --------------------------------------------------------------------------------------------
# 5. Product listings and product Q&A.
# --------------------------------------------------------------------------------------------
_PRODUCT_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        "{product}",
        ("{amount}", "Price: {amount}"),
        [
            ("Colours: {colors}", "Colors: {colors}"),
            "Size: {dims}",
            ("Material: {material}", ""),
            ("Weight: {weight}", ""),
        ],
    ),
    (
        ("{product} - {amount} - in stock", "{product} - {amount} - {stock} left"),
        ("Available in {colors}. Measures {dims}.", "Available in {colors}.", "Measures {dims}."),
        ("Made from {material}.", ""),
    ),
    (
        ("Product: {product} | Price: {amount} | Colours: {colors}", "Product: {product} | Price: {amount}"),
        ("Rated {rating} by {reviews} buyers", "{reviews} reviews, average {rating}", ""),
    ),
    (
        ("Q: Does the {product} come in {color}?", "Q: is the {product} sold in {color}?"),
        ("A: Yes - the {product} is available in {colors}.", "A: Yes, {color} is one of its colours: {colors}."),
        ("Q: And the price?", ""),
        ("A: {amount}.", ""),
    ),
    (
        ("Q: How big is the {product}?", "Q: What size is the {product}?"),
        ("A: It measures {dims} and weighs {weight}.", "A: It measures {dims}."),
    ),
    (
        ("Q: What is the {product} made of?", "Q: what material is the {product}?"),
        ("A: It's {material}, in {colors}.", "A: {material}."),
        ("Q: Is it {amount} everywhere?", ""),
        ("A: Yes, {amount} in every store.", ""),
    ),
    (
        ("Sale: {product} now {amount} (was {amount2})", "Price drop: {product}, {amount2} -> {amount}"),
        ("Use code {promo_code} for free shipping.", ""),
        ("Colours: {colors}", "Size: {dims}", ""),
    ),
)
_PRODUCT_REPLIES: tuple[tuple[str, str], ...] = (
    ("Customer: what colours does the {product} come in?", "Agent: It comes in {colors}."),
    ("Customer: how much is it?", "Agent: The {product} is {amount}."),
    ("Customer: how much is it now?", "Agent: The {product} is {amount}, down from {amount2}."),
    ("Customer: how big is it?", "Agent: The {product} measures {dims}."),
    ("Customer: is the {product} {material}?", "Agent: Yes, it's {material}."),
    ("Customer: can I get it in {color}?", "Agent: Yes, {color} is one of the options - {colors}."),
    ("Customer: is it heavy?", "Agent: The {product} weighs {weight}."),
    ("Customer: is the code still valid?", "Agent: Yes, {promo_code} still gives free shipping on the {product}."),
)

# --------------------------------------------------------------------------------------------
# 6. Invoices and receipts ({subtotal}, {discount}, {total}: only when the amounts add up, see
# ``_sums``; "{no_math}" is an empty marker for the lines that go where they do not).
# --------------------------------------------------------------------------------------------
_ITEMS_TABLE: tuple[Line, ...] = ("{product}  {amount}", "{product2}  {amount2}", "{product3}  {amount3}")
_INVOICE_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        ("INVOICE {invoice_no}", "Invoice no. {invoice_no}"),
        ("Billed to: {name}", ""),
        ("Date: {date}", ""),
        *_ITEMS_TABLE,
        ("Promo {promo_code}: -{discount}", "Discount ({promo_code}): -{discount}", "Code {promo_code}{no_math}"),
        "Total: {total}",
    ),
    (
        ("Receipt - order {order_ref} - {date}", "Receipt - order {order_ref}"),
        "1 x {product} ... {amount}",
        "1 x {product2} ... {amount2}",
        "1 x {product3} ... {amount3}",
        ("Subtotal {subtotal}", ""),
        ("Discount ({promo_code}) -{discount}", "Promo code {promo_code} applied{no_math}"),
        "Total paid {total}",
        ("Card ending {card4}", ""),
    ),
    (
        ("Tax invoice no. {invoice_no}, issued {date} to {name}", "Tax invoice no. {invoice_no} for {name}"),
        "Lines: {product} {amount}",
        ("{product2} {amount2}", "Line 2: {product2} {amount2}"),
        ("{product3} {amount3}", "Line 3: {product3} {amount3}"),
        ("Code used: {promo_code}", "Voucher: {promo_code}"),
        ("Amount due: {total}", "Balance: {total}"),
    ),
    (
        ("Thanks for your purchase, {name}.", "Thanks for your purchase."),
        "Items:",
        " - {product}: {amount}",
        " - {product2}: {amount2}",
        " - {product3}: {amount3}",
        ("Saved with {promo_code}: {discount}", "Code {promo_code} used{no_math}"),
        ("Total charged to card ending {card4}: {total}", "Total charged: {total}"),
    ),
    (
        ("Order {order_ref} - invoice {invoice_no}", "Invoice for order {order_ref}"),
        ("Paid {date}", "Issued {date}", ""),
        "{product} x1 = {amount}",
        "{product2} x1 = {amount2}",
        "{product3} x1 = {amount3}",
        ("{promo_code} applied: -{discount}", "{promo_code} applied{no_math}"),
        ("TOTAL {total}", "Grand total: {total}"),
    ),
)
_INVOICE_REPLIES: tuple[tuple[str, str], ...] = (
    ("Customer: what was the total?", "Agent: Invoice {invoice_no} comes to {total}."),
    ("Customer: what was the total?", "Agent: You paid {total} for order {order_ref}."),
    (
        "Customer: was my code {promo_code} applied?",
        "Agent: Yes, {promo_code} took {discount} off, so you paid {total}.",
    ),
    ("Customer: did the discount work?", "Agent: It did - {promo_code} saved you {discount}."),
    ("Customer: how much was the {product2}?", "Agent: The {product2} cost {amount2}."),
    ("Customer: what did the {product} cost?", "Agent: The {product} cost {amount}."),
    ("Customer: which card did you charge?", "Agent: The card ending {card4}, for {total}."),
    ("Customer: what's the invoice number?", "Agent: It's {invoice_no}, dated {date}."),
    (
        "Customer: can you resend this invoice?",
        "Agent: Sure, {name} - invoice {invoice_no} is on its way to your email.",
    ),
)

# --------------------------------------------------------------------------------------------
# 7. Multi-turn chats: the last agent turn restates a value of the customer's first turn.
# --------------------------------------------------------------------------------------------
_CHAT_LAYOUTS: tuple[tuple[Line, ...], ...] = (
    (
        (
            "Customer: Hi, order {order_ref} came today and the {product} is cracked.",
            "Customer: my {product} from order {order_ref} arrived broken.",
            "Customer: Hello, this is {name}. The {product} in order {order_ref} is damaged.",
        ),
        (
            "Agent: I'm sorry about the {product}. Would you like a replacement or a refund?",
            "Agent: Sorry to hear the {product} is damaged! Do you want a refund or a replacement?",
        ),
        ("Customer: A replacement, please.", "Customer: new one please", "Customer: I'd rather have a replacement."),
        (
            "Agent: Done - a new {product} for order {order_ref} ships today.",
            "Agent: I've set up a replacement on order {order_ref}; tracking follows by email.",
        ),
        (
            "Customer: Do I need to send the broken one back?\nAgent: No need - keep it. Order {order_ref} is all set.",
            "",
        ),
    ),
    (
        (
            "Customer: I need to change the delivery address for order {order_ref}.",
            "Customer: hi, can order {order_ref} go to a different address?",
        ),
        (
            "Agent: Sure, I can update order {order_ref}. What's the new address?",
            "Agent: Of course - order {order_ref} hasn't left yet. Where should it go?",
        ),
        ("Customer: {address}, please.", "Customer: It should go to {address}."),
        (
            "Agent: Updated - order {order_ref} will now go to {address}.",
            "Agent: Done: {address} for order {order_ref}.",
        ),
    ),
    (
        (
            "Customer: I used code {promo_code} on order {order_ref} but it wasn't taken off.",
            "Customer: my code {promo_code} didn't work on order {order_ref}.",
        ),
        (
            "Agent: Let me check order {order_ref}. How much were you charged?",
            "Agent: Sorry about {promo_code}! What did order {order_ref} cost you?",
        ),
        ("Customer: {amount}.", "Customer: I paid {amount}."),
        (
            "Agent: Thanks - I've applied {promo_code} and refunded its value from the {amount}.",
            "Agent: Fixed: {promo_code} is now on order {order_ref}, and part of the {amount} is refunded.",
        ),
    ),
    (
        (
            "Customer: Order {order_ref} was meant to arrive {date} and it's still not here.",
            "Customer: hi, order {order_ref} should have come on {date}. nothing yet.",
        ),
        (
            "Agent: Sorry order {order_ref} is late. Which courier is it with?",
            "Agent: Sorry about that! Is order {order_ref} with a courier you can see?",
        ),
        ("Customer: {carrier}.", "Customer: It says {carrier}."),
        (
            "Agent: I've asked {carrier} to trace order {order_ref}; I'll email you by tomorrow.",
            "Agent: Thanks. {carrier} is now tracing order {order_ref}, due on {date}.",
        ),
    ),
    (
        (
            "Customer: I ordered the {product} in {color} but got {other_color}. Order {order_ref}.",
            "Customer: order {order_ref}: wrong colour, I picked {color} and the {product} is {other_color}.",
        ),
        ("Agent: Sorry about that! I can swap the {product} for a {color} one.", "Agent: Sorry - we can send {color}."),
        ("Customer: great, how do I send it back?", "Customer: ok, what do I do with this one?"),
        (
            "Agent: Use the emailed label and write order {order_ref} on the parcel; the {color} one ships today.",
            "Agent: Send the {other_color} {product} back with the free label; order {order_ref} gets {color}.",
        ),
    ),
    (
        ("Customer: Hi, it's {name}. Can I get tracking for order {order_ref}?", "Customer: tracking for {order_ref}?"),
        (
            "Agent: Happy to help. What's the postcode for order {order_ref}?",
            "Agent: Sure - order {order_ref}. Postcode?",
        ),
        ("Customer: {postcode}", "Customer: it's {postcode}"),
        (
            "Agent: Thanks. Order {order_ref} shipped with {carrier}; tracking number {tracking}.",
            "Agent: Found it: order {order_ref}, {carrier}, {tracking}.",
        ),
    ),
    (
        (
            "Customer: I was charged {amount} for order {order_ref} but I expected {amount2}.",
            "Customer: order {order_ref} cost me {amount}, the site showed {amount2}?",
        ),
        "Agent: Sorry about that - I can see the {amount} charge. Did you use a promo code?",
        ("Customer: no, just the listed price.", "Customer: no code."),
        (
            "Agent: Then order {order_ref} should be {amount2}; I've corrected the {amount} charge.",
            "Agent: You're right, {amount2} is the price. I've adjusted the {amount} charge on order {order_ref}.",
        ),
        ("Customer: Thanks!\nAgent: You're welcome! Order {order_ref} is settled.", ""),
    ),
)
_CHAT_NEW = frozenset({"carrier", "tracking"})  # what an agent in a chat may tell the customer


@dataclass(frozen=True)
class _Kind:
    """One kind of document: its layouts, the Q&A or replies after it, what is optional."""

    name: str
    layouts: tuple[tuple[Line, ...], ...]
    replies: Mapping[str, tuple[tuple[str, str], ...]]  # topic ("" = any) -> (customer line, agent line)
    p_reply: float = 0.5
    optional: tuple[tuple[str, ...], ...] = ()  # groups of keys each left out with probability 0.3
    topics: Mapping[str, Mapping[str, Line]] = field(default_factory=dict)
    new: frozenset[str] = frozenset()  # keys an agent may state that the document does not


_KINDS: tuple[_Kind, ...] = (
    _Kind(
        "order_confirmation",
        _ORDER_LAYOUTS,
        {"": _ORDER_REPLIES},
        optional=(("name",), ("date",), ("amount",), ("carrier",), ("promo_code",), ("card4",)),
    ),
    _Kind("shipping_notice", _SHIPPING_LAYOUTS, {"": _SHIPPING_REPLIES}, optional=(("name",), ("address",))),
    _Kind("support_ticket", _TICKET_LAYOUTS, _TICKET_REPLIES, 1.0, (("product",),), _TICKET_TOPICS),
    _Kind("return_form", _RETURN_LAYOUTS, {"": _RETURN_REPLIES}, 0.8, (("name",), ("date",), ("method",))),
    _Kind("product_info", _PRODUCT_LAYOUTS, {"": _PRODUCT_REPLIES}, 0.4, (("material",), ("weight",))),
    _Kind(
        "invoice",
        _INVOICE_LAYOUTS,
        {"": _INVOICE_REPLIES},
        0.5,
        (("product3", "amount3"), ("product2", "amount2", "product3", "amount3"), ("promo_code",), ("card4",)),
    ),
    _Kind("chat", _CHAT_LAYOUTS, {}, 0.0, new=_CHAT_NEW),
)
DOCUMENT_KINDS: tuple[str, ...] = tuple(kind.name for kind in _KINDS)


# --------------------------------------------------------------------------------------------
# Values.
# --------------------------------------------------------------------------------------------
_COLOURS = ("black", "navy", "sage", "sand", "charcoal", "olive", "rust", "cream", "plum", "stone", "teal", "coral")
_MATERIALS = ("recycled nylon", "cotton canvas", "brushed steel", "walnut", "cork", "hemp", "ceramic", "wool felt")
_REASONS = ("wrong size", "changed my mind", "arrived damaged", "not as described", "doesn't fit", "faulty", "late")
_METHODS = ("original card", "store credit balance", "gift card", "PayPal account", "bank account")
_PRIORITIES = ("low", "normal", "high", "urgent")
_CHANNELS = ("phone", "email", "chat", "web form")
_STREETS = ("Road", "Street", "Lane", "Avenue", "Close", "Way")
_SHAPES = {  # made-up numbers: "#" a digit, "@" a capital letter
    "tracking": ("1Z@@@######", "TRK########", "##########", "@@#########@@", "JD######"),
    "ticket": ("#####", "######"),
    "rma": ("RA-#####", "R######", "RET-####-@@"),
    "invoice_no": ("INV-#####", "####-####", "INV######"),
    "card4": ("####",),
    "postcode": ("#####", "@@# #@@", "@# #@@"),
}
_DOLLARS = re.compile(r"\$(\d{1,3}(?:,\d{3})*|\d+)\.(\d{2})")  # "$12.50", "$4,353.21"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ALIASES = {"order_ref": "order_id"}  # display form -> the key of the value it shows


def _made(rng: random.Random, make: Callable[[random.Random], str]) -> str:
    """A made-up string from ``make``, redrawn until it holds no held-out value."""
    while True:
        text = make(rng)
        if not heldout_pattern().search(text):
            return text


def _shape(rng: random.Random, shapes: Sequence[str]) -> str:
    """A string of one of ``shapes`` with its "#" and "@" filled by random digits and letters."""
    shape = rng.choice(shapes)
    return "".join(
        str(rng.randrange(10)) if c == "#" else rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") if c == "@" else c for c in shape
    )


def _distinct(rng: random.Random, pool: Sequence[str], k: int) -> list[str]:
    """``k`` values of ``pool`` at different places in it (repeats only from a pool under ``k``)."""
    return rng.sample(pool, k) if len(pool) >= k else rng.choices(pool, k=k)


def _order_ref(rng: random.Random, order_id: str) -> str:
    """How a document shows an order id: "#A1234" or "A1234" (never a second "#")."""
    return order_id if order_id.startswith("#") or rng.random() < 0.4 else "#" + order_id


def _fill(values: SlotPools, rng: random.Random) -> dict[str, str]:
    """Every value a document may show: pool values, made-up numbers, listing details."""
    name, staff = _distinct(rng, values["customer"], 2)
    product, product2, product3 = _distinct(rng, values["product"], 3)
    amount, amount2, amount3 = _distinct(rng, values["amount"], 3)
    date, eta, old_eta = _distinct(rng, values["date"], 3)
    order_id = rng.choice(values["order_id"])
    colours = rng.sample(_COLOURS, 4)
    a, b, c = sorted(rng.sample(range(4, 90), 3), reverse=True)
    fill = dict(name=name, staff=staff, product=product, product2=product2, product3=product3)
    fill.update(amount=amount, amount2=amount2, amount3=amount3, date=date, eta=eta, old_eta=old_eta)
    fill.update(order_id=order_id, order_ref=_order_ref(rng, order_id), carrier=rng.choice(values["carrier"]))
    fill.update(promo_code=rng.choice(values["promo_code"]), qty=str(rng.choice((1, 2, 2, 3))))
    fill.update({key: _made(rng, lambda r, s=shapes: _shape(r, s)) for key, shapes in _SHAPES.items()})
    fill.update(
        colors=f"{colours[0]}, {colours[1]} and {colours[2]}",
        color=rng.choice(colours[:3]),
        other_color=colours[3],
        dims=f"{a} x {b} x {c} cm",
        weight=f"{rng.randrange(2, 95) / 10:.1f} kg",
        material=rng.choice(_MATERIALS),
        rating=f"4.{rng.randrange(10)}/5",
        reviews=str(rng.randrange(3, 900)),
        stock=str(rng.randrange(2, 20)),
        priority=rng.choice(_PRIORITIES),
        channel=rng.choice(_CHANNELS),
        reason=rng.choice(_REASONS),
        method=rng.choice(_METHODS),
        address=_made(rng, lambda r: f"{r.randrange(2, 300)} {r.choice(values['customer'])} {r.choice(_STREETS)}"),
    )
    return fill


def _money(cents: int) -> str:
    """Cents as "$1,234.50"."""
    return f"${cents // 100:,}.{cents % 100:02d}"


def _sums(fill: Mapping[str, str], keys: set[str], rng: random.Random) -> dict[str, str]:
    """Subtotal, discount (when a promo code is shown) and total of the amounts shown, when every
    one of them reads "$D.CC" and no result is a held-out value; else the empty "no_math" marker."""
    cents = []
    for key in ("amount", "amount2", "amount3"):
        m = _DOLLARS.fullmatch(fill[key]) if key in keys else None
        if key in keys and m is None:
            return {"no_math": ""}
        cents += [int(m.group(1).replace(",", "")) * 100 + int(m.group(2))] if m else []
    subtotal = sum(cents)
    discount = subtotal * rng.choice((10, 15, 20, 25)) // 100 if "promo_code" in keys else 0
    out = {"subtotal": _money(subtotal), "total": _money(subtotal - discount)}
    if discount:
        out["discount"] = _money(discount)
    if any(heldout_pattern().search(v) for v in out.values()):
        return {"no_math": ""}
    return out


# --------------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _needs(template: str) -> frozenset[str]:
    """The keys a template fills in."""
    return frozenset(_PLACEHOLDER.findall(template))


def _canon(keys: frozenset[str]) -> frozenset[str]:
    """``keys`` with each display form ("order_ref") as the value it shows ("order_id")."""
    return frozenset(_ALIASES.get(k, k) for k in keys)


def _render(
    rng: random.Random, lines: Sequence[Line], fill: Mapping[str, str], keys: set[str], macros: Mapping[str, Line]
) -> list[tuple[str, frozenset[str]]]:
    """The layout's lines (see ``Line``) written with ``fill``, each with the keys it shows."""
    out: list[tuple[str, frozenset[str]]] = []
    for line in lines:
        line = macros.get(line, line) if isinstance(line, str) else line
        if isinstance(line, list):
            block = list(line)
            if rng.random() < 0.7:
                rng.shuffle(block)
            out += _render(rng, block, fill, keys, macros)
            continue
        options = [t for t in ((line,) if isinstance(line, str) else line) if _needs(t) <= keys]
        template = rng.choice(options) if options else ""
        out += [(part.format_map(fill), _needs(part)) for part in template.split("\n") if part]
    return out


def _reply(kind: _Kind, topic: str, shown: set[str], keys: set[str], rng: random.Random) -> list[str]:
    """A customer line (or none) and an agent line that fit what the document shows: the agent
    restates at least one shown value and adds none but the kind's new information."""
    pairs = kind.replies.get("", ()) + (kind.replies.get(topic, ()) if topic else ())
    fits = [
        (c, a)
        for c, a in pairs
        if _canon(_needs(c)) <= shown
        and _canon(_needs(a)) <= shown | (kind.new & keys)
        and _canon(_needs(a)) & (shown - kind.new)
    ]
    return [t for t in rng.choice(fits) if t] if fits else []


@dataclass(frozen=True)
class _Doc:
    """A document, its kind, the values it shows before any agent does (pool values as drawn),
    and the keys and values an agent states first (new information)."""

    kind: str
    text: str
    facts: tuple[str, ...]
    new_keys: tuple[str, ...]
    new: tuple[str, ...]


def _write(kind: _Kind, fill: dict[str, str], rng: random.Random) -> _Doc:
    """One document of ``kind`` with values from ``fill``."""
    keys = set(fill) - {key for group in kind.optional if rng.random() < 0.3 for key in group}
    sums = _sums(fill, keys, rng)
    fill, keys = {**fill, **sums}, keys | set(sums)
    topic = rng.choice(sorted(kind.topics)) if kind.topics else ""
    lines = _render(rng, rng.choice(kind.layouts), fill, keys, kind.topics.get(topic, {}))
    if rng.random() < kind.p_reply:
        shown = {key for _, needs in lines for key in _canon(needs)}
        lines += [(t.format_map(fill), _needs(t)) for t in _reply(kind, topic, shown, keys, rng)]
    seen: set[str] = set()
    new: set[str] = set()
    for text, needs in lines:
        if text.startswith("Agent: "):
            new |= _canon(needs) - seen
        seen |= _canon(needs)
    facts = sorted({fill[k] for k in seen - new if fill[k]})
    texts = "\n".join(text for text, _ in lines)
    return _Doc(kind.name, texts, tuple(facts), tuple(sorted(new)), tuple(sorted(fill[k] for k in new)))


def _fits(text: str) -> bool:
    """Short enough for the model's 160-token context (with room to spare)."""
    return len(text) <= MAX_CHARS and len(text.split()) <= MAX_WORDS


def _documents(n: int, seed: int, values: SlotPools | None) -> list[_Doc]:
    """``n`` distinct documents, kinds in turn, with what each shows (for the tests)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    values = values if values is not None else open_pools()
    rng = random.Random(f"documents-{seed}")
    docs: dict[str, _Doc] = {}  # insertion-ordered: no document twice
    tries = 0
    while len(docs) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"could not write {n} distinct documents from these pools")
        doc = _write(_KINDS[len(docs) % len(_KINDS)], _fill(values, rng), rng)
        if doc.text not in docs and _fits(doc.text):
            docs[doc.text] = doc
    return list(docs.values())


def retail_documents(n: int, seed: int = 0, values: SlotPools | None = None) -> list[str]:
    """``n`` distinct short retail documents (order confirmations, shipping notices, support
    tickets, return forms, product listings and Q&A, invoices, multi-turn chats), kinds in turn
    (``DOCUMENT_KINDS``), with slot values from ``values`` (default ``open_pools()``). Each is at
    most ``MAX_WORDS`` words and ``MAX_CHARS`` characters. A pure function of (n, seed, values)."""
    return [doc.text for doc in _documents(n, seed, values)]
