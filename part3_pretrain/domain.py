"""The retail world the SFT generator and the pretraining corpus both write with.

One set of intents (``INTENT_SPECS``: what a customer asks, in their words and a third person's,
and what a good agent answers) and phrase tables (refs to an order or product, greetings,
acknowledgements, closes, ...), split once into a train and a held-out side of the templates
(``phrasing``; ``template_leaks`` finds held-out phrasing in any text). Part 4's generator
(``part4_sft.synthetic``) rates and degrades replies written here; part 3's corpus
(``part3_pretrain.corpus``, kind "dialogue") writes ``dialogue_documents`` with it.

Slot values are injected, never global: every writer takes a ``SlotPools``
(``split_pools("train")`` or ``split_pools("heldout")`` from ``slots``, or the open-ended
``open_values.open_pools()``). ``make_context`` writes a customer message or scenario line,
``good_reply`` the reply a careful agent gives (acknowledges, by name when given; restates every
specific; answers the intent; a concrete next step; a polite close), ``good_parts`` and
``assemble`` its pieces for callers that vary them. Everything is a pure function of the
``random.Random`` passed in and of the tables: no global RNG, no dependence on hash order.

Imports only the standard library and ``part3_pretrain.slots`` / ``open_values`` (part 3 never
imports part 4).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from part3_pretrain.open_values import open_pools
from part3_pretrain.slots import PRODUCT_ITEMS, SlotPools
from part3_pretrain.variety import compose_request, map_outside, vary_message

COMPOSED_REQUEST_SHARE = 0.5  # train-side customer messages whose request is composed, not a template


# --------------------------------------------------------------------------------------------
# Intents. Templates use {ref} (the order/product/date noun phrase, rendered in the right voice)
# and the intent's extra slots ({amount}, {carrier}, {promo_code}). A "topic|" prefix ties a
# customer question to the bodies that answer it; untagged templates fit every topic.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    name: str
    keywords: str  # regex: a response that matches none of these does not address the intent
    refs: tuple[str, ...]  # allowed specifics: "O" order id, "P" product, "OP" both
    customer: tuple[str, ...]  # first-person problem statements
    scenario: tuple[str, ...]  # third-person verb phrases after "Customer <name>"
    body: tuple[str, ...]  # response statement (no acknowledgement, no action)
    next: tuple[str, ...]  # response next step (a concrete action)
    extras: tuple[str, ...] = ()  # slots always mentioned besides the ref
    apology: bool = True  # complaint (apologise) or neutral request (thank)
    trouble: tuple[str, ...] = ()  # what to apologise for
    categories: tuple[str, ...] | None = None  # product categories the intent makes sense for
    product_head: bool = False  # the product, not the order, is what the ref must be about


INTENT_SPECS: tuple[Intent, ...] = (
    Intent(
        "order_status",
        r"shipped|in transit|on its way|status|dispatched|ship|out for delivery",
        ("O", "OP"),
        (
            "where is {ref}?",
            "can you tell me the status of {ref}?",
            "any update on {ref}?",
            "I haven't heard anything about {ref} since I paid. has it shipped?",
            "I'd like to know when {ref} will ship.",
            "is {ref} on its way yet?",
        ),
        ("wants to know the status of {ref}", "is asking where {ref} is", "asks whether {ref} has shipped"),
        (
            "{ref} has shipped and is currently in transit",
            "{ref} left our warehouse yesterday and is on its way to you",
            "{ref} is packed and scheduled to ship today",
            "{ref} is in transit and due to arrive in 2 to 3 business days",
        ),
        (
            "I've emailed you the tracking link",
            "you'll receive a tracking link by email shortly",
            "you can track it anytime from the Orders page of your account",
            "I'll send you an update as soon as it's out for delivery",
        ),
        apology=False,
    ),
    Intent(
        "late_delivery",
        r"delay|delayed|late|running behind|stuck|held up",
        ("O", "OP"),
        (
            "{ref} was supposed to arrive days ago and the {carrier} tracking hasn't updated.",
            "I'm still waiting for {ref}. {carrier} says it's delayed.",
            "{ref} is late. the {carrier} tracking has been stuck for a week.",
            "why is {ref} taking so long? it shipped with {carrier} ages ago.",
            "{carrier} keeps pushing back the delivery of {ref}.",
        ),
        (
            "reports that {ref}, shipped with {carrier}, is late",
            "says {ref} is delayed and the {carrier} tracking is stuck",
            "is still waiting for {ref}, which {carrier} has not delivered",
        ),
        (
            "{ref} is running late with {carrier}",
            "{carrier} has reported a delay on {ref}",
            "{ref} is held up at a {carrier} sorting facility",
            "{ref} is delayed on the {carrier} side",
        ),
        (
            "I've opened a trace with them and you'll get an update within 24 hours",
            "I've asked them to expedite it and will email you the new delivery date",
            "I'll refund the shipping cost and send you an update by tomorrow",
            "if it hasn't arrived within 3 business days, I'll send a free replacement",
        ),
        extras=("carrier",),
        trouble=("the delay", "the late delivery", "the wait"),
    ),
    Intent(
        "missing_item",
        r"missing|left out|didn't make it|not included|wasn't included",
        ("P", "OP"),
        (
            "my package arrived but {ref} wasn't in the box.",
            "{ref} is missing from my delivery.",
            "I got my order but {ref} was not included.",
            "the box came without {ref}.",
            "everything arrived except {ref}.",
        ),
        (
            "says {ref} was missing from the package",
            "received their delivery without {ref}",
            "reports a missing item: {ref}",
        ),
        (
            "{ref} was missing from your package",
            "{ref} was left out of your delivery",
            "{ref} didn't make it into the box",
            "{ref} wasn't included in your parcel",
        ),
        (
            "I've arranged for it to ship separately today at no charge",
            "I'll send it out today with express shipping",
            "I've issued a full refund for it, which will appear within 5 business days",
            "I've shipped it separately, and you'll get the tracking details by email",
        ),
        trouble=("the missing item", "the incomplete delivery"),
        product_head=True,
    ),
    Intent(
        "damaged_item",
        r"damag\w*|broken|crack\w*|dent\w*",
        ("O", "P", "OP"),
        (
            "{ref} arrived damaged.",
            "{ref} came broken. the box was crushed.",
            "{ref} arrived with a crack in it.",
            "I just opened {ref} and it's damaged.",
            "{ref} was dented when it arrived.",
        ),
        (
            "has received a damaged item: {ref}",
            "says {ref} arrived broken",
            "reports that {ref} was damaged in transit",
        ),
        (
            "{ref} arrived damaged",
            "{ref} was damaged in transit",
            "{ref} got broken on the way to you",
            "{ref} reached you with damage",
        ),
        (
            "I've sent a free replacement that ships today",
            "I've emailed you a prepaid return label and a replacement is on its way",
            "please reply with a photo of the damage and I'll ship a replacement right away",
            "I've issued a full refund, which you'll see within 5 business days",
        ),
        trouble=("the damage", "the broken item", "the damaged delivery"),
        product_head=True,
    ),
    Intent(
        "wrong_item",
        r"wrong|mix-up|incorrect|instead",
        ("O", "P", "OP"),
        (
            "I ordered {ref} but received something completely different.",
            "the package for {ref} had the wrong item inside.",
            "you sent me the wrong item instead of {ref}.",
            "{ref} came but it's not what I ordered.",
        ),
        (
            "received the wrong item instead of {ref}",
            "says the wrong product was sent for {ref}",
            "got someone else's item in place of {ref}",
        ),
        (
            "you received the wrong item instead of {ref}",
            "we sent the wrong item for {ref}",
            "there was a mix-up at our warehouse with {ref}",
            "an incorrect item was packed in place of {ref}",
        ),
        (
            "I've shipped the correct item today and emailed you a prepaid return label",
            "please use the prepaid return label I've emailed to send the wrong one back",
            "I've arranged a free swap, and you'll receive the correct item within 3 business days",
            "I've emailed you a return label, and the right item ships today",
        ),
        trouble=("the mix-up", "the wrong item"),
        product_head=True,
    ),
    Intent(
        "return_request",
        r"return\w*|send back|sending back",
        ("O", "P", "OP"),
        (
            "I'd like to return {ref}.",
            "how do I return {ref}? it doesn't suit me.",
            "can I send back {ref}?",
            "I want to return {ref}, I changed my mind.",
            "is it too late to return {ref}?",
        ),
        ("wants to return {ref}", "is asking how to return {ref}", "would like to send back {ref}"),
        (
            "{ref} is eligible for a return",
            "{ref} is within our 30-day return window",
            "returning {ref} is no problem",
            "{ref} qualifies for a free return",
        ),
        (
            "I've emailed you a prepaid return label",
            "please pack it in its original box and drop it at any carrier location with the label I've sent",
            "I've started the return, and the refund will be processed once we receive it",
            "you'll receive a prepaid label by email in a few minutes",
        ),
        apology=False,
    ),
    Intent(
        "refund_status",
        r"refund\w*|money back|reimburs\w*",
        ("O", "P", "OP"),
        (
            "I returned {ref} two weeks ago and still haven't received my refund of {amount}.",
            "where is my {amount} refund for {ref}?",
            "when will I get the {amount} back for {ref}?",
            "my refund of {amount} for {ref} hasn't shown up yet.",
        ),
        (
            "is waiting for a refund of {amount} for {ref}",
            "asks about the status of their {amount} refund for {ref}",
            "has not yet received the {amount} refund for {ref}",
        ),
        (
            "your refund of {amount} for {ref} was approved",
            "the {amount} refund for {ref} has been processed on our side",
            "your {amount} refund for {ref} went through today",
            "the refund of {amount} for {ref} left our account this morning",
        ),
        (
            "you'll see it on your original payment method within 5 business days",
            "please allow 3 to 5 business days for your bank to post it",
            "I've emailed you the confirmation with the transaction reference",
            "I'll chase the payments team if it hasn't posted within 7 days",
        ),
        extras=("amount",),
        trouble=("the wait", "the slow refund"),
    ),
    Intent(
        "cancel_order",
        r"cancel\w*",
        ("O", "OP"),
        (
            "please cancel {ref}.",
            "I need to cancel {ref} before it ships.",
            "can I still cancel {ref}? I ordered it by mistake.",
            "I placed {ref} by accident, please cancel it.",
        ),
        (
            "wants to cancel {ref}",
            "asks to cancel {ref} before it ships",
            "placed {ref} by mistake and wants it cancelled",
        ),
        (
            "{ref} has been cancelled before it shipped",
            "{ref} is now cancelled",
            "the cancellation of {ref} went through",
            "{ref} was stopped and cancelled in time",
        ),
        (
            "you'll receive a full refund to your original payment method in a few days",
            "I've emailed you the cancellation confirmation",
            "the refund will show up within 5 business days",
            "I've voided the pending charge, so you won't be billed",
        ),
        apology=False,
    ),
    Intent(
        "exchange_size",
        r"exchang\w*|size|swap\w*",
        ("P", "OP"),
        (
            "{ref} is too small. can I exchange it for a larger size?",
            "I need a different size for {ref}.",
            "can I swap {ref} for a size medium?",
            "{ref} runs big. I'd like to exchange it for a smaller size.",
        ),
        (
            "wants to exchange {ref} for a different size",
            "needs a larger size of {ref}",
            "asks to swap {ref} for a smaller size",
        ),
        (
            "exchanging {ref} for a different size is free",
            "a size exchange for {ref} is no problem",
            "{ref} can be swapped for another size at no cost",
        ),
        (
            "I've reserved the new size and emailed you a prepaid return label",
            "please reply with the size you'd like and I'll ship it right away",
            "I've set up the exchange, and the new size ships once we receive the original",
        ),
        apology=False,
        categories=("apparel",),
        product_head=True,
    ),
    Intent(
        "payment_failed",
        r"payment|charge|declined|billing|card",
        ("O", "P", "OP"),
        (
            "my payment of {amount} for {ref} keeps getting declined.",
            "I was charged {amount} for {ref} but the order says payment failed.",
            "why did my {amount} payment for {ref} fail?",
            "checkout rejects my card every time I try to pay {amount} for {ref}.",
        ),
        (
            "says their {amount} payment for {ref} was declined",
            "was charged {amount} but {ref} shows a failed payment",
            "cannot complete the {amount} payment for {ref}",
        ),
        (
            "the {amount} payment for {ref} was declined by your bank",
            "the {amount} charge for {ref} didn't go through",
            "your {amount} payment for {ref} failed at checkout",
        ),
        (
            "please try again with another card, and I'll hold the items for you for 48 hours",
            "I've sent you a secure payment link so you can retry",
            "any pending charge will drop off within 5 business days, and you can retry from your account",
            "I've reserved the items for 24 hours so you can update your card details",
        ),
        extras=("amount",),
        trouble=("the payment trouble", "the failed payment"),
    ),
    Intent(
        "promo_code",
        r"promo|code|discount|coupon",
        ("O", "P", "OP"),
        (
            "the code {promo_code} didn't work on {ref}.",
            "I forgot to use {promo_code} on {ref}. can you still apply it?",
            "promo code {promo_code} says it's invalid for {ref}.",
            "why wasn't my discount {promo_code} applied to {ref}?",
        ),
        (
            "says promo code {promo_code} was not applied to {ref}",
            "forgot to use code {promo_code} on {ref}",
            "reports that code {promo_code} is rejected for {ref}",
        ),
        (
            "the code {promo_code} should have applied to {ref}",
            "{promo_code} is a valid promo code for {ref}",
            "{promo_code} wasn't applied to {ref} because of a checkout glitch",
        ),
        (
            "I've refunded the discount to your card, which you'll see within 3 business days",
            "I've applied the discount manually and emailed you the updated receipt",
            "I've added the discount as store credit to your account",
        ),
        extras=("promo_code",),
        trouble=("the code not working", "the checkout glitch"),
    ),
    Intent(
        "account_access",
        r"account|log in|login|sign in|sign-in|password|locked",
        ("O", "OP"),
        (
            "I can't log in to my account to check {ref}.",
            "my account is locked and I need to see {ref}.",
            "the password reset email never arrives, and I need to track {ref}.",
            "I'm locked out of my account and can't see {ref}.",
        ),
        (
            "cannot log in to check {ref}",
            "is locked out of their account and needs {ref}",
            "never received the password reset email and needs to see {ref}",
        ),
        (
            "your account was locked after several sign-in attempts, but {ref} is safe",
            "{ref} is unaffected, but your account is temporarily locked",
            "the login problem is on our side and {ref} is not affected",
        ),
        (
            "I've sent a new password reset link to your email, valid for 24 hours",
            "I've unlocked your account, so please sign in again and choose a new password",
            "please use the reset link I've just emailed, and you'll be able to sign in right away",
        ),
        trouble=("the login trouble", "being locked out"),
    ),
    Intent(
        "warranty_claim",
        r"warrant\w*|guarantee|covered",
        ("P", "OP"),
        (
            "{ref} stopped working after three months. is it covered by the warranty?",
            "I want to make a warranty claim for {ref}; it has a defect.",
            "{ref} broke after normal use. what does the warranty cover?",
            "can I claim the warranty on {ref}? it no longer works.",
        ),
        (
            "wants to make a warranty claim for {ref}",
            "says {ref} stopped working and asks about the warranty",
            "asks whether {ref} is still under warranty",
        ),
        (
            "{ref} is covered by our 1-year warranty",
            "your warranty claim for {ref} is approved",
            "the warranty on {ref} is still active",
        ),
        (
            "I've opened a claim and emailed you a prepaid label to send it in",
            "please reply with a photo and the serial number, and I'll arrange a replacement",
            "I've arranged a free replacement, which you'll receive within 5 business days",
        ),
        trouble=("the defect", "the faulty item"),
        categories=("electronics", "home", "fitness"),
        product_head=True,
    ),
    Intent(
        "product_question",
        r"spec\w*|dimension\w*|measur\w*|colou?rs?|made (?:of|from)|material|comes in|available in",
        ("P",),
        (
            "dims|what are the dimensions of {ref}?",
            "dims|how big is {ref} exactly?",
            "dims|can you tell me how large {ref} is?",
            "colors|does {ref} come in other colors?",
            "colors|what colors is {ref} available in?",
            "colors|which colors can I get {ref} in?",
            "material|what is {ref} made of?",
            "material|what material is {ref}?",
            "material|I'd like to know what {ref} is made from.",
        ),
        (
            "dims|asks about the dimensions of {ref}",
            "dims|wants to know how big {ref} is",
            "colors|wants to know the colors of {ref}",
            "colors|asks which colors {ref} comes in",
            "material|asks what {ref} is made of",
            "material|wants to know the material of {ref}",
        ),
        (
            "dims|{ref} measures {dims}",
            "dims|the dimensions of {ref} are {dims}",
            "dims|the measurements of {ref} are {dims}",
            "colors|{ref} comes in {colors}",
            "colors|{ref} is available in {colors}",
            "colors|the available colors for {ref} are {colors}",
            "material|{ref} is made of {material}",
            "material|the material of {ref} is {material}",
            "material|{ref} is made from {material}",
        ),
        (
            "you can find the full spec sheet on the product page",
            "I've emailed you the spec sheet and care guide",
            "I'll send you a link to the size and care guide",
            "you can also check the reviews section for photos from other customers",
        ),
        apology=False,
    ),
    Intent(
        "eco_products",
        r"eco\w*|sustainab\w*|recycl\w*|plastic-free|carbon|organic|responsibly",
        ("P",),
        (
            "is {ref} eco-friendly?",
            "what sustainable materials are used in {ref}?",
            "does {ref} ship in plastic-free packaging?",
            "I'm trying to shop more sustainably. is {ref} recyclable?",
        ),
        (
            "asks whether {ref} is eco-friendly",
            "wants to know if {ref} is sustainable",
            "asks about the packaging of {ref}",
        ),
        (
            "{ref} is made with recycled materials and ships in plastic-free packaging",
            "{ref} is part of our eco range and its packaging is fully recyclable",
            "{ref} uses responsibly sourced materials and carbon-neutral shipping",
        ),
        (
            "you can find its full sustainability report on the product page",
            "I've emailed you our eco guide with recycling tips",
            "you can also return the packaging to us for free recycling",
        ),
        apology=False,
    ),
    Intent(
        "subscription",
        r"subscri\w*|renew\w*|membership",
        ("P", "OP"),
        (
            "I want to pause my monthly subscription for {ref}.",
            "how do I stop my subscription for {ref}?",
            "please skip next month's delivery of {ref} in my subscription.",
            "I was billed again for my subscription to {ref} but meant to skip this month.",
        ),
        (
            "wants to pause their subscription for {ref}",
            "asks to skip next month's subscription delivery of {ref}",
            "wants to change the subscription for {ref}",
        ),
        (
            "the subscription for {ref} is set to renew monthly",
            "the subscription for {ref} can be paused or changed at any time",
            "your subscription for {ref} is flexible",
        ),
        (
            "I've paused it for a month, and you can resume it anytime from your account",
            "I've skipped the next delivery, so you won't be charged this month",
            "you can manage it anytime under Subscriptions in your account",
        ),
        apology=False,
    ),
    Intent(
        "loyalty_points",
        r"points?|rewards?|loyalty",
        ("O", "OP"),
        (
            "I didn't get my loyalty points for {ref}.",
            "my rewards points for {ref} are missing.",
            "how many points should I have earned on {ref}?",
        ),
        (
            "did not receive loyalty points for {ref}",
            "says the rewards points for {ref} are missing",
            "asks how many points {ref} earned",
        ),
        (
            "the loyalty points for {ref} didn't post to your account",
            "{ref} should have earned you {points} reward points",
            "{points} loyalty points for {ref} were missing from your balance",
        ),
        (
            "I've added them to your balance manually",
            "you'll see them in your rewards balance within 24 hours",
            "I've credited them, and you can redeem them on your next order",
        ),
        trouble=("the missing points", "the mix-up"),
    ),
    Intent(
        "gift_order",
        r"gift\w*|wrap\w*",
        ("O", "P", "OP"),
        (
            "{ref} is a gift. can you add gift wrap and a message?",
            "I want to send {ref} as a gift without the receipt.",
            "can I add a gift note to {ref}?",
            "please remove the prices from {ref}, it's a gift.",
        ),
        (
            "wants gift wrapping for {ref}",
            "asks to add a gift message to {ref}",
            "is sending {ref} as a gift and wants no receipt included",
        ),
        (
            "gift wrapping for {ref} is free",
            "{ref} can go out as a gift with a personal message",
            "{ref} can ship as a gift with the prices hidden",
        ),
        (
            "I've added gift wrap and a message card, and the receipt will be left out",
            "please reply with the message you'd like on the card",
            "I've added a gift note, and the packing slip won't show any prices",
        ),
        apology=False,
    ),
    Intent(
        "change_address",
        r"address\w*|redirect\w*|reroute\w*",
        ("O", "OP"),
        (
            "I moved. can you change the shipping address for {ref}?",
            "I entered the wrong address for {ref}.",
            "please update the delivery address on {ref}.",
            "can {ref} be sent to my work address instead?",
        ),
        (
            "wants to change the shipping address for {ref}",
            "entered the wrong address for {ref}",
            "asks to redirect {ref} to a new address",
        ),
        (
            "{ref} hasn't shipped yet, so the address can still be changed",
            "the delivery address on {ref} can still be updated",
            "there's still time to redirect {ref}",
        ),
        (
            "please reply with the new address and I'll update it right away",
            "I've updated the address, and you'll get a confirmation email shortly",
            "I've put a hold on the shipment until you confirm the new address",
        ),
        apology=False,
    ),
    Intent(
        "price_match",
        r"price|match|difference",
        ("P", "OP"),
        (
            "I saw {ref} for {amount} on another site. do you price match?",
            "{ref} dropped to {amount} a day after I bought it. can I get the difference?",
            "a competitor sells {ref} for {amount}. will you match it?",
        ),
        (
            "found {ref} for {amount} elsewhere and asks for a price match",
            "saw {ref} drop to {amount} after buying it",
            "wants the difference refunded because {ref} is now {amount}",
        ),
        (
            "we're happy to price match {ref} at {amount}",
            "{ref} qualifies for our price match at {amount}",
            "the lower price of {amount} on {ref} is covered by our price promise",
        ),
        (
            "I've refunded the difference to your original payment method",
            "I've applied the difference as a refund, which you'll see within 5 business days",
            "please reply with a link to the lower price, and I'll adjust it right away",
        ),
        extras=("amount",),
        apology=False,
        product_head=True,
    ),
    Intent(
        "invoice_request",
        r"invoice\w*|receipt",
        ("O", "OP"),
        (
            "I need an invoice for {ref} for my company.",
            "can you send me a receipt for {ref}?",
            "I need a VAT invoice for {ref}.",
            "the invoice for {ref} has the wrong company name.",
        ),
        ("needs an invoice for {ref}", "asks for a receipt for {ref}", "needs a corrected invoice for {ref}"),
        (
            "the invoice for {ref} is ready",
            "a receipt for {ref} is available",
            "a full VAT invoice for {ref} is on file",
        ),
        (
            "I've emailed you a PDF copy",
            "you can also download it anytime from the Orders page",
            "I've sent a corrected copy to your email",
        ),
        apology=False,
    ),
)

INTENTS: tuple[str, ...] = tuple(spec.name for spec in INTENT_SPECS)

# ---------------------------------------------------------------------------------------------
# Phrase pools shared by every intent.
# ---------------------------------------------------------------------------------------------
_REFS = {  # voice -> ref kind -> templates; the date suffix is appended when a date is present
    "customer": {
        "OP": (
            "my {product} (order #{order_id})",
            "the {product} from order #{order_id}",
            "order #{order_id} with the {product}",
            "my order {order_id} for the {product}",
            "the {product} on order number {order_id}",
        ),
        "O": (
            "my order #{order_id}",
            "order #{order_id}",
            "order number {order_id}",
            "my order {order_id}",
            "order {order_id}",
        ),
        "P": ("my {product}", "the {product}"),
    },
    "third": {
        "OP": (
            "the {product} (order #{order_id})",
            "their {product} from order #{order_id}",
            "order #{order_id} containing the {product}",
            "order {order_id} for the {product}",
        ),
        "O": ("order #{order_id}", "their order #{order_id}", "order {order_id}"),
        "P": ("the {product}", "their {product}"),
    },
    "agent": {
        "OP": (
            "your {product} (order #{order_id})",
            "the {product} on order #{order_id}",
            "order #{order_id} with your {product}",
            "your order #{order_id} for the {product}",
            "your {product} from order #{order_id}",
        ),
        "O": ("your order #{order_id}", "order #{order_id}"),
        "P": ("your {product}", "the {product}"),
    },
}
_DATE_SUFFIXES = {
    "customer": (" from {date}", " (ordered {date})", " ordered on {date}", " bought on {date}"),
    "third": (" bought on {date}", " ordered on {date}", " from {date}"),
    "agent": (" from {date}", " placed on {date}", " ordered on {date}", " (ordered {date})"),
}
GENERIC_REFS = ("your order", "your purchase", "your item", "the order")
_GREETINGS = ("Hi,", "Hello,", "Hi there,", "Hey,", "Good morning,", "Hello team,", "", "", "")
_INTROS = ("this is {customer}.", "{customer} here.", "my name is {customer}.")
_SIGNOFFS = ("Thanks, {customer}", "- {customer}", "Regards, {customer}", "Cheers, {customer}")
_EXTRAS_APOLOGY = (
    "This is really frustrating.",
    "Can you help?",
    "Please sort this out.",
    "What can you do?",
    "I've been a customer for years.",
)
_EXTRAS_NEUTRAL = (
    "Can you help?",
    "Thanks in advance.",
    "What are my options?",
    "Could you look into it?",
    "Please advise.",
)
_SCENARIO_PREFIXES = (
    "Customer{nm} ",
    "A customer{nm} ",
    "Scenario: customer{nm} ",
    "Ticket: customer{nm} ",
    "Case - customer{nm} ",
)
_ACKS_APOLOGY = (
    "I'm so sorry about {trouble}{nm}",
    "sorry for {trouble}{nm}",
    "I apologise for {trouble}{nm}",
    "I'm really sorry to hear about {trouble}{nm}",
    "my apologies for {trouble}{nm}",
    "thanks for letting us know{nm}, and sorry for {trouble}",
    "I'm sorry you've had to deal with {trouble}{nm}",
    "thank you for flagging this{nm}, and I'm sorry for {trouble}",
)
_ACKS_NOTICE = (
    "thanks for letting us know{nm}",
    "thank you for flagging this{nm}",
    "thanks for reaching out{nm}",
    "thank you for contacting us{nm}",
    "thanks for getting in touch about this{nm}",
)
_ACKS_THANKS = (
    "thanks for reaching out{nm}",
    "thank you for your message{nm}",
    "thanks for getting in touch{nm}",
    "thanks for asking{nm}",
    "I appreciate you contacting us{nm}",
    "thank you for contacting us{nm}",
    "thanks so much for the message{nm}",
    "thanks for the question{nm}",
)
_GENERIC_TROUBLE = ("the trouble", "the inconvenience", "this")
_CLOSES = (
    "Let me know if there's anything else I can do.",
    "Have a great day!",
    "Thanks for your patience!",
    "We're here if you need anything else.",
    "Let us know if you have any other questions.",
    "Thanks for shopping with us!",
    "Have a lovely week!",
    "Take care!",
    "Thank you for your patience and understanding.",
    "Don't hesitate to reach out if you need more help.",
    "Happy to help with anything else.",
    "Thanks again for choosing us!",
    "Enjoy the rest of your day!",
    "Have a wonderful weekend!",
)
_COLORS = ("black", "navy", "sage", "sand", "charcoal", "forest green", "terracotta", "ivory", "slate")
_MATERIALS = (
    "recycled aluminium",
    "organic cotton",
    "bamboo fibre",
    "stainless steel",
    "recycled polyester",
    "solid oak",
    "natural rubber",
    "merino wool",
)
# Lines of part 4's degraded replies (its "boilerplate", "tone" and "length" traits). They live
# here because the template partition below must keep every held-out template clear of them
# (``_always_train_texts``); nothing in this module writes them.
BOILERPLATE = (
    "Thank you for contacting customer support.",
    "We value your business.",
    "Your satisfaction is our top priority.",
    "We are looking into your request.",
    "Our team will get back to you as soon as possible.",
    "We apologize for any inconvenience this may have caused.",
    "Your request has been noted.",
    "We are committed to providing the best service.",
)
RUDE_OPENERS = (
    "honestly, that's not our fault",
    "calm down",
    "look, you should have read the description",
    "this is getting ridiculous",
    "that's your problem, not ours",
    "whatever, fine",
    "obviously you didn't read the policy",
)
RUDE_CLOSES = (
    "Stop complaining and wait like everyone else.",
    "Deal with it.",
    "Don't bother us again about this.",
    "Figure it out yourself next time.",
)
CURT = (
    "Noted.",
    "Ok.",
    "We'll see.",
    "Checking {ref}.",
    "{ref} - handled.",
    "Will look into {ref}.",
    "Sure, done.",
    "See email.",
    "Fine, {ref} is sorted.",
    "Got it, {ref}.",
)


# The specifics a reply must restate (the customer's name is judged apart), and the intent test:
# a reply addresses an intent when it uses one of the intent's keywords outside the slot values.
SPECIFIC_SLOTS = ("order_id", "product", "date", "amount", "carrier", "promo_code")
KEYWORD_RES: dict[str, re.Pattern[str]] = {
    spec.name: re.compile(rf"\b(?:{spec.keywords})\b", re.IGNORECASE) for spec in INTENT_SPECS
}
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """``text`` split after . ! or ? (empty pieces dropped)."""
    return [s for s in _SENTENCE_SPLIT_RE.split(text.strip()) if s]


def addresses_intent(response: str, intent: str, slots: Mapping) -> bool:
    """True if the reply uses one of the intent's keywords outside the slot values."""
    # Slot values are masked first: "Organic Cotton Tote" must not make a reply "eco" on its own.
    masked = response
    for value in slots.values():
        masked = re.sub(rf"(?<!\w){re.escape(str(value))}(?!\w)", " ", masked, flags=re.I)
    return KEYWORD_RES[intent].search(masked) is not None


def mention_pattern(value: str) -> re.Pattern:
    """``value`` as a whole token sequence, case-insensitive (what ``mentions`` looks for)."""
    return re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.I)


def mentions(text: str, value: str) -> bool:
    """True if ``value`` occurs in ``text`` as a whole token sequence (case-insensitive)."""
    return mention_pattern(value).search(text) is not None


# ---------------------------------------------------------------------------------------------
# Template partition: phrasing held out for part 4's "test_unseen" split (no training pair and no
# pretraining document uses it).
# ---------------------------------------------------------------------------------------------
TEMPLATE_SIDES = ("train", "heldout")
_PLACEHOLDER_RE = re.compile(r"\{[^{}]*\}")
_PHRASE_STRIP_RE = re.compile(r"[.,!?;:'\"()]")
_MIN_FRAGMENT_WORDS = 4


def _norm_phrase(text: str) -> str:
    """Lowercase, without the punctuation ``_casualize`` drops (and brackets), single-spaced."""
    return re.sub(r"\s+", " ", _PHRASE_STRIP_RE.sub("", text.lower())).strip()


def _pieces(template: str) -> list[str]:
    """The fixed text of a template between its placeholders, normalised."""
    return [_norm_phrase(p) for p in _PLACEHOLDER_RE.split(_topic_of(template)[1])]


def _fragments(template: str) -> tuple[str, ...]:
    """The fixed-text pieces of a template with >= 4 words: what ``template_leaks`` looks for."""
    return tuple(p for p in _pieces(template) if len(p.split()) >= _MIN_FRAGMENT_WORDS)


def _partition_lists() -> list[tuple[str, tuple[str, ...], int]]:
    """(name, templates, smallest group size that is split) of every list with two sides.

    Intent lists and the shared pools are split from 2 templates per group up; the short ref
    phrasings (``_REFS``, ``_DATE_SUFFIXES``) only from 3 up. A group is a list's templates of one
    "topic|" tag (the whole list when untagged).
    """
    lists: list[tuple[str, tuple[str, ...], int]] = []
    for spec in INTENT_SPECS:
        for part in ("customer", "scenario", "body", "next"):
            lists.append((f"{spec.name}.{part}", getattr(spec, part), 2))
    pools = (
        ("acks_apology", _ACKS_APOLOGY),
        ("acks_notice", _ACKS_NOTICE),
        ("acks_thanks", _ACKS_THANKS),
        ("closes", _CLOSES),
        ("intros", _INTROS),
        ("signoffs", _SIGNOFFS),
        ("extras_apology", _EXTRAS_APOLOGY),
        ("extras_neutral", _EXTRAS_NEUTRAL),
        ("scenario_prefixes", _SCENARIO_PREFIXES),
    )
    lists += [(name, pool, 2) for name, pool in pools]
    lists += [(f"refs.{voice}.{kind}", refs, 3) for voice, by_kind in _REFS.items() for kind, refs in by_kind.items()]
    lists += [(f"date_suffixes.{voice}", suffixes, 3) for voice, suffixes in _DATE_SUFFIXES.items()]
    return lists


# Fragments of our templates that the "generic" pretraining corpus (``part3_pretrain.corpus``'s
# own generator) also contains (normalised as in ``_norm_phrase``): a base model may have seen
# them, so templates with them stay on the train side. (The "dialogue" corpus writes with the
# train side only.) The tests check every corpus kind has no held-out fragment.
_PRETRAINING_PHRASES = (
    "and im sorry for",
    "can i still cancel",
    "can still be updated",
    "can you tell me the status of",
    "for a different size",
    "have a great day",
    "how do i return",
    "i changed my mind",
    "i need to cancel",
    "i ordered it by mistake",
    "i want to return",
    "id like to return",
    "is it too late to return",
    "ive emailed you a prepaid return label",
    "thank you for your message",
    "thanks for getting in touch",
    "thanks for reaching out",
    "thanks for shopping with us",
    "thanks for your patience",
    "this is really frustrating",
    "what are my options",
)


def _always_train_texts() -> tuple[str, ...]:
    """Text that every side uses, so a held-out template may not share a fragment with it."""
    troubles = tuple(t for spec in INTENT_SPECS for t in spec.trouble)
    return (
        _GREETINGS
        + GENERIC_REFS
        + _GENERIC_TROUBLE
        + troubles
        + BOILERPLATE
        + RUDE_OPENERS
        + RUDE_CLOSES
        + CURT
        + _COLORS
        + _MATERIALS
        + _PRETRAINING_PHRASES
    )


_Group = tuple[str, str]  # (list name, topic): templates held out in proportion per group


def _template_groups(
    lists: Sequence[tuple[str, Sequence[str], int]],
) -> tuple[dict[_Group, list[int]], dict[str, list[tuple[str, int]]]]:
    """(list, topic) -> its template indices, and template text (topic stripped) -> its (list, index)."""
    groups: dict[_Group, list[int]] = {}
    where: dict[str, list[tuple[str, int]]] = {}
    for name, items, _ in lists:
        for i, t in enumerate(items):
            groups.setdefault((name, _topic_of(t)[0]), []).append(i)
            where.setdefault(_topic_of(t)[1], []).append((name, i))
    return groups, where


@dataclass(frozen=True)
class _Components:
    """Texts joined by a shared >= 4-word fragment: root of each text, members per root, pinned roots."""

    root: dict[str, str]
    members: dict[str, list[str]]
    blocked: set[str]


def _fragment_components(texts: Sequence[str], pinned: Collection[str]) -> _Components:
    """Union-find over ``texts``: two texts are one component when they share a fragment."""
    joined = {t: " | ".join([""] + _pieces(t) + [""]) for t in texts}
    parent = {t: t for t in texts}

    def root(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for a in texts:  # union templates that share a fragment
        for frag in _fragments(a):
            for b in texts:
                if b != a and f" {frag} " in joined[b]:
                    parent[root(a)] = root(b)
    roots = {t: root(t) for t in texts}
    members: dict[str, list[str]] = {}
    for t in texts:
        members.setdefault(roots[t], []).append(t)
    return _Components(roots, members, {roots[t] for t in pinned})


def _hold_out(
    lists: Sequence[tuple[str, Sequence[str], int]],
    groups: dict[_Group, list[int]],
    where: dict[str, list[tuple[str, int]]],
    comps: _Components,
) -> set[str]:
    """Greedy hold-out (rules in ``_template_partition``): the held-out template texts, topic stripped."""
    by_name = {name: items for name, items, _ in lists}
    split_from = {name: size for name, _, size in lists}

    def group_of(name: str, i: int) -> _Group:
        return name, _topic_of(by_name[name][i])[0]

    def min_train(group: _Group) -> int:
        return 2 if len(groups[group]) >= 3 else 1

    def target(group: _Group) -> int:
        return max(1, round(len(groups[group]) / 4))

    rng = random.Random("template-partition")
    held: set[str] = set()
    n_held: Counter = Counter()
    # Smallest groups first: they have the fewest choices that keep two templates on the train side.
    for (name, topic), idxs in sorted(groups.items(), key=lambda item: len(item[1])):
        if len(idxs) < split_from[name]:
            continue
        order = list(idxs)
        rng.shuffle(order)
        for i in order:
            if n_held[(name, topic)] >= target((name, topic)):
                break
            comp = comps.root[_topic_of(by_name[name][i])[1]]
            if comp in comps.blocked or _topic_of(by_name[name][i])[1] in held:
                continue
            new = [t for t in comps.members[comp] if t not in held]
            add = Counter(group_of(ln, li) for t in new for ln, li in where[t])
            if all(
                len(groups[g]) >= split_from[g[0]]
                and len(groups[g]) - n_held[g] - k >= min_train(g)
                and n_held[g] + k <= target(g)
                for g, k in add.items()
            ):
                held.update(new)
                n_held.update(add)
    return held


@lru_cache(maxsize=1)
def _template_partition() -> dict[str, frozenset[int]]:
    """List name -> indices of its held-out templates. A pure function of the template lists.

    Per group of n templates (n >= the list's smallest split group), up to ``max(1, round(n / 4))``
    are held out, smallest groups first, each in the order of a ``random.Random("template-partition")``
    shuffle, keeping at least two on the train side (one for a group of two). The same string in
    several lists (" ordered on {date}" in every voice) is one template, and templates that share a
    >= 4-word fragment (e.g. "thanks for letting us know{nm}" inside "thanks for letting us
    know{nm}, and sorry for {trouble}", or one intent's body inside another's scenario) are held
    out together or not at all, never pushing a group past its share, and never when they share
    one with text every side uses (``_always_train_texts``): a held-out fragment can then never
    occur in train-side text.
    """
    lists = _partition_lists()
    groups, where = _template_groups(lists)
    pinned = set(_always_train_texts())
    texts = sorted(where) + sorted(pinned - set(where))
    held = _hold_out(lists, groups, where, _fragment_components(texts, pinned))
    return {name: frozenset(i for i, t in enumerate(items) if _topic_of(t)[1] in held) for name, items, _ in lists}


def _template_partition_counts() -> dict[str, tuple[int, int]]:
    """List name -> (templates on the train side only, held-out templates); (n, 0): shared."""
    return {
        name: (len(items) - len(_template_partition()[name]), len(_template_partition()[name]))
        for name, items, _ in _partition_lists()
    }


@dataclass(frozen=True)
class Phrasing:
    """The templates one side of the partition writes with."""

    side: str
    specs: dict[str, Intent]
    acks_apology: tuple[str, ...]
    acks_notice: tuple[str, ...]
    acks_thanks: tuple[str, ...]
    closes: tuple[str, ...]
    intros: tuple[str, ...]
    signoffs: tuple[str, ...]
    extras_apology: tuple[str, ...]
    extras_neutral: tuple[str, ...]
    scenario_prefixes: tuple[str, ...]
    refs: dict[str, dict[str, tuple[str, ...]]]
    date_suffixes: dict[str, tuple[str, ...]]


@lru_cache(maxsize=2)
def phrasing(side: str) -> Phrasing:
    """Train side: every template not held out. Held-out side: only the held-out ones.

    A group where nothing is held out (a ref list of two, a topic with one template) is used
    whole by both sides; ``_template_partition_counts`` shows which lists those are.
    """
    if side not in TEMPLATE_SIDES:
        raise ValueError(f"side must be one of {TEMPLATE_SIDES}, got {side!r}")
    held = _template_partition()

    def pick(name: str, items: tuple[str, ...]) -> tuple[str, ...]:
        topics_held = {_topic_of(items[i])[0] for i in held[name]}
        return tuple(
            t
            for i, t in enumerate(items)
            if _topic_of(t)[0] not in topics_held or (i in held[name]) == (side == "heldout")
        )

    specs = {
        spec.name: replace(
            spec,
            **{
                part: pick(f"{spec.name}.{part}", getattr(spec, part))
                for part in ("customer", "scenario", "body", "next")
            },
        )
        for spec in INTENT_SPECS
    }
    return Phrasing(
        side,
        specs,
        pick("acks_apology", _ACKS_APOLOGY),
        pick("acks_notice", _ACKS_NOTICE),
        pick("acks_thanks", _ACKS_THANKS),
        pick("closes", _CLOSES),
        pick("intros", _INTROS),
        pick("signoffs", _SIGNOFFS),
        pick("extras_apology", _EXTRAS_APOLOGY),
        pick("extras_neutral", _EXTRAS_NEUTRAL),
        pick("scenario_prefixes", _SCENARIO_PREFIXES),
        {
            voice: {kind: pick(f"refs.{voice}.{kind}", refs) for kind, refs in by_kind.items()}
            for voice, by_kind in _REFS.items()
        },
        {voice: pick(f"date_suffixes.{voice}", suffixes) for voice, suffixes in _DATE_SUFFIXES.items()},
    )


@lru_cache(maxsize=2)
def _side_fragments(side: str) -> tuple[str, ...]:
    """The fragments of the templates only ``side`` uses, longest first."""
    held = _template_partition()
    frags: set[str] = set()
    for name, items, _ in _partition_lists():
        topics_held = {_topic_of(items[i])[0] for i in held[name]}
        for i, t in enumerate(items):
            if _topic_of(t)[0] in topics_held and (i in held[name]) == (side == "heldout"):
                frags.update(_fragments(t))
    return tuple(sorted(frags, key=lambda f: (-len(f), f)))


@lru_cache(maxsize=2)
def _side_fragment_re(side: str) -> re.Pattern[str] | None:
    frags = _side_fragments(side)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, frags)) + r")(?!\w)") if frags else None


def _find_fragments(texts: Iterable[str], side: str, limit: int) -> list[str]:
    pattern, found = _side_fragment_re(side), []
    if pattern is None:
        return found
    for text in texts:
        for m in pattern.finditer(_norm_phrase(text)):
            if m.group(0) not in found:
                found.append(m.group(0))
                if len(found) >= limit:
                    return found
    return found


def template_leaks(texts: Iterable[str], limit: int = 20) -> list[str]:
    """Held-out template phrases found in ``texts`` (at most ``limit`` distinct ones; empty: clean).

    A phrase is a fixed-text piece of >= 4 words of a held-out template, between its slot
    placeholders, compared lowercased and without punctuation (so casual, unpunctuated contexts
    are checked too). Pretraining text, training pairs, "val" and "test" must have none; part 4's
    "test_unseen" is made of them.
    """
    return _find_fragments(texts, "heldout", limit)


# ---------------------------------------------------------------------------------------------
# Contexts.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """A customer message or scenario line, with the slot values it states."""

    intent: str
    text: str
    slots: dict[str, str]
    topic: str  # "" unless the intent's templates are topic-tagged


def cap(text: str) -> str:
    """``text`` with its first character upper-cased (the rest untouched)."""
    return text[:1].upper() + text[1:]


def _topic_of(template: str) -> tuple[str, str]:
    """Split an optional "topic|" prefix off a template."""
    topic, sep, rest = template.partition("|")
    return (topic, rest) if sep else ("", template)


def _pick(rng: random.Random, templates: Sequence[str], topic: str) -> str:
    """A template for ``topic`` (untagged templates fit every topic)."""
    fitting = [t for t in templates if _topic_of(t)[0] in ("", topic)] or list(templates)
    return _topic_of(rng.choice(fitting))[1]


def _draw_slots(spec: Intent, values: SlotPools, rng: random.Random) -> dict[str, str]:
    """Slot values for one context: name (half the time), order id / product / date, extras."""
    kind = rng.choice(spec.refs)
    slots: dict[str, str] = {}
    if rng.random() < 0.5:
        slots["customer"] = rng.choice(values["customer"])
    if "O" in kind:
        slots["order_id"] = rng.choice(values["order_id"])
    if "P" in kind:
        cats = spec.categories or tuple(sorted(set(PRODUCT_ITEMS.values())))
        pool = values.products_in(cats)
        slots["product"] = rng.choice(pool)
    if spec.refs != ("P",) and rng.random() < 0.3:  # a pre-purchase question has no order date
        slots["date"] = rng.choice(values["date"])
    for extra in spec.extras:
        slots[extra] = rng.choice(values[extra])
    return slots


def ref_phrase(
    slots: Mapping[str, str], voice: str, rng: random.Random, product_head: bool = False, ph: Phrasing | None = None
) -> str:
    """The order/product(/date) noun phrase in the customer's, a third person's or the agent's voice.

    With ``product_head`` the phrase is about the product ("your X from order #A1"), not the order
    ("order #A1 with your X"), for intents where the order as a whole is not what arrived broken
    (where the side has such a phrasing). ``ph``: the templates' side (default train).
    """
    ph = ph or phrasing("train")
    kind = ("O" if "order_id" in slots else "") + ("P" if "product" in slots else "")
    templates = ph.refs[voice][kind]
    if product_head and kind == "OP":
        templates = tuple(t for t in templates if not re.match(r"(?:\w+ )?order", t)) or templates
    if "date" not in slots:
        return rng.choice(templates).format(**slots)
    # Skip suffixes that would say "from" twice ("your X from order #A1 from May 3").
    suffixes = ph.date_suffixes[voice]
    fits = [t for t in templates if any(s.split()[0] not in t.split() for s in suffixes)] or list(templates)
    template = rng.choice(fits)
    template += rng.choice([s for s in suffixes if s.split()[0] not in template.split()] or list(suffixes))
    return template.format(**slots)


def _casualize(text: str, keep: Sequence[str]) -> str:
    """Lowercase, unpunctuated variant of a message that leaves the slot values verbatim."""
    keep = sorted({k for k in keep if k}, key=len, reverse=True)
    if not keep:
        return text
    out = map_outside(text, keep, lambda p: re.sub(r"[.,!?;:'\"]", "", p.lower()))
    return re.sub(r"\s+", " ", out).strip()


def _customer_message(spec: Intent, slots: dict[str, str], rng: random.Random, ph: Phrasing) -> tuple[str, str]:
    """A first-person message; returns (text, topic)."""
    topic, template = _topic_of(rng.choice(spec.customer))
    fill = {**slots, "ref": ref_phrase(slots, "customer", rng, spec.product_head, ph)}
    parts = [rng.choice(_GREETINGS)]
    name = slots.get("customer")
    signoff = ""
    if name and rng.random() < 0.5:
        parts.append(rng.choice(ph.intros).format(customer=name))
    elif name:
        signoff = rng.choice(ph.signoffs).format(customer=name)
    # Half the train side's requests are composed from frames and synonyms (``variety``); the
    # held-out side keeps its own templates, so test_unseen's phrasing stays unseen.
    composed = ph.side == "train" and rng.random() < COMPOSED_REQUEST_SHARE
    parts.append(compose_request(spec.name, fill["ref"], rng, slots, topic) if composed else template.format(**fill))
    if rng.random() < 0.5:
        parts.append(rng.choice(ph.extras_apology if spec.apology else ph.extras_neutral))
    parts.append(signoff)
    parts = [p for p in parts if p]
    # Sentence-case every part except the one after a "Hi," greeting ("Hi, this is ...").
    text = " ".join(p if i and parts[i - 1].endswith(",") else cap(p) for i, p in enumerate(parts))
    if rng.random() < 0.25:
        text = _casualize(text, list(slots.values()))
    # Typos, shorthand, register, sentences that do not matter, a second request: both sides.
    return vary_message(text, list(slots.values()), rng, spec.name), topic


def _scenario_line(spec: Intent, slots: dict[str, str], rng: random.Random, ph: Phrasing) -> tuple[str, str]:
    """A third-person line for an agent ("Customer Leila wants to return ..."); (text, topic)."""
    topic, template = _topic_of(rng.choice(spec.scenario))
    name = slots.get("customer")
    prefix = rng.choice(ph.scenario_prefixes).format(nm=f" {name}" if name else "")
    body = template.format(**{**slots, "ref": ref_phrase(slots, "third", rng, spec.product_head, ph)})
    return prefix + body + rng.choice((".", ".", "")), topic


def make_context(intent: str, values: SlotPools, rng: random.Random, ph: Phrasing | None = None) -> Context:
    """A context for ``intent`` with slot values from ``values`` (e.g. ``split_pools("train")``),
    written with ``ph`` (default: the train side of the templates)."""
    ph = ph or phrasing("train")
    spec = ph.specs[intent]
    slots = _draw_slots(spec, values, rng)
    maker = _customer_message if rng.random() < 0.7 else _scenario_line
    text, topic = maker(spec, slots, rng, ph)
    return Context(intent, text, slots, topic)


# ---------------------------------------------------------------------------------------------
# Good replies, in parts (part 4 drops or replaces some of them for its degraded replies).
# ---------------------------------------------------------------------------------------------
# How a dropped extra slot reads in a body template: (pattern around the marker, replacement), in order.
_MARK = "\x00"
_GENERIC_EXTRAS = {
    "amount": ((rf"\b(?:of|at) {_MARK}\s*", ""), (rf"\b(the|your) {_MARK}\s*", r"\1 "), (_MARK, "the amount")),
    "carrier": ((rf"\ba {_MARK}", "a"), (_MARK, "the carrier"), (r"\bthe the carrier", "the carrier")),
    "promo_code": ((rf"\bthe code {_MARK}", "the code"), (_MARK, "your code")),
}


@dataclass
class Parts:
    """The pieces of a reply, before ``assemble`` joins them (part 4 drops or swaps some)."""

    ack: str | None
    body: str
    next: str | None
    close: str | None
    greeting: str | None = None  # "Hi Leila": the name without an acknowledgement


def _ack(spec: Intent, name: str | None, rng: random.Random, ph: Phrasing) -> str:
    hi_prefix = bool(name) and rng.random() < 0.3
    nm = f", {name}" if name and not hi_prefix else ""
    if spec.apology and rng.random() < 0.8:
        trouble = rng.choice(spec.trouble + _GENERIC_TROUBLE)
        ack = rng.choice(ph.acks_apology).format(trouble=trouble, nm=nm)
    elif spec.apology:
        ack = rng.choice(ph.acks_notice).format(nm=nm)
    else:
        ack = rng.choice(ph.acks_thanks).format(nm=nm)
    return f"Hi {name}, {ack}" if hi_prefix else ack


def _body_fill(
    ctx: Context,
    spec: Intent,
    values: SlotPools,
    rng: random.Random,
    ref: str | None,
    ph: Phrasing,
    drop: Collection[str] = (),
) -> dict[str, str]:
    """Values for body templates: the context's slots, a freshly phrased ref, response-only numbers.

    Extra slots in ``drop`` get a marker that ``_generic_extras`` turns into generic words.
    """
    fill = {s: rng.choice(values[s]) for s in ("amount", "carrier", "promo_code")}
    fill.update(ctx.slots)
    fill.update({s: _MARK for s in drop})
    a, b, c = sorted(rng.sample(range(8, 60), 3), reverse=True)
    fill.update(
        ref=ref if ref is not None else ref_phrase(ctx.slots, "agent", rng, spec.product_head, ph),
        dims=f"{a} x {b} x {c} cm",
        colors="{}, {} and {}".format(*rng.sample(_COLORS, 3)),
        material=rng.choice(_MATERIALS),
        points=str(rng.randrange(50, 600, 10)),
    )
    return fill


def _generic_extras(body: str, dropped: Collection[str]) -> str:
    """Replace the markers of dropped extra slots ("the $25.00 refund" -> "the refund")."""
    for slot in dropped:
        for pattern, repl in _GENERIC_EXTRAS[slot]:
            body = re.sub(pattern, repl, body)
    return re.sub(r"\s+", " ", body).strip()


def good_parts(
    ctx: Context,
    values: SlotPools,
    rng: random.Random,
    intent: str | None = None,
    ref: str | None = None,
    ph: Phrasing | None = None,
    name: str | None = "",
    drop: Collection[str] = (),
) -> Parts:
    """Every part of a good reply to ``ctx`` (written for ``intent``, default the context's).

    ``values``: where the reply's own values come from (the extra slots a body may mention that the
    context does not give); ``name``: the name the acknowledgement uses ("" = the context's, None =
    none); ``ref`` and ``drop``: a ref phrase to use instead of the full one, extra slots to leave
    generic (part 4's replies that restate only some specifics).
    """
    ph = ph or phrasing("train")
    spec = ph.specs[intent or ctx.intent]
    name = ctx.slots.get("customer") if name == "" else name
    body = _pick(rng, spec.body, ctx.topic).format(**_body_fill(ctx, spec, values, rng, ref, ph, drop))
    body = _generic_extras(body, [s for s in drop if s in _GENERIC_EXTRAS])
    return Parts(_ack(spec, name, rng, ph), body, rng.choice(spec.next), rng.choice(ph.closes))


def assemble(parts: Parts, rng: random.Random) -> str:
    """Join the parts into at most three sentences, with varied joins."""
    sentences: list[str] = []
    core = parts.body
    if parts.ack and rng.random() < 0.5:
        core = f"{parts.ack} - {core}"
    elif parts.ack:
        sentences.append(cap(parts.ack) + rng.choice((".", ".", "!")))
    elif parts.greeting:
        core = f"{parts.greeting}, {core}"
    if parts.next and (sentences or rng.random() < 0.5):
        # ", and please ..." and "..., and I've ..., and ..." read badly; a semicolon always works.
        plain = not parts.next.startswith("please") and ", and" not in parts.next
        core += rng.choice(("; ", ", and ", "; ") if plain else ("; ",)) + parts.next
        sentences.append(cap(core) + ".")
    else:
        sentences.append(cap(core) + ".")
        if parts.next:
            sentences.append(cap(parts.next) + ".")
    if parts.close:
        sentences.append(parts.close)
    return " ".join(sentences)


def good_reply(ctx: Context, values: SlotPools, rng: random.Random, ph: Phrasing | None = None) -> str:
    """The reply a careful agent writes to ``ctx``: acknowledges the customer (by name when given),
    restates every specific, answers the intent, gives a concrete next step and closes politely.

    ``values``: the pools of the context (a body may mention an extra value of its own); ``ph``:
    the templates' side (default train). Part 4's rubric rates every such reply 5.0.
    """
    return assemble(good_parts(ctx, values, rng, ph=ph), rng)


# ---------------------------------------------------------------------------------------------
# Reference drills: dense practice at copying what the message says.
# ---------------------------------------------------------------------------------------------
# Reference drills: short exchanges whose whole job is to restate what the customer listed.
_DRILL_KINDS = ("order_id", "order_id", "customer", "customer", "product", "amount", "promo_code", "carrier")
_DRILL_ASKS = (
    "Please confirm these details: {items}.",
    "Can you check {items} for me?",
    "My references are {items}.",
    "I have {items} on my account.",
    "Details: {items}",
    "Could you look up {items}?",
    "Writing about {items}.",
)
_DRILL_ANSWERS = (
    "Confirmed: {items}.",
    "I've checked {items} for you.",
    "Here they are again: {items}.",
    "Noted - {items}.",
    "Thanks, I have {items} on file.",
    "Got it: {items}.",
)


# How an order id is written, drawn apart for the customer and the agent ("order 88231" ->
# "#88231"), so copying an id cannot rest on the token that precedes it.
_ID_PREFIXES = ("#", "#", "order ", "")


def _drill_item(values: SlotPools, rng: random.Random) -> tuple[str, str]:
    """One value as the customer writes it and as the agent restates it."""
    kind = rng.choice(_DRILL_KINDS)
    value = rng.choice(values[kind])
    if kind != "order_id":
        return value, value
    return rng.choice(_ID_PREFIXES) + value, rng.choice(_ID_PREFIXES) + value


def reference_drills(n: int, seed: int = 0, values: SlotPools | None = None) -> list[str]:
    """``n`` exchanges "Customer: <asks about 1-4 values>\nAgent: <restates them verbatim>" (an
    order id possibly written another way: "order 88231" -> "#88231").

    Order ids, names, products, amounts and promo codes from the open pools, listed and repeated
    back: dense examples of copying what the message says. In the copy ablation (README) they
    were what made a 4-layer model copy every digit of an order id at the FLOP budget. A pure
    function of (n, seed, values).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    values = values if values is not None else open_pools()
    rng = random.Random(f"drill-{seed}")
    docs: dict[str, None] = {}  # insertion-ordered set: no drill twice
    while len(docs) < n:
        said, restated = zip(*(_drill_item(values, rng) for _ in range(rng.randint(1, 4))), strict=True)
        docs[
            f"Customer: {rng.choice(_DRILL_ASKS).format(items=', '.join(said))}\n"
            f"Agent: {rng.choice(_DRILL_ANSWERS).format(items=', '.join(restated))}"
        ] = None
    return list(docs)
