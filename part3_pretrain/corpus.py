"""Pretraining text for part 3: a synthetic retail customer-support corpus, or the user's files.

``generate_corpus(n_docs, seed, kind)`` writes one of three corpora (``CORPUS_KINDS``):

* "dialogue" (the default, ``DIALOGUE_N_DOCS`` documents): ``domain.dialogue_documents``, one
  "Customer: <message>\nAgent: <good reply>" exchange each, in the SFT generator's own wording
  (the shared retail world of ``part3_pretrain.domain``, train-side templates only) with slot
  values from open-ended pools (``open_values``): pseudo-word names, brands and couriers, random
  order ids, amounts and promo codes, so a model can only restate a specific by reading it. A
  third of the documents are ``domain.reference_drills``: a customer lists 1-4 ids, names,
  products, carriers, amounts or codes and the agent repeats them verbatim, dense practice at
  copying.
* "generic" (``DEFAULT_N_DOCS`` documents): this module's own generator, below.
* "mixed": half of each, shuffled together.

The "generic" corpus (``generate_labeled_corpus``) has documents of four kinds, over this
module's own ``INTENTS`` (25, not the same list as ``domain.INTENTS``):

* tickets (~37%, ``generate_ticket``): one ``Customer:`` message that already states the intent
  and the specifics (often the name, order number, product, sometimes a date, amount or
  carrier) and one ``Agent:`` reply that resolves it, greeting the customer by name when given
  and repeating every specific the customer stated (never another order number or product),
  sometimes followed by a short thanks / goodbye. This teaches answering a one-shot message.
* dialogues (~46%): 2-4 exchanges of ``Customer: ...`` / ``Agent: ...`` lines joined by "\\n",
  cycling through every intent in ``INTENTS``. The agent greets the customer by name once it
  is known, restates the specifics (order number, product, dates, amounts, carrier), gives a
  concrete next step and closes politely; customers sometimes write sloppily (typos, lowercase,
  no punctuation) so the model is robust to real input.
* policy snippets (~9%): returns, shipping, warranty, loyalty, ... with one consistent set of
  facts (``_FACTS``), so the model sees the same policy in documents and in agent replies.
* product descriptions (~8%), built from a product's category.

Every sentence is composed from interchangeable pieces (greetings x openers x restatements x
actions x follow-ups x closers) filled with slot values, and the slot values come only from
``slot_values("train")``: part 4 evaluates on the held-out values, which must never appear in
pretraining text (``find_heldout_leaks`` checks this in the tests). No number that could be a
held-out value (a dollar amount with cents, a "Month day" date, a letter + four digits) is
ever computed or written outside the slot values. Generation uses one ``random.Random(seed)``
and only ordered containers, so the output is identical in every process. The "dialogue"
documents hold no held-out value either (the open pools exclude them) and no held-out phrasing
(``domain.template_leaks``); the tests check both for every kind.

``load_corpus_files(paths)`` reads the user's own text instead (.txt: documents separated by
blank lines; .jsonl: one ``{"text": ...}`` object per line), raising ``CorpusError`` with a
one-line message naming the file (and line) on any problem.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from part3_pretrain.domain import dialogue_documents, reference_drills
from part3_pretrain.slots import product_category, slot_values

CORPUS_KINDS = ("dialogue", "generic", "mixed")
# generic: ~4.3 MB of text at ~500 bytes a document; generation takes about half a second on one core.
DEFAULT_N_DOCS = 8600
# dialogue (and mixed): ~7.5 MB at ~250 bytes a document; a few seconds on one core.
DIALOGUE_N_DOCS = 30000
POLICY_SHARE = 0.09  # fraction of documents that are policy snippets
TICKET_SHARE = 0.37  # fraction that are single-message tickets (see generate_ticket)
PRODUCT_SHARE = 0.08  # fraction that are product descriptions
ROUGH_SHARE = 0.12  # fraction of customer lines written sloppily (typos, lowercase, ...)
SUFFIXES = (".txt", ".jsonl")

# One set of store facts used by policies and agents alike. Amounts here have no cents and
# nothing here looks like a date, so no fact can collide with a held-out slot value.
_FACTS: dict[str, str] = {
    "return_days": "30",
    "refund_days": "5-7 business days",
    "free_ship": "$50",
    "standard": "3-5 business days",
    "express": "1-2 business days",
    "express_fee": "$12",
    "warranty": "one-year",
    "price_days": "14",
    "points_rule": "1 point for every $1 spent",
    "points_block": "100 points",
    "points_block_value": "$5",
    "weekday_hours": "9 am to 9 pm",
    "sunday_hours": "10 am to 6 pm",
    "support_hours": "8 am to 10 pm, seven days a week",
    "delay_credit": "$10",
    "auth_days": "3 business days",
    "reset_minutes": "30",
}


class CorpusError(ValueError):
    """A problem with a user's corpus file; ``str(err)`` is one line naming file (and line)."""

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None) -> None:
        where = f"{os.fspath(path)}:" if line is None else f"{os.fspath(path)}:{line}:"
        # Messages go to a terminal one per line; never let a path or a JSON message break that.
        super().__init__(f"{where} {problem}".replace("\r", "\\r").replace("\n", "\\n"))


# ---------------------------------------------------------------------------------------------
# Dialogue building blocks


@dataclass(frozen=True)
class _Variant:
    """One situation within an intent; its openers, restatements and actions all fit together.

    Templates are ``str.format`` strings over the context built by ``_context``. ``ask`` names
    what the agent asks for first when the opener lacks it ("order", "email", "address",
    "product" or "none"); ``categories`` restricts the product drawn (empty: any product).
    """

    openers: tuple[str, ...]
    restates: tuple[str, ...]
    actions: tuple[str, ...]
    followups: tuple[tuple[str, str], ...] = ()
    categories: tuple[str, ...] = ()
    ask: str = "order"
    tone: str = "problem"  # "problem" gets an apology, "question" a friendly acknowledgement


def _v(
    openers: Sequence[str],
    restates: Sequence[str],
    actions: Sequence[str],
    followups: Sequence[tuple[str, str]] = (),
    **kw: object,
) -> _Variant:
    """A ``_Variant`` from lists (keeps the tables below light)."""
    return _Variant(tuple(openers), tuple(restates), tuple(actions), tuple(followups), **kw)


# Greetings end a sentence, so the opener after them can start with a capital letter.
_GREETINGS = ("Hi!", "Hello!", "Hey!", "Hi there!", "Good morning!", "Good afternoon!", "Hello there.", "")
_INTROS = (
    "Hi, this is {name}.",
    "Hello, my name is {name}.",
    "Hi there, {name} here.",
    "Hey, it's {name}.",
    "Hi! I'm {name}.",
    "Good morning, this is {name}.",
    "Hello, {name} here.",
    "Hi, my name's {name}.",
)

_ACKS = {
    "problem": (
        "I'm sorry to hear that{nm}.",
        "I'm really sorry about this{nm}.",
        "I apologize for the trouble{nm}.",
        "I understand how frustrating that is{nm}.",
        "Thank you for letting us know{nm}, and I'm sorry for the inconvenience.",
        "That's not the experience we want you to have{nm}, and I'm sorry.",
        "I'm sorry for the hassle{nm}, let me sort this out for you.",
        "Thanks for your patience{nm}, and sorry about this.",
    ),
    "question": (
        "Thanks for reaching out{nm}!",
        "Happy to help with that{nm}.",
        "Great question{nm}.",
        "Sure thing{nm}.",
        "Thanks for getting in touch{nm}.",
        "I'd be glad to help{nm}.",
        "Of course{nm}, let me check that for you.",
        "Good question{nm}, here's what I found.",
    ),
}
# The agent's first words when it must ask for something before it can help.
_ASK_LEADS = {
    "problem": _ACKS["problem"],
    "question": (
        "Happy to help with that{nm}.",
        "Sure{nm}, I can check that for you.",
        "I'd be glad to look into it{nm}.",
        "Thanks for reaching out{nm}!",
        "Of course{nm}.",
        "No problem{nm}, let's get that sorted.",
    ),
}
_AFTER_ASK = (
    "Thanks{nm}.",
    "Thank you{nm}, I've found it.",
    "Thanks{nm}, I have it pulled up.",
    "Got it{nm}.",
    "Perfect, thank you{nm}.",
    "Thanks for that{nm}.",
)
# Optional confirmation after the next step; the first set only fits when an order is involved.
_EXTRAS_ORDER = (
    "I've added a note to order #{order} so anyone on our team can see what we arranged.",
    "A confirmation for order #{order} is on its way to {email}.",
    "You'll find these details in your account under order #{order}.",
    "If you have any questions about order #{order}, just reply to this chat.",
    "I've updated order #{order} and sent the details to {email}.",
)
_EXTRAS_ANY = (
    "You'll receive a confirmation email at {email} shortly.",
    "I've sent a summary to {email} as well.",
    "I've copied these details to {email} so you have them handy.",
)
_OFFERS = (
    "Is there anything else I can help you with?",
    "Anything else I can do for you today?",
    "Let me know if there's anything else you need.",
    "If you have any other questions, just reply here.",
    "Is there anything else I can help with today?",
)
_CUSTOMER_THANKS = (
    "Thank you so much!",
    "Perfect, thanks for your help.",
    "Great, that's all I needed.",
    "ok thanks",
    "Awesome, I appreciate it.",
    "That works, thank you.",
    "Thanks, that was quick!",
    "Great, thanks a lot.",
    "Okay, that sounds good. Thanks!",
    "Thank you, you've been very helpful.",
    "perfect thank you",
    "Thanks for sorting that out.",
)
_AGENT_BYES = (
    "You're welcome{nm}! Is there anything else I can help you with today?",
    "My pleasure{nm}. Have a wonderful day!",
    "Glad I could help{nm}. If anything else comes up, just reply to this chat.",
    "You're very welcome{nm}. Take care!",
    "Happy to help{nm}. Have a great rest of your day.",
    "Anytime{nm}! Thanks for shopping with us.",
    "You're welcome{nm}. We appreciate your patience.",
    "It was a pleasure{nm}. Enjoy the rest of your week!",
)
_AGENT_BYES_ORDER = (
    "You're welcome{nm}. A copy of this chat is on its way to {email}.",
    "Happy to help{nm}. I'll keep an eye on order #{order} for you.",
    "My pleasure{nm}. If anything else comes up with order #{order}, just reply here.",
    "Glad we could sort out order #{order}{nm}. Have a great day!",
)
_AGENT_BYES_PRODUCT = (
    "Enjoy your {product}{nm}!",
    "Enjoy the {product}, and have a great day{nm}!",
    "You're welcome{nm}. I hope you love the {product}!",
)

# What the agent asks first, and how the customer answers. The "name" asks make the name known.
_ASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "order": (
        (
            "Could you share your order number so I can take a look?",
            "What's the order number? I'll pull it up right away.",
            "Could you give me the order number? It starts with a letter followed by four digits.",
            "Can you send me the order number so I can check the details?",
            "Which order is this about? The order number is in your confirmation email.",
        ),
        (
            "Sure, it's #{order}.",
            "It's order {order}.",
            "{order}",
            "The order number is #{order}.",
            "It's #{order}, I placed it on {date}.",
            "order {order}",
            "Yes, #{order}.",
            "Here it is: {order}.",
        ),
    ),
    "name_order": (
        (
            "May I have your name and order number, please?",
            "Could I get your name and the order number?",
            "Can you confirm your name and order number for me?",
        ),
        (
            "I'm {name}, and the order is #{order}.",
            "{name}, order {order}.",
            "It's {name}. The order number is #{order}.",
            "Sure, {name}, #{order}.",
        ),
    ),
    "email": (
        (
            "Could you confirm the email address on your account?",
            "What email address did you use for the account?",
            "Can you tell me the email on the account so I can look it up?",
        ),
        ("It's {email}.", "{email}", "I use {email} for everything.", "Sure, {email}."),
    ),
    "address": (
        (
            "What's the new address you'd like us to use?",
            "Sure, what address should it go to?",
            "Can you send me the full new address?",
        ),
        ("{street}, {city}.", "It's {street} in {city}.", "Please send it to {street}, {city}.", "{street}, {city}"),
    ),
    "product": (
        (
            "Which item are you asking about?",
            "Which product do you have in mind?",
            "Can you tell me which product it is?",
        ),
        ("The {product}.", "It's the {product}.", "the {product}", "I'm looking at the {product}."),
    ),
}

_GENERIC_ORDER_FOLLOWUPS = (
    (
        "Will I get an email confirmation?",
        "Yes, a confirmation for order #{order} with all the details is on its way to your inbox now.",
    ),
    (
        "Can you send me a summary of this by email?",
        "Done{nm}. I've emailed a summary of this chat, including order #{order}, to the address on your account.",
    ),
    (
        "Do I need to do anything else?",
        "Nothing else is needed on your side{nm}. I've added notes to order #{order} so anyone on our team can see what we arranged.",
    ),
    (
        "what if there's another problem",
        "Just reply to this chat or mention order #{order} when you contact us, and we'll pick up right where we left off.",
    ),
)

# Follow-ups about the product itself; they fit any dialogue that names one and restate policy.
_GENERIC_PRODUCT_FOLLOWUPS = (
    (
        "Is the {product} covered by a warranty?",
        "Yes{nm}, the {product} comes with our {warranty} warranty against defects.",
    ),
    (
        "If I change my mind about the {product} later, can I still return it?",
        "Yes, you have {return_days} days from delivery to return the {product} for a full refund.",
    ),
    (
        "Can I earn loyalty points on the {product}?",
        "You do: members earn {points_rule}, and the points for the {product} post once it ships.",
    ),
)

# Product questions: one variant per (category, topic), so the question and answer match.
_PQ_ACTIONS = (
    "If it doesn't work out, returns are free within {return_days} days.",
    "I've emailed you the product page with the full specifications.",
    "It's currently {amount}, and it ships free on orders over {free_ship}.",
    "It's in stock now and usually ships within one business day.",
)
_PRODUCT_QA: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("apparel",),
        ("Is the {product} machine washable?", "How do I wash the {product}?", "can the {product} go in the dryer"),
        (
            "The {product} can go in a cold, gentle wash; lay {it_obj} flat to dry to keep the shape.",
            "We recommend a cold wash and air drying for the {product}, as the dryer can shrink {it_obj}.",
        ),
    ),
    (
        ("apparel",),
        (
            "Does the {product} run true to size?",
            "What size should I get in the {product}?",
            "I'm usually a size {size}. Which size of the {product} should I get?",
        ),
        (
            "The {product} runs true to size for most customers, so your usual size {size} should fit.",
            "Most customers order their usual size in the {product}; if you're between sizes, go one up.",
        ),
    ),
    (
        ("apparel",),
        ("What colors does the {product} come in?", "Is the {product} available in {color}?"),
        (
            "The {product} comes in {color}, black and navy this season.",
            "Yes, {color} is available in all sizes of the {product} right now.",
        ),
    ),
    (
        ("electronics",),
        ("How long does the battery last on the {product}?", "what's the battery life of the {product}"),
        (
            "The {product} lasts about {hours} hours on a full charge, and a quick 15-minute charge gives a few more hours.",
            "You can expect around {hours} hours of use from a full charge of the {product}.",
        ),
    ),
    (
        ("electronics",),
        ("Does the {product} work with iPhone and Android?", "Is the {product} compatible with my laptop?"),
        (
            "Yes, the {product} works with iPhone, Android and most laptops over Bluetooth or USB-C.",
            "The {product} is compatible with all recent phones and laptops; no app is required.",
        ),
    ),
    (
        ("home",),
        ("Is the {product} dishwasher safe?", "How do I clean the {product}?"),
        (
            "We recommend hand-washing the {product} with warm water and a soft sponge to keep {it_obj} in great shape.",
            "The {product} wipes clean easily; avoid harsh cleaners so the finish lasts.",
        ),
    ),
    (
        ("home",),
        ("How big is the {product}?", "Will the {product} fit on a small counter?"),
        (
            "The {product} is compact and fits comfortably on a standard counter or desk.",
            "The {product} is designed for small spaces; the exact dimensions are listed on the product page.",
        ),
    ),
    (
        ("eco",),
        ("Is the {product} plastic free?", "What is the {product} made of?"),
        (
            "The {product} is plastic-free and made from renewable materials.",
            "The {product} is made from natural, biodegradable materials and ships in recyclable packaging.",
        ),
    ),
    (
        ("beauty",),
        (
            "Is the {product} OK for sensitive skin?",
            "Does the {product} have fragrance?",
            "is the {product} cruelty free",
        ),
        (
            "The {product} is fragrance-free, dermatologist tested and suitable for sensitive skin.",
            "The {product} is cruelty-free and vegan, and it's gentle enough for daily use.",
        ),
    ),
    (
        ("fitness",),
        ("How heavy is the {product}?", "Is the {product} good for beginners?"),
        (
            "The {product} is designed for all levels, and it's light enough to move around easily.",
            "Many beginners start with the {product}; it's sturdy, easy to store and comes with a quick-start guide.",
        ),
    ),
)


def _product_question_variants() -> tuple[_Variant, ...]:
    """One ``product_question`` variant per (category, topic) row of ``_PRODUCT_QA``."""
    return tuple(
        _v(openers, answers, _PQ_ACTIONS, categories=cats, ask="none", tone="question")
        for cats, openers, answers in _PRODUCT_QA
    )


# ---------------------------------------------------------------------------------------------
# Intents: each is a tuple of variants. INTENTS is the key order of this table.

_INTENT_TABLE: dict[str, tuple[_Variant, ...]] = {
    "order_status": (
        _v(
            [
                "Where is my order #{order}? I placed it on {date}.",
                "Can you tell me the status of order {order}?",
                "I ordered the {product} on {date} and haven't heard anything since. Any update?",
                "Just checking on my order. When will it ship?",
                "What's the status of my {product} order?",
                "Has order #{order} shipped yet?",
                "I'm trying to track my package with the {product}, can you help?",
                "Could you check where my order is? It's #{order}.",
                "wheres my order, its been a few days",
                "Any news on my {product}? I ordered it on {date}.",
            ],
            [
                "I can see order #{order} for the {product}, placed on {date}, and it has already shipped with {carrier}.",
                "Your order #{order} for the {product} shipped with {carrier} and is currently in transit.",
                "I've pulled up order {order}: the {product} left our warehouse and is with {carrier} now.",
                "Order #{order} was packed shortly after you placed it on {date} and handed over to {carrier}.",
                "Good news, the {product} from order #{order} is on its way with {carrier}.",
            ],
            [
                "Your tracking number is {tracking}, and {carrier} expects to deliver it by {date2}.",
                "I've emailed you the {carrier} tracking link so you can follow it in real time.",
                "It's scheduled to arrive by {date2}, and you'll get a text when it's out for delivery.",
                "You can follow it with tracking number {tracking} on the {carrier} website.",
                "The estimated delivery date is {date2}; I'll keep an eye on it and email you if anything changes.",
            ],
            [
                (
                    "Can I change the delivery date?",
                    "{carrier} lets you reschedule from the tracking page with number {tracking}. If you'd like, I can also add a note asking them to leave it at your door.",
                ),
                (
                    "Will I need to sign for it?",
                    "No signature is needed for order #{order}, so {carrier} will leave it in a safe place.",
                ),
                (
                    "Can you send me the tracking number again?",
                    "Of course{nm}, it's {tracking} with {carrier}. I've also sent it to your email.",
                ),
                (
                    "what if im not home that day",
                    "No problem. {carrier} will leave a notice and try again the next business day, or you can pick it up at a nearby {carrier} location.",
                ),
            ],
            tone="question",
        ),
    ),
    "late_delivery": (
        _v(
            [
                "My order #{order} was supposed to arrive by {date2} and it's still not here.",
                "It's been over a week and my {product} hasn't arrived. This is really frustrating.",
                "The tracking for order {order} hasn't updated in days. What's going on?",
                "I was promised delivery by {date2} but nothing came.",
                "my package is late again. order {order}",
                "I needed the {product} for this weekend and it still hasn't shown up.",
                "Order #{order} is late. The {carrier} tracking has said in transit forever.",
                "Why is my {product} taking so long? I ordered it on {date}.",
            ],
            [
                "I can see order #{order} for the {product} is with {carrier}, and it has missed the {date2} delivery estimate.",
                "Order {order} shipped on {date} with {carrier}, but the tracking hasn't updated for a few days.",
                "It looks like your {product} (order #{order}) was delayed at a {carrier} sorting facility.",
                "I've checked order #{order}: {carrier} had the {product} due by {date2}, so it is definitely running late.",
            ],
            [
                "I've opened a trace with {carrier}, and if it doesn't move within 48 hours I'll send a replacement at no cost.",
                "I've added a {delay_credit} store credit to your account as an apology for the delay.",
                "I've filed a delay claim with {carrier}; you'll receive an update by email within one business day.",
                "If it doesn't arrive by the end of the week, reply here and I'll either reship it or refund the full {amount}.",
                "I've asked {carrier} to prioritize it, and I'll email you the moment the tracking updates.",
            ],
            [
                (
                    "Can I just get a refund instead?",
                    "Absolutely. I can cancel the shipment and refund {amount} to your original payment method; it takes {refund_days} to show up.",
                ),
                (
                    "What if it shows up after you send the replacement?",
                    "Just keep it or refuse the delivery, whichever is easier. Either way you won't be charged twice.",
                ),
                (
                    "Can the replacement be sent express?",
                    "Yes, I've upgraded it to express shipping at no charge, so it will arrive in {express}.",
                ),
            ],
        ),
    ),
    "missing_item": (
        _v(
            [
                "My package from order #{order} arrived but the {product} wasn't in it.",
                "I received my order today but one item is missing.",
                "The box came with only part of my order. The {product} is missing.",
                "Order {order} came without the {product}. The packing slip lists it though.",
                "one of my items never came, the {product}",
                "Half my order is missing! Where is the {product}?",
            ],
            [
                "I can see order #{order} included the {product}, and it was shipped in a separate box with {carrier}.",
                "Order {order} lists the {product}, so it should have been in your package.",
                "I've checked order #{order}: the {product} was packed on its own, which is why it didn't arrive with the rest.",
            ],
            [
                "Sometimes items ship in separate boxes, so please look out for a second {carrier} delivery with tracking number {tracking}.",
                "I've sent a replacement {product} with express shipping at no charge; you'll get the tracking number by email today.",
                "I've issued a full refund of {amount} for the missing {product}; it will reach your card within {refund_days}.",
                "If the second box hasn't arrived by {date2}, reply here and I'll ship a replacement right away.",
            ],
        ),
        _v(
            [
                "Order {order} says delivered on {date2} but there's nothing at my door.",
                "tracking says delivered but i never got my {product}",
                "{carrier} marked my package as delivered, but I don't have it.",
                "My {product} was supposedly delivered yesterday. It's not here.",
                "The tracking for #{order} says delivered but I checked everywhere.",
            ],
            [
                "I can see order #{order} was marked delivered by {carrier} on {date2}.",
                "{carrier} shows the {product} from order {order} as delivered on {date2}, but I understand it never reached you.",
                "Order #{order} for the {product} was scanned as delivered on {date2}.",
            ],
            [
                "I've opened an investigation with {carrier}, and if the package isn't found within 2 business days we'll refund {amount} in full.",
                "Packages marked delivered sometimes turn up within a day, so please check with neighbors; if it's still missing tomorrow, I'll send a replacement.",
                "I've sent a replacement {product} with signature required, so this won't happen again.",
                "I've filed a lost-package claim with {carrier} and shipped a replacement, which should arrive within {express}.",
            ],
            [
                (
                    "Could a neighbor have it?",
                    "It's worth a quick check. {carrier}'s driver notes often mention where a package was left, and I've asked them for the delivery photo.",
                ),
                (
                    "Do I need to file a police report?",
                    "No, that isn't necessary. The claim with {carrier} is enough for us to replace or refund your order.",
                ),
            ],
        ),
    ),
    "damaged_item": (
        _v(
            [
                "The {product} I received is damaged.",
                "My {product} arrived broken.",
                "The box was crushed and the {product} inside is damaged.",
                "order {order} came damaged, the {product} doesnt work",
                "I just opened my package and the {product} has a big scratch on it.",
                "The {product} from order #{order} arrived cracked.",
                "Received the {product} today and it's damaged. Really disappointed.",
            ],
            [
                "I can see order #{order} for the {product}, delivered by {carrier} on {date2}.",
                "Thanks for the details. Order {order} shows the {product} shipped with {carrier}, so it was likely damaged in transit.",
                "I've noted the damage on order #{order} for the {product}.",
            ],
            [
                "I've issued a prepaid return label to your email, and a replacement {product} will ship as soon as you drop off the damaged one.",
                "You don't need to send it back; I've shipped a replacement that should arrive by {date3}.",
                "I've processed a full refund of {amount}, which will reach your card within {refund_days}.",
                "I've filed a damage report with {carrier} and sent a replacement {product} with express shipping.",
            ],
            [
                (
                    "Can I get a refund instead of a replacement?",
                    "Of course. I've cancelled the replacement and refunded {amount} to your original payment method; it will appear within {refund_days}.",
                ),
                (
                    "What should I do with the broken one?",
                    "You can keep it or recycle it locally; there's no need to send it back.",
                ),
                (
                    "Do you need photos?",
                    "A photo helps with the {carrier} claim, so if you can reply with one that would be great, but the replacement is already on its way.",
                ),
            ],
        ),
    ),
    "wrong_item": (
        _v(
            [
                "I ordered the {product} but received the {product2} instead.",
                "Wrong item in my package. Order #{order}.",
                "You sent me the {product2}, that's not what I ordered.",
                "got the wrong thing, i ordered the {product}",
                "My order {order} was for the {product}, but there's a {product2} in the box.",
                "There must be a mix-up, I got the {product2} instead of the {product}.",
            ],
            [
                "I can see order #{order} was for the {product}, and I'm sorry the {product2} was sent instead.",
                "You're right, order {order} is for the {product}; our warehouse picked the {product2} by mistake.",
                "I've confirmed that order #{order} should have contained the {product}, not the {product2}.",
            ],
            [
                "I've sent a prepaid return label for the {product2} to your email and shipped the correct {product} with express shipping.",
                "The correct {product} is on its way with {carrier}, tracking number {tracking}; please use the prepaid label in your email to send back the {product2} within {return_days} days.",
                "I've shipped the {product} today at no charge, and you'll get a prepaid label for the {product2} by email.",
            ],
            [
                (
                    "Do I have to return the wrong one first?",
                    "No, the correct {product} ships today. You can send back the {product2} whenever it's convenient within {return_days} days.",
                ),
                (
                    "Can I just keep the {product2} and get a refund?",
                    "I can arrange that{nm}. I'll refund {amount} for the {product} and you can keep the {product2} at no charge.",
                ),
            ],
        ),
    ),
    "return_request": (
        _v(
            [
                "I'd like to return the {product} from order #{order}.",
                "How do I return something?",
                "The {product} isn't what I expected, can I send it back?",
                "I want to return my {product}. I bought it on {date}.",
                "can i return this? never used it",
                "I need to send back the {product}. What's the process?",
                "Could I get a return label for order {order}?",
                "I changed my mind about the {product}. Is it too late to return it?",
            ],
            [
                "Order #{order} for the {product} was delivered on {date}, so it's within our {return_days}-day return window.",
                "I can see the {product} on order {order}, and it's eligible for a free return.",
                "Your {product} from order #{order} qualifies for a return, since it's within {return_days} days of delivery.",
            ],
            [
                "I've issued a prepaid return label to your email; just pack the {product} and drop it off at any {carrier} location.",
                "Once we receive it, the refund of {amount} will reach your card within {refund_days}.",
                "I've started return {rma} and emailed you the prepaid {carrier} label.",
                "You can also return it at any of our stores with order number #{order}, and the refund is issued on the spot.",
            ],
            [
                (
                    "Do I need the original packaging?",
                    "No, any sturdy box works. Just include the packing slip or write {rma} on a piece of paper inside.",
                ),
                (
                    "Is there a return fee?",
                    "Returns are free within {return_days} days, so the full {amount} will be refunded.",
                ),
                (
                    "How long does the refund take?",
                    "We process returns within 2 business days of receiving them, and the refund of {amount} then takes {refund_days} to reach your card.",
                ),
            ],
            tone="question",
        ),
    ),
    "refund_status": (
        _v(
            [
                "I returned the {product} two weeks ago and still haven't got my refund.",
                "When will I get my refund for order #{order}?",
                "I'm checking on the refund of {amount} for my return.",
                "where is my refund??",
                "You received my return on {date} but I don't see the money back yet.",
                "Has the refund for order {order} gone through?",
            ],
            [
                "We received your return of the {product} on {date}, and the refund of {amount} was issued on {date2}.",
                "I can see the refund of {amount} for order #{order} was processed on {date2} to the card ending in {last4}.",
                "Your return for order {order} was checked in on {date}, and {amount} was refunded on {date2}.",
            ],
            [
                "Refunds take {refund_days} to show up on your card, so it should appear very soon.",
                "I've emailed you the refund confirmation with reference {ref} so you can check with your bank if needed.",
                "If you don't see it within {refund_days} of {date2}, reply here and I'll escalate it to our payments team.",
            ],
            [
                (
                    "Can you refund it as store credit instead? It would be faster.",
                    "Unfortunately the refund has already gone to your card, but it's on its way and there's nothing else you need to do.",
                ),
                (
                    "My bank says they don't see anything.",
                    "Banks sometimes show refunds only once they settle. Please give them reference {ref}, which lets them trace the {amount} refund.",
                ),
            ],
        ),
    ),
    "cancel_order": (
        _v(
            [
                "I need to cancel order #{order}.",
                "Please cancel my order for the {product}, I ordered it by mistake.",
                "Can I still cancel? I placed the order on {date}.",
                "cancel my order pls",
                "I found the {product} somewhere else, can you cancel order {order}?",
                "I accidentally ordered two of the {product}. Can you cancel one order?",
            ],
            [
                "I found order #{order} for the {product}, placed on {date}, and it hadn't shipped yet.",
                "Order {order} for the {product} was still being processed, so I was able to stop it in time.",
                "Good timing, order #{order} hadn't left the warehouse.",
            ],
            [
                "I've cancelled it, and the refund of {amount} will reach your card within {refund_days}.",
                "It's cancelled now, and you'll receive a confirmation email shortly. The {amount} hold on your card will be released within {auth_days}.",
                "The order is cancelled and the full {amount} has been refunded to your original payment method.",
            ],
            [
                (
                    "Will I be charged anything?",
                    "No, you won't be charged at all. The {amount} will come back to the card ending in {last4}.",
                ),
                (
                    "Can I reorder it later with the same price?",
                    "Prices can change, but if you reorder the {product} within {price_days} days and the price is higher, contact us and we'll honor the original price.",
                ),
            ],
            tone="question",
        ),
        _v(
            [
                "Can I cancel order #{order}? It might have shipped already.",
                "I want to cancel my {product} order but the email says it shipped.",
                "Is it too late to cancel order {order}?",
            ],
            [
                "Order #{order} for the {product} already shipped with {carrier}, so I can't cancel it anymore.",
                "I'm sorry, order {order} left our warehouse with {carrier} this morning, so it can't be cancelled.",
            ],
            [
                "You can simply refuse the delivery, and once it comes back to us the refund of {amount} is issued automatically.",
                "When it arrives, use the prepaid return label I've just emailed you, and we'll refund {amount} within {refund_days} of receiving it.",
                "I've emailed you a prepaid return label, so sending it back will cost you nothing.",
            ],
            [
                (
                    "Do I have to open the package?",
                    "No, you can return it sealed. Just stick the prepaid label over the old one and drop it at any {carrier} location.",
                )
            ],
        ),
    ),
    "exchange_size": (
        _v(
            [
                "The {product} is too small. Can I exchange it for a size {size2}?",
                "I need a different size in the {product}.",
                "Can I swap my {product} for a size {size2}?",
                "the {product} doesnt fit, i need a {size2}",
                "I ordered the {product} in size {size} but it doesn't fit. Can I exchange it?",
                "Is it possible to exchange my {product} for another size?",
            ],
            [
                "I see order #{order} with the {product} in size {size}.",
                "Order {order} has the {product} in size {size}, and size {size2} is in stock.",
                "Your {product} from order #{order} was size {size}, and we have size {size2} available.",
            ],
            [
                "I've reserved a size {size2} for you and emailed a prepaid return label for the size {size}; the new one ships as soon as {carrier} scans the return.",
                "Exchanges are free, and the size {size2} will arrive within {standard} once we receive the original.",
                "To save time, I've shipped the size {size2} right away; please send back the size {size} within {return_days} days using the label in your email.",
            ],
            [
                (
                    "What if the {size2} doesn't fit either?",
                    "You can exchange it again at no cost within {return_days} days of delivery.",
                ),
                ("Is the {size2} in stock?", "Yes, I can see it's in stock, and I've put one on hold for you."),
                (
                    "Does the {product} run small?",
                    "Some customers find it a little snug, so going up one size is a good idea if you're between sizes.",
                ),
            ],
            categories=("apparel",),
            tone="question",
        ),
    ),
    "payment_failed": (
        _v(
            [
                "My payment keeps getting declined at checkout.",
                "I tried to pay for the {product} but it says payment failed.",
                "Why was my card declined? There's money on it.",
                "checkout wont go through",
                "I keep getting an error when I try to pay. I'm trying to buy the {product}.",
                "The payment for my order failed twice. What's wrong?",
            ],
            [
                "I can see an attempted payment of {amount} with the card ending in {last4} that was declined by the bank's security check.",
                "The payment of {amount} from the card ending in {last4} didn't go through because the billing address didn't match.",
                "I see two attempts of {amount} on the card ending in {last4}; both were stopped before any charge was made.",
            ],
            [
                "Please double-check that the billing address matches your card statement, then try again.",
                "Your cart is saved, so you can also pay with PayPal or a gift card.",
                "I've placed a 24-hour hold on the {product} so it won't sell out while you sort this out.",
                "If your bank confirms the card is fine, try again in a few minutes; sometimes they approve it after a quick text confirmation.",
            ],
            [
                (
                    "Was I charged for the failed attempts?",
                    "No, declined payments are never charged. You may see a temporary authorization, which disappears within {auth_days}.",
                ),
                (
                    "Can I pay over the phone instead?",
                    "Yes, our team can take payment over the phone from {support_hours}, and your cart with the {product} is saved.",
                ),
            ],
            ask="none",
        ),
    ),
    "promo_code": (
        _v(
            [
                "The code {promo} isn't working.",
                "promo code {promo} says invalid",
                "I tried {promo} at checkout and it didn't apply. Why?",
            ],
            [
                "I checked {promo}: it gives {pct}% off full-price items, and your cart has a sale item, which is why it was rejected.",
                "{promo} is valid, but it only applies to full-price items, and one item in your cart is on sale.",
            ],
            [
                "If you remove the sale item, {promo} will apply to the rest of your order.",
                "You can place the sale item in a separate order, and {promo} will work on everything else.",
            ],
            [("Does it work on the {product}?", "Yes, the {product} is full price, so the {pct}% discount applies.")],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "Why won't {promo} work? My cart is pretty small.",
                "The code {promo} isn't working.",
                "{promo} won't apply to my order",
            ],
            [
                "The code {promo} is valid for {pct}% off orders over {free_ship}, and your cart is just under that.",
                "{promo} needs a cart total of at least {free_ship}, which is why checkout rejected it.",
            ],
            [
                "Once your cart reaches {free_ship}, the {pct}% discount will apply automatically.",
                "If you add one more item to pass {free_ship}, the code will work and shipping becomes free too.",
            ],
            [
                (
                    "Can I use two codes on one order?",
                    "Only one promo code can be used per order, but it can be combined with loyalty points.",
                )
            ],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "Is {promo} still valid? It won't go through.",
                "My code {promo} says expired.",
                "i have a code {promo} but it doesnt work anymore",
            ],
            [
                "It looks like {promo} expired on {date}, which is why checkout rejected it.",
                "The code {promo} ended on {date}, I'm afraid.",
            ],
            [
                "I've added a one-time {pct}% code to your account that you can use at checkout this week.",
                "As a courtesy, I've sent you a fresh code by email with the same {pct}% discount.",
            ],
            [
                (
                    "Can I use two codes on one order?",
                    "Only one promo code can be used per order, but it can be combined with loyalty points.",
                )
            ],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "I forgot to apply my promo code {promo} to order #{order}, can you add it?",
                "I placed order {order} yesterday but forgot to use {promo}.",
                "Can you still apply {promo} to my order?",
            ],
            [
                "Order #{order} was placed on {date}, and {promo} was valid at that time for {pct}% off.",
                "I can see order {order} for the {product}; {promo} applies to it for {pct}% off.",
            ],
            [
                "I've applied {promo} to order #{order}, and the difference will be refunded to your card within {refund_days}.",
                "I've applied the {pct}% discount retroactively, and you'll see the adjustment on the card ending in {last4}.",
            ],
            tone="question",
        ),
    ),
    "account_access": (
        _v(
            [
                "I can't log in to my account.",
                "I forgot my password and the reset email never came.",
                "My account is locked after too many attempts.",
                "cant sign in to my account",
                "It keeps saying my password is wrong, but I know it's right.",
                "I'm locked out of my account and I need to check an order.",
            ],
            [
                "I found the account for {email}, and it was locked after several failed sign-in attempts.",
                "The account under {email} is active, but the last reset email bounced.",
                "I can see your account, {email}, and there's a temporary lock on it for your security.",
            ],
            [
                "I've unlocked it and sent a password reset link to {email}; it's valid for {reset_minutes} minutes.",
                "Please check your spam folder for an email from our support team, and use the link there to choose a new password.",
                "I've sent a fresh reset link to {email}; once you've set a new password you'll be able to sign in right away.",
            ],
            [
                (
                    "Has my account been hacked?",
                    "I don't see any unusual activity or orders. For extra safety, you can turn on two-step verification in your account settings.",
                ),
                (
                    "The link says expired.",
                    "Reset links expire after {reset_minutes} minutes. I've just sent a new one to {email}, so please use that one.",
                ),
            ],
            ask="email",
        ),
    ),
    "warranty_claim": (
        _v(
            [
                "My {product} stopped working after three months.",
                "The {product} won't turn on anymore. Is it under warranty?",
                "I bought the {product} on {date} and it already broke.",
                "The {product} from order #{order} has a defect. What are my options?",
                "my {product} broke, warranty??",
                "I think my {product} is faulty. It worked fine at first.",
            ],
            [
                "Your {product} from order #{order}, purchased on {date}, is covered by our {warranty} warranty.",
                "I can see the {product} on order {order}, and it's well within the {warranty} warranty.",
                "Order #{order} shows the {product} bought on {date}, so it qualifies for a warranty replacement.",
            ],
            [
                "I've opened warranty claim {claim} and emailed you a prepaid label; a replacement ships once we receive the faulty unit.",
                "Since it's within warranty, we'll send a replacement {product} right away, and you can return the old one with the label in your email.",
                "I've opened claim {claim}; our repair team will contact you within 2 business days to arrange pickup with {carrier}.",
            ],
            [
                ("Do I need the receipt?", "No, order #{order} serves as your proof of purchase."),
                (
                    "Does the replacement come with a new warranty?",
                    "Yes, the replacement is covered by a fresh {warranty} warranty from the day it arrives.",
                ),
                (
                    "What if it's out of warranty?",
                    "Then we still offer a repair at a reduced cost, but in your case the {product} is covered, so there's no charge.",
                ),
            ],
            categories=("electronics", "home", "fitness"),
        ),
    ),
    "product_question": _product_question_variants(),
    "eco_products": (
        _v(
            [
                "Do you have eco-friendly alternatives to plastic wrap?",
                "I'm looking for more sustainable kitchen products.",
                "What eco-friendly products do you carry?",
                "do you sell anything plastic free",
            ],
            [
                "The {product} is a popular choice: it's reusable, plastic-free and made from renewable materials.",
                "I'd recommend the {product}, which is part of our eco line and is currently priced at {amount}.",
                "Our eco line includes the {product}, which replaces single-use plastic for everyday use.",
            ],
            [
                "All eco products ship in recyclable, plastic-free packaging.",
                "You can also choose carbon-neutral shipping at checkout at no extra cost.",
                "I've emailed you a link to the full eco collection so you can browse.",
            ],
            [
                (
                    "Is the packaging recyclable too?",
                    "Yes, we ship eco orders in recycled cardboard with paper tape, so everything can go in your recycling bin.",
                ),
                (
                    "How long does the {product} last?",
                    "With normal use it lasts for years, and it's covered by our {return_days}-day return policy if it doesn't suit you.",
                ),
            ],
            categories=("eco",),
            ask="none",
            tone="question",
        ),
        _v(
            [
                "What is the {product} made from?",
                "Is the {product} really sustainable?",
                "How do I take care of the {product} so it lasts?",
            ],
            [
                "The {product} is made from renewable, biodegradable materials and contains no plastic.",
                "The {product} is certified sustainable, and it's made by a supplier we audit every year.",
            ],
            [
                "Hand-wash it with mild soap and let it air dry, and it will last a long time.",
                "At the end of its life it can be composted or recycled, so nothing goes to landfill.",
            ],
            categories=("eco",),
            ask="product",
            tone="question",
        ),
    ),
    "subscription": (
        _v(
            [
                "How do I pause my monthly subscription?",
                "I'm going on vacation, can I skip next month's box?",
                "Can I pause my subscription for a month?",
                "pause my subscription please",
            ],
            [
                "I can see your monthly subscription renews on {date2} for {amount}.",
                "Your subscription is active and the next box is scheduled for {date2}.",
            ],
            [
                "I've paused it for one month, so you won't be charged on {date2}.",
                "I've skipped the {date2} box; your subscription resumes automatically the month after.",
                "It's paused now, and you can resume it anytime from your account page.",
            ],
            tone="question",
        ),
        _v(
            [
                "I want to cancel my subscription.",
                "Please cancel my subscription box.",
                "I was charged {amount} for a subscription I thought I cancelled.",
                "how do i stop the monthly box",
            ],
            [
                "I can see your subscription was set to renew on {date2} for {amount}.",
                "Your subscription renewed on {date} for {amount}, even though you'd asked to cancel.",
            ],
            [
                "I've cancelled it effective immediately, and you won't be charged again.",
                "I've cancelled the subscription and refunded the {amount} renewal; it will reach your card within {refund_days}.",
                "It's cancelled, and you'll get a confirmation email within the next few minutes.",
            ],
            [
                (
                    "Will I lose my subscriber discount?",
                    "The subscriber discount ends with the subscription, but you can rejoin anytime and it comes back.",
                )
            ],
        ),
        _v(
            ["Can I change the delivery date of my subscription?", "Can I switch my subscription to every two months?"],
            ["Your subscription currently ships monthly, with the next box on {date2}."],
            [
                "I've updated it, and your next box will ship on {date3} instead.",
                "Done, it now ships every two months, starting with the box on {date3}.",
            ],
            tone="question",
        ),
    ),
    "loyalty_points": (
        _v(
            [
                "How many loyalty points do I have?",
                "How do I redeem my rewards points?",
                "What can I do with my points?",
                "how many points do i have",
            ],
            [
                "You currently have {points} points, and every {points_block} is worth {points_block_value} off.",
                "Your rewards balance is {points} points.",
                "I can see {points} points on your account, which is enough for a discount on your next order.",
            ],
            [
                "You can redeem them at checkout by ticking the use points box.",
                "Points don't expire as long as you make at least one purchase a year.",
                "You earn {points_rule}, so the points add up quickly.",
            ],
            [
                (
                    "Can I use points with a promo code?",
                    "Yes, points can be combined with one promo code on the same order.",
                )
            ],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "My points from order #{order} didn't show up.",
                "I didn't get loyalty points for my last order.",
                "The points for my {product} are missing.",
            ],
            [
                "I can see order #{order} for {amount}, which should have earned points, but they weren't added.",
                "You're right, the points for order {order} didn't post because it was placed as a guest checkout.",
            ],
            [
                "I've added the missing points from order #{order}, so your balance is now {points} points.",
                "I've credited the points manually; your new balance of {points} points will show within an hour.",
            ],
        ),
    ),
    "gift_order": (
        _v(
            [
                "I'd like to send the {product} as a gift to {friend}.",
                "Can you include a gift message and hide the price?",
                "Is gift wrapping available for the {product}?",
                "My order #{order} is a gift, can you remove the receipt?",
                "I'm buying the {product} for a friend's birthday. Can it be gift wrapped?",
            ],
            [
                "I can see order #{order} for the {product}, and it hasn't shipped yet, so there's time to change it.",
                "Gift wrapping is available for the {product}, and order {order} can still be updated.",
                "Order #{order} with the {product} is still in our warehouse, so I can add gift options.",
            ],
            [
                "I've added gift wrapping and your message to order #{order}; the packing slip won't show any prices.",
                "I've marked it as a gift, so the receipt will go to your email instead of in the box.",
                "It's all set: gift wrap, a handwritten card, and no prices anywhere in the package.",
            ],
            [
                (
                    "Can the recipient return it if it doesn't fit?",
                    "Yes, gift returns are easy. They can exchange it or get store credit within {return_days} days, and you won't be notified.",
                ),
                (
                    "What should the card say?",
                    "Whatever you'd like! Just send me the message and I'll add it to order #{order}.",
                ),
            ],
            tone="question",
        ),
    ),
    "change_address": (
        _v(
            [
                "I need to change the shipping address on order #{order}.",
                "I moved, can you send my {product} to {street}, {city}?",
                "wrong address on my order!!",
                "I put my old address on order {order}. Can you fix it?",
                "Can I update the delivery address? I ordered the {product} on {date}.",
            ],
            [
                "Order #{order} hasn't shipped yet, so I've updated the address to {street}, {city}.",
                "I've changed the shipping address on order {order} to {street}, {city}.",
                "The {product} on order #{order} will now go to {street}, {city}.",
            ],
            [
                "You'll get a confirmation email with the new address, and it will ship within 1 business day.",
                "{carrier} will deliver it to the new address within {standard}.",
                "I've also saved {street} as the default address on your account.",
            ],
            [
                ("Will this delay my order?", "No, it still ships on schedule, so you can expect it by {date2}."),
                (
                    "Can you update my billing address too?",
                    "Billing addresses are changed in your account settings for security, but it only takes a minute.",
                ),
            ],
            ask="address",
            tone="question",
        ),
    ),
    "price_match": (
        _v(
            [
                "The {product} dropped to {amount2} a week after I bought it. Can I get the difference?",
                "I saw the {product} cheaper on your site today.",
                "I paid {amount} for the {product} and now it's on sale. Do you do price adjustments?",
                "the {product} is on sale now, i just bought it",
            ],
            [
                "You bought the {product} on {date} for {amount}, and it's now on sale for {amount2}.",
                "I can see order #{order} with the {product} at {amount}; the current price is {amount2}.",
            ],
            [
                "Since that's within our {price_days}-day price adjustment window, I've refunded the difference to your card; it will appear within {refund_days}.",
                "I've applied a price adjustment to order #{order}, and the difference is on its way to the card ending in {last4}.",
                "I've credited the difference as store credit, which you can use right away.",
            ],
            [
                (
                    "Do you match other stores' prices?",
                    "We match our own website's price within {price_days} days of purchase, but not other retailers, I'm afraid.",
                )
            ],
            tone="question",
        ),
    ),
    "shipping_options": (
        _v(
            ["How long does shipping take?", "how fast can u ship", "When will my order arrive if I order today?"],
            [
                "Standard shipping takes {standard}, and orders placed before 2 pm ship the same business day.",
                "Most orders arrive within {standard} with standard shipping.",
            ],
            [
                "If you need it sooner, express shipping arrives in {express} for {express_fee}.",
                "You'll see the delivery estimate for your address at checkout.",
            ],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "Do you offer express shipping?",
                "Can I get my order faster?",
                "I need something by this weekend. Do you have express?",
            ],
            [
                "Yes, express shipping arrives in {express} and costs {express_fee}.",
                "We offer express delivery in {express} for {express_fee}.",
            ],
            [
                "Just choose express at checkout; orders placed before 2 pm ship the same day.",
                "Express orders are sent with {carrier} and include tracking.",
            ],
            ask="none",
            tone="question",
        ),
        _v(
            ["Can I get free shipping?", "Is shipping free?", "how much is shipping"],
            [
                "Standard shipping is free on orders over {free_ship}.",
                "Orders over {free_ship} ship free with standard delivery, which takes {standard}.",
            ],
            [
                "If your cart is a little under {free_ship}, adding one more item will make shipping free.",
                "Rewards members also get free shipping during member sale events.",
            ],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "Which carriers do you use?",
                "Do you ship with {carrier}?",
                "What shipping company will deliver my order?",
            ],
            [
                "We ship with {carrier} and a few other carriers, depending on your address.",
                "Most orders in your area go out with {carrier}.",
            ],
            [
                "You'll get the tracking number by email as soon as your order leaves our warehouse.",
                "Every shipment includes tracking, so you can follow it on the carrier's website.",
            ],
            [
                (
                    "Do you ship on weekends?",
                    "Our warehouse ships Monday to Saturday, and {carrier} delivers on Saturdays in most areas.",
                )
            ],
            ask="none",
            tone="question",
        ),
    ),
    "store_hours": (
        _v(
            [
                "What time does your store open on Sunday?",
                "What are your store hours?",
                "Are you open late on weekdays?",
                "when does the store close",
                "Is the store open on Sundays?",
            ],
            [
                "Our stores are open {weekday_hours} Monday to Saturday and {sunday_hours} on Sunday.",
                "On Sundays we open at 10 am and close at 6 pm; the rest of the week it's {weekday_hours}.",
            ],
            [
                "Online support is available {support_hours} if you need us outside store hours.",
                "Holiday hours are posted on our website a week in advance.",
            ],
            ask="none",
            tone="question",
        ),
        _v(
            [
                "Can I pick up my order #{order} in store today?",
                "Is my order ready for pickup?",
                "I chose in-store pickup for the {product}. When can I get it?",
            ],
            [
                "Order #{order} with the {product} is ready for pickup.",
                "Your {product} (order {order}) arrived at the store this morning.",
            ],
            [
                "Just bring your order number or the pickup email; we're open {weekday_hours} today.",
                "We'll hold it for 7 days, so there's no rush.",
            ],
            tone="question",
        ),
    ),
    "double_charge": (
        _v(
            [
                "I was charged twice for order #{order}.",
                "There are two charges of {amount} on my card.",
                "Why did you charge me twice for the {product}?",
                "double charged!! order {order}",
            ],
            [
                "I can see two charges of {amount} on the card ending in {last4}: one is the payment for order #{order} and the other is a temporary authorization.",
                "Order {order} was charged {amount} once; the second line on your statement is a pending authorization.",
            ],
            [
                "The authorization will drop off automatically within {auth_days}, and you won't be charged twice.",
                "I've asked our payments team to release the authorization early, so it may disappear sooner.",
            ],
        ),
        _v(
            [
                "I got charged twice for the same order, both charges went through.",
                "Two payments of {amount} went through for order #{order}.",
            ],
            [
                "You're right, order #{order} was charged {amount} twice because of a checkout error.",
                "I can confirm a duplicate charge of {amount} for order {order} on the card ending in {last4}.",
            ],
            [
                "I've refunded the duplicate charge of {amount}; it will reach your card within {refund_days}.",
                "The duplicate payment has been refunded, and I've emailed you the confirmation with reference {ref}.",
            ],
        ),
    ),
    "gift_card": (
        _v(
            [
                "How do I check my gift card balance?",
                "My gift card isn't working at checkout.",
                "Can I use a gift card and a credit card together?",
                "whats left on my gift card",
                "The gift card I got says invalid.",
            ],
            [
                "Your gift card ending in {last4} has a balance of {amount}.",
                "The gift card ending in {last4} is active, with {amount} remaining.",
                "I've checked the card ending in {last4}: it had not been activated, so I've activated it and it now shows {amount}.",
            ],
            [
                "At checkout, enter the full card number and PIN, and you can pay any remaining amount with a credit card.",
                "Gift cards never expire, so you can use the balance whenever you like.",
                "If it still doesn't work, reply here with a screenshot and I'll apply it to your order myself.",
            ],
            ask="none",
            tone="question",
        ),
    ),
    "back_in_stock": (
        _v(
            [
                "When will the {product} be back in stock?",
                "The {product} has been sold out for weeks. Any news?",
                "is the {product} coming back",
                "Can you let me know when the {product} is available again?",
            ],
            [
                "The {product} is expected back in our warehouse around {date2}.",
                "We have a new shipment of the {product} arriving by {date2}.",
            ],
            [
                "I've signed you up for a back-in-stock email, so you'll hear from us the day it's available.",
                "If you'd like, I can reserve one for you at {amount} so you don't miss it.",
            ],
            [("Will the price change?", "The price will stay at {amount} when it comes back.")],
            ask="product",
            tone="question",
        ),
    ),
}

INTENTS: tuple[str, ...] = tuple(_INTENT_TABLE)

# ---------------------------------------------------------------------------------------------
# Slot pools and per-dialogue context

_COLORS = ("charcoal", "olive", "sand", "burgundy", "forest green", "slate blue", "cream", "rust")
_LETTER_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
_NUMBER_SIZES = ("7", "8", "9", "10", "11", "12")
_STREETS = (
    "Elm Street",
    "Oak Avenue",
    "Birch Lane",
    "Hillcrest Road",
    "Lakeview Drive",
    "Park Place",
    "River Road",
    "Mill Street",
    "Orchard Way",
    "Sunset Boulevard",
    "Chestnut Court",
    "Harbor View",
)
_CITIES = (
    "Springfield",
    "Riverside",
    "Fairview",
    "Lakewood",
    "Greenville",
    "Oakdale",
    "Brookfield",
    "Ashford",
    "Kingsport",
    "Milton",
    "Westbury",
    "Clearwater",
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")


@dataclass(frozen=True)
class _Pools:
    """Train-side slot values, ordered deterministically, plus derived lookups."""

    slots: dict[str, tuple[str, ...]]
    dates: tuple[str, ...]  # chronological, so "later" dates are real
    by_category: dict[str, tuple[str, ...]]  # category -> products


_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _date_key(date: str) -> tuple[int, int]:
    month, day = date.split(" ")
    return _MONTH_NAMES.index(month), int(day)


@lru_cache(maxsize=1)
def _pools() -> _Pools:
    slots = slot_values("train")
    by_category: dict[str, list[str]] = {}
    for product in slots["product"]:
        by_category.setdefault(product_category(product), []).append(product)
    return _Pools(
        slots=slots,
        dates=tuple(sorted(slots["date"], key=_date_key)),
        by_category={c: tuple(p) for c, p in by_category.items()},
    )


def _pick_product(rng: random.Random, categories: tuple[str, ...]) -> str:
    pools = _pools()
    if not categories:
        return rng.choice(pools.slots["product"])
    choices = [p for c in categories for p in pools.by_category.get(c, ())]
    return rng.choice(choices)


def _later_dates(rng: random.Random) -> tuple[str, str, str]:
    """Three increasing train dates a few days apart (order placed, due, later): only real
    train values, never computed ones, so no held-out date can appear."""
    dates = _pools().dates
    i = rng.randrange(len(dates))
    j = i + rng.randint(2, 6)
    k = j + rng.randint(2, 6)
    return dates[i % len(dates)], dates[j % len(dates)], dates[k % len(dates)]


def _sizes(rng: random.Random, product: str) -> tuple[str, str]:
    pool = _NUMBER_SIZES if product.endswith(("Shoes", "Boots")) else _LETTER_SIZES
    first, second = rng.sample(pool, 2)
    return first, second


def _context(variant: _Variant, rng: random.Random) -> dict[str, str]:
    """Every value a template may use, drawn once so all turns of a dialogue agree."""
    s = _pools().slots
    product = _pick_product(rng, variant.categories)
    product2 = rng.choice(s["product"])
    while product2 == product:
        product2 = rng.choice(s["product"])
    hi, lo = sorted(rng.sample(s["amount"], 2), key=lambda a: float(a[1:]), reverse=True)
    name, friend = rng.sample(s["customer"], 2)
    date, date2, date3 = _later_dates(rng)
    size, size2 = _sizes(rng, product)
    promo = rng.choice(s["promo_code"])
    plural = product.endswith("s")  # "Running Shoes", "Wireless Earbuds", ...
    ctx = dict(_FACTS)
    ctx.update(
        name=name,
        nm="",
        friend=friend,
        order=rng.choice(s["order_id"]),
        product=product,
        product2=product2,
        date=date,
        date2=date2,
        date3=date3,
        amount=hi,
        amount2=lo,
        carrier=rng.choice(s["carrier"]),
        promo=promo,
        pct=re.sub(r"\D", "", promo),
        size=size,
        size2=size2,
        color=rng.choice(_COLORS),
        it_obj="them" if plural else "it",
        tracking=str(rng.randrange(10**11, 10**12)),
        last4=f"{rng.randrange(10000):04d}",
        rma=f"RMA-{rng.randrange(10**5, 10**6)}",
        claim=f"WC-{rng.randrange(10**5, 10**6)}",
        ref=f"REF-{rng.randrange(10**7, 10**8)}",
        points=f"{rng.randrange(150, 6000):,}",
        hours=str(rng.choice((8, 10, 12, 20, 24, 30, 36))),
        email=f"{name.lower()}{rng.randrange(10, 100)}@{rng.choice(_EMAIL_DOMAINS)}",
        street=f"{rng.randrange(2, 990)} {rng.choice(_STREETS)}",
        city=rng.choice(_CITIES),
    )
    return ctx


def _know_name(ctx: dict[str, str]) -> None:
    """From now on the agent addresses the customer by name."""
    ctx["nm"] = f", {ctx['name']}"


# ---------------------------------------------------------------------------------------------
# Sloppy customer text

_TYPOS = {
    "received": "recieved",
    "definitely": "definately",
    "address": "adress",
    "please": "pls",
    "you": "u",
    "your": "ur",
    "thanks": "thx",
    "because": "bc",
    "package": "pacakge",
    "tomorrow": "tommorow",
    "I'm": "im",
    "don't": "dont",
    "can't": "cant",
    "it's": "its",
    "haven't": "havent",
    "didn't": "didnt",
    "doesn't": "doesnt",
    "what's": "whats",
    "separate": "seperate",
    "really": "realy",
    "the": "teh",
    "order": "oder",
}
_WORD = re.compile(r"[A-Za-z']+")


def _roughen(text: str, rng: random.Random, lower: bool = True) -> str:
    """Typos, lowercase, dropped punctuation: how real customers often type. Only whole known
    words are replaced, so slot values (order numbers, amounts) are never altered; ``lower=False``
    keeps the case too (tickets, where the agent copies names and products exactly)."""
    text = _WORD.sub(lambda m: _TYPOS[m.group(0)] if m.group(0) in _TYPOS and rng.random() < 0.5 else m.group(0), text)
    if rng.random() < 0.6 and lower:
        text = text.lower()
    if rng.random() < 0.6:
        text = re.sub(r"[.,!?]+(?=\s|$)", "", text)  # keeps the "." inside "$23.99"
    return text


# ---------------------------------------------------------------------------------------------
# Dialogues


_PLURAL_VERBS = {
    "is": "are",
    "has": "have",
    "was": "were",
    "comes": "come",
    "runs": "run",
    "lasts": "last",
    "works": "work",
    "wipes": "wipe",
    "fits": "fit",
    "doesn't": "don't",
    "isn't": "aren't",
    "Is": "Are",
    "Does": "Do",
}
_VERB_AFTER = re.compile(r"^ (is|has|was|comes|runs|lasts|works|wipes|fits|doesn't|isn't)\b")
_VERB_BEFORE = re.compile(r"\b(Is|Does) the $")


def _agree(text: str, product: str) -> str:
    """Verb agreement for plural product names ("the Summit Running Shoes are ...")."""
    if not product.endswith("s") or product not in text:
        return text
    pieces = text.split(product)
    for i in range(len(pieces) - 1):
        pieces[i] = _VERB_BEFORE.sub(lambda m: _PLURAL_VERBS[m.group(1)] + " the ", pieces[i])
        pieces[i + 1] = _VERB_AFTER.sub(lambda m: " " + _PLURAL_VERBS[m.group(1)], pieces[i + 1])
    return product.join(pieces)


def _customer(template: str, ctx: dict[str, str], rng: random.Random, lower: bool = True) -> str:
    text = _agree(template.format(**ctx), ctx["product"])
    return "Customer: " + (_roughen(text, rng, lower) if rng.random() < ROUGH_SHARE else text)


def _agent(parts: Sequence[str], ctx: dict[str, str]) -> str:
    return "Agent: " + _agree(" ".join(p.format(**ctx) for p in parts if p), ctx["product"])


# Sentences in which a customer states one specific; keyed by the template field they carry.
# Dialogue openers add one of the order details; tickets add whichever specifics they state.
_DETAILS: dict[str, tuple[str, ...]] = {
    "order": (
        "My order number is #{order}.",
        "Order #{order}.",
        "The order number is {order}.",
        "It's order #{order}.",
        "This is about order {order}.",
        "Order number: #{order}.",
    ),
    "product": (
        "It's for the {product}.",
        "The item is the {product}.",
        "This is about the {product}.",
        "I'm writing about the {product}.",
    ),
    "product2": ("I got the {product2} instead.", "What came was the {product2}."),
    "date": ("I placed the order on {date}.", "I ordered it on {date}, if that helps."),
    "amount": ("I paid {amount} for it.", "The total was {amount}."),
    "carrier": ("It was supposed to come with {carrier}.", "It was shipped with {carrier}."),
    "email": ("My email is {email}.", "The account email is {email}.", "My account is under {email}."),
    "street": ("The new address is {street}, {city}.", "Please send it to {street}, {city}."),
    "last4": ("I used the card ending in {last4}.",),
}
# Details a customer may add after the opener when an order is involved (all true of the order).
_CUSTOMER_DETAILS = tuple(d for key in ("date", "amount", "carrier", "email", "last4") for d in _DETAILS[key])


def _opening(variant: _Variant, ctx: dict[str, str], rng: random.Random) -> tuple[str, str]:
    """The customer's first line; introduces the name (which the agent then uses) ~half the time."""
    opener = rng.choice(variant.openers)
    if _uses_order(variant) and rng.random() < 0.4:
        detail = rng.choice(_CUSTOMER_DETAILS)
        if not any(key in opener for key in ("{date}", "{amount}", "{carrier}")):
            opener += " " + detail
    if rng.random() < 0.5:
        _know_name(ctx)
        return rng.choice(_INTROS) + " " + opener, opener
    greeting = rng.choice(_GREETINGS)
    return (greeting + " " + opener if greeting else opener), opener


def _ask_kind(variant: _Variant, opener: str, name_known: bool, rng: random.Random) -> str | None:
    """What the agent must ask for before it can help, given what the opener already says."""
    if variant.ask == "order" and "{order}" not in opener:
        if not _uses_order(variant):
            return None
        return rng.choice(("order", "order", "email") if name_known else ("order", "order", "name_order", "email"))
    if variant.ask == "address":
        return "address" if "{street}" not in opener else None
    if variant.ask in ("email", "product"):
        slot = "{email}" if variant.ask == "email" else "{product}"
        return variant.ask if slot not in opener else None
    return None


def _uses_order(variant: _Variant) -> bool:
    """Whether the agent's replies mention the order number (so asking for it makes sense)."""
    return any("{order}" in t for t in variant.restates + variant.actions)


def _mentions_product(variant: _Variant) -> bool:
    """Whether the agent's restatement names the product (so talking about it fits)."""
    return any("{product}" in t for t in variant.restates)


def _extra(variant: _Variant, rng: random.Random, order_known: bool, p: float = 0.6) -> str:
    """An optional confirmation line. It fits when something was done, not after a plain
    question; the order one only when the order number is known."""
    if rng.random() < p and order_known:
        return rng.choice(_EXTRAS_ORDER)
    if rng.random() < p and (variant.tone == "problem" or variant.ask != "none"):
        return rng.choice(_EXTRAS_ANY)
    return ""


def _resolution(variant: _Variant, ctx: dict[str, str], rng: random.Random, asked: bool) -> str:
    """Acknowledge, restate the specifics, give a concrete next step, maybe offer more help."""
    opening = rng.choice(_AFTER_ASK) if asked else rng.choice(_ACKS[variant.tone])
    # One action only: two picked independently can repeat or contradict each other.
    extra = _extra(variant, rng, _uses_order(variant))
    offer = rng.choice(_OFFERS) if rng.random() < 0.3 else ""
    return _agent([opening, rng.choice(variant.restates), rng.choice(variant.actions), extra, offer], ctx)


def _byes(variant: _Variant, rng: random.Random, product_known: bool, order_known: bool) -> tuple[str, ...]:
    """The agent's closing lines that fit: "Enjoy your X!" reads wrong after a complaint."""
    if variant.tone == "question" and product_known and rng.random() < 0.3:
        return _AGENT_BYES_PRODUCT
    if order_known and rng.random() < 0.4:
        return _AGENT_BYES_ORDER
    return _AGENT_BYES


def _dialogue_lines(variant: _Variant, ctx: dict[str, str], rng: random.Random) -> list[str]:
    n_exchanges = rng.randint(2, 4)
    first, opener = _opening(variant, ctx, rng)
    lines = [_customer(first, ctx, rng)]
    ask = _ask_kind(variant, opener, bool(ctx["nm"]), rng)
    if ask is not None:
        agent_asks, replies = _ASKS[ask]
        lines.append(_agent([rng.choice(_ASK_LEADS[variant.tone]), rng.choice(agent_asks)], ctx))
        if ask in ("name_order", "email"):
            _know_name(ctx)  # the customer gives it, or the account lookup shows it
        lines.append(_customer(rng.choice(replies), ctx, rng))
    lines.append(_resolution(variant, ctx, rng, asked=ask is not None))
    followups = list(variant.followups)
    if _uses_order(variant):
        followups += _GENERIC_ORDER_FOLLOWUPS
    if _mentions_product(variant) and rng.random() < 0.5:
        followups += _GENERIC_PRODUCT_FOLLOWUPS
    rng.shuffle(followups)
    while len(lines) < 2 * (n_exchanges - 1) and followups:
        question, answer = followups.pop()
        lines += [_customer(question, ctx, rng), _agent([answer], ctx)]
    if len(lines) < 2 * n_exchanges:
        byes = _byes(variant, rng, _mentions_product(variant), _uses_order(variant))
        lines += [_customer(rng.choice(_CUSTOMER_THANKS), ctx, rng), _agent([rng.choice(byes)], ctx)]
    return lines


def generate_dialogue(intent: str, rng: random.Random) -> str:
    """One ``Customer: ...`` / ``Agent: ...`` dialogue (2-4 exchanges) for ``intent``."""
    if intent not in _INTENT_TABLE:
        raise ValueError(f"unknown intent {intent!r}; expected one of {', '.join(INTENTS)}")
    variant = rng.choice(_INTENT_TABLE[intent])
    ctx = _context(variant, rng)
    return "\n".join(_dialogue_lines(variant, ctx, rng))


# ---------------------------------------------------------------------------------------------
# Tickets: one customer message that already states everything (intent, name, order number,
# product, ...) and one agent reply that resolves it and repeats every specific the customer
# gave, so the model learns to copy the details of a single message into its answer.

# Specifics the agent must repeat when the customer states them, and how a recap names each one.
_RECAP_ITEMS: dict[str, str] = {
    "order": "order #{order}",
    "product": "the {product}",
    "product2": "the {product2}",
    "date": "the date {date}",
    "date2": "the date {date2}",
    "amount": "the amount of {amount}",
    "amount2": "the price of {amount2}",
    "carrier": "{carrier} as the carrier",
    "promo": "the code {promo}",
    "size": "size {size}",
    "size2": "size {size2}",
    "street": "{street}, {city}",
    "city": "{city}",
    "email": "{email}",
    "friend": "the gift for {friend}",
    "last4": "the card ending in {last4}",
}
_RECAP_LEADS = (
    "Just to confirm, I have {items}.",
    "I've noted {items} on this ticket.",
    "For reference, I have {items} on file.",
    "I've added {items} to the notes on your case.",
)
_SIGNOFFS = (
    "- {name}",
    "Thanks, {name}",
    "Thank you! {name}",
    "Best, {name}",
    "Cheers, {name}",
    "Thanks in advance, {name}",
)
_TICKET_INTROS = _INTROS + ("Hi, it's {name}.", "{name} here.")
_TICKET_GREETS = (
    "Hi {name}!",
    "Hello {name}!",
    "Hi {name}, thanks for the details.",
    "Hello {name}, thanks for writing in.",
    "Dear {name}, thank you for your message.",
)
_TICKET_CLOSERS = _OFFERS + (
    "Have a great day{nm}!",
    "Thanks for your patience{nm}.",
    "Thank you for shopping with us{nm}.",
    "Have a wonderful day{nm}.",
)
TICKET_CLOSING_SHARE = 0.35  # tickets followed by a short "Thanks!" / "You're welcome" exchange


@cache
def _fields(template: str) -> frozenset[str]:
    """The template fields of a ``str.format`` string."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(template) if field)


def _given_only(variant: _Variant) -> frozenset[str]:
    """Specifics the agent may name only once the customer has stated them (else it would
    invent an order number or product the customer never mentioned)."""
    keys = {"order"} if _uses_order(variant) else set()
    for key in ("product", "product2", "promo", "friend"):
        if any(key in _fields(o) for o in variant.openers):
            keys.add(key)
    keys.update({"email": ("email",), "address": ("street", "city"), "product": ("product",)}.get(variant.ask, ()))
    return frozenset(keys)


def _pick_fitting(templates: Sequence[str], given: set[str], need: frozenset[str], rng: random.Random) -> str:
    """A template that names no given-only specific the customer hasn't stated, if there is one;
    usually one that repeats the most of what the customer stated (fewer recaps needed)."""
    fitting = [t for t in templates if _fields(t) & need <= given] or list(templates)
    if rng.random() < 0.7:
        best = max(len(_fields(t) & given) for t in fitting)
        fitting = [t for t in fitting if len(_fields(t) & given) == best]
    return rng.choice(fitting)


def _ticket_lines(variant: _Variant, ctx: dict[str, str], rng: random.Random) -> list[str]:
    opener = rng.choice(variant.openers)
    need = _given_only(variant)
    given = set(_fields(opener))
    details: list[str] = []

    def state(key: str) -> None:
        if key not in given and key in _DETAILS:
            details.append(rng.choice(_DETAILS[key]))
            given.update(_fields(details[-1]))

    # Vary what the message states: the order and product usually, date/amount/carrier sometimes.
    for key in ("order", "product"):
        if key in need and rng.random() < 0.75:
            state(key)
    if variant.ask in ("email", "address"):
        state("email" if variant.ask == "email" else "street")
    if _uses_order(variant):
        for key in ("date", "amount", "carrier"):
            if rng.random() < 0.2 and not given & {"date", "amount", "carrier"}:
                state(key)
    restate = _pick_fitting(variant.restates, given, need, rng)
    action = _pick_fitting(variant.actions, given, need, rng)
    for key in sorted((_fields(restate) | _fields(action)) & need - given):
        state(key)  # no template fits: the customer states what the reply needs
    rng.shuffle(details)
    if details and not opener.endswith((".", "!", "?")):
        opener += "."  # sloppy openers ("cancel my order pls") lack the full stop
    body = " ".join([opener] + details)

    style = rng.random()
    if style < 0.35:
        _know_name(ctx)
        message = rng.choice(_TICKET_INTROS) + " " + body
    elif style < 0.6:
        _know_name(ctx)
        greeting = rng.choice(_GREETINGS)
        message = (greeting + " " if greeting else "") + body + " " + rng.choice(_SIGNOFFS)
    else:
        greeting = rng.choice(_GREETINGS)
        message = (greeting + " " if greeting else "") + body + (" Thanks!" if rng.random() < 0.3 else "")
    lines = [_customer(message, ctx, rng, lower=False)]

    ack = rng.choice(_ACKS[variant.tone])
    if ctx["nm"] and rng.random() < 0.5:
        ack = rng.choice(_TICKET_GREETS).format(name=ctx["name"]) + " " + ack.replace("{nm}", "")
    # Every specific the customer stated that the restatement and the action don't repeat.
    stated = _fields(message) | given
    missing = [k for k in _RECAP_ITEMS if k in stated and k not in _fields(restate) | _fields(action)]
    if "street" in missing and "city" in missing:
        missing.remove("city")
    recap = ""
    if missing:
        items = [_RECAP_ITEMS[k] for k in missing]
        joined = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        recap = rng.choice(_RECAP_LEADS).replace("{items}", joined)
    extra = _extra(variant, rng, "order" in given, p=0.4)
    lines.append(_agent([ack, restate, recap, action, extra, rng.choice(_TICKET_CLOSERS)], ctx))
    if rng.random() < TICKET_CLOSING_SHARE:
        byes = _byes(variant, rng, "product" in given, "order" in given)
        lines += [_customer(rng.choice(_CUSTOMER_THANKS), ctx, rng), _agent([rng.choice(byes)], ctx)]
    return lines


def generate_ticket(intent: str, rng: random.Random) -> str:
    """One ticket for ``intent``: a single ``Customer:`` message stating the specifics and a
    resolving ``Agent:`` reply that repeats them, maybe followed by a short thanks / goodbye."""
    if intent not in _INTENT_TABLE:
        raise ValueError(f"unknown intent {intent!r}; expected one of {', '.join(INTENTS)}")
    variant = rng.choice(_INTENT_TABLE[intent])
    ctx = _context(variant, rng)
    return "\n".join(_ticket_lines(variant, ctx, rng))


# ---------------------------------------------------------------------------------------------
# Policy snippets: a title and clauses; each clause has the question it answers (for the Q&A
# layout) and interchangeable phrasings.

_Clause = tuple[str, tuple[str, ...]]
_POLICIES: dict[str, tuple[tuple[str, ...], tuple[_Clause, ...]]] = {
    "returns": (
        ("Returns Policy", "Our Return Policy", "How Returns Work", "Returns and Refunds"),
        (
            (
                "How long do I have to return an item?",
                (
                    "You can return most items within {return_days} days of delivery for a full refund.",
                    "Items can be returned within {return_days} days of delivery, no questions asked.",
                    "We accept returns of unused items for {return_days} days after delivery.",
                ),
            ),
            (
                "How do I send an item back?",
                (
                    "Returns are free: we email you a prepaid label, and you can drop the parcel at any {carrier} location.",
                    "Start a return from your account or contact our support team, and we'll send a prepaid return label.",
                    "You can also return online orders at any of our stores.",
                ),
            ),
            (
                "When will I get my refund?",
                (
                    "Once we receive your return, refunds reach your original payment method within {refund_days}.",
                    "Refunds are issued within 2 business days of receiving the item and take {refund_days} to appear on your card.",
                ),
            ),
            (
                "Can everything be returned?",
                (
                    "Personal care items such as the {beauty} must be unopened to be returned.",
                    "Final-sale items are marked on the product page and cannot be returned.",
                ),
            ),
        ),
    ),
    "shipping": (
        ("Shipping Policy", "Shipping and Delivery", "Delivery Information"),
        (
            (
                "How long does standard shipping take?",
                (
                    "Standard shipping takes {standard} and is free on orders over {free_ship}.",
                    "Orders over {free_ship} ship free with standard delivery ({standard}).",
                ),
            ),
            (
                "Is there a faster option?",
                (
                    "Express shipping arrives in {express} and costs {express_fee}.",
                    "Need it sooner? Choose express at checkout for delivery in {express}.",
                ),
            ),
            (
                "How can I track my order?",
                (
                    "We ship with {carrier} and other trusted carriers, and every order includes tracking.",
                    "You'll receive a tracking number by email as soon as your order leaves our warehouse.",
                ),
            ),
            (
                "When does my order ship?",
                (
                    "Orders placed before 2 pm on a business day ship the same day.",
                    "Our warehouse ships Monday to Saturday, so weekend orders go out on Monday at the latest.",
                ),
            ),
        ),
    ),
    "warranty": (
        ("Warranty", "Our Warranty Promise", "Product Warranty"),
        (
            (
                "Which products have a warranty?",
                (
                    "Electronics, home goods and fitness equipment come with a {warranty} limited warranty.",
                    "Every item in our electronics, home and fitness ranges is covered by a {warranty} warranty against defects.",
                ),
            ),
            (
                "What happens if my product breaks?",
                (
                    "If a product such as the {product} fails under normal use, we'll repair or replace it at no cost.",
                    "Covered defects are repaired or replaced free of charge, including shipping both ways.",
                ),
            ),
            (
                "How do I make a claim?",
                (
                    "Your order number serves as proof of purchase, so there's no need to keep a receipt.",
                    "To start a claim, contact support with your order number and a short description of the problem.",
                ),
            ),
            (
                "What isn't covered?",
                (
                    "The warranty does not cover accidental damage or normal wear.",
                    "Accidental damage and normal wear are not covered, but we can often repair them at a reduced cost.",
                ),
            ),
        ),
    ),
    "loyalty": (
        ("Loyalty Program", "Rewards Program", "How Rewards Work"),
        (
            (
                "How do I earn points?",
                ("Members earn {points_rule}.", "As a rewards member you earn {points_rule}, including on sale items."),
            ),
            (
                "How do I use my points?",
                (
                    "Every {points_block} can be redeemed for {points_block_value} off your next order.",
                    "Redeem points at checkout: {points_block} equals {points_block_value} off.",
                ),
            ),
            (
                "Do points expire?",
                (
                    "Points don't expire as long as you shop at least once a year.",
                    "Your points stay valid as long as you make at least one purchase every twelve months.",
                ),
            ),
            (
                "How do I join?",
                (
                    "Joining is free, and you get bonus points on your birthday.",
                    "Sign up for free in your account; members also get early access to sales.",
                ),
            ),
        ),
    ),
    "price_adjustment": (
        ("Price Adjustments", "Price Match Policy"),
        (
            (
                "What if the price drops after I buy?",
                (
                    "If the price of an item drops within {price_days} days of purchase, we'll refund the difference.",
                    "We offer price adjustments for {price_days} days after you buy.",
                ),
            ),
            (
                "Do you match other stores?",
                (
                    "Price adjustments apply to our own prices only, not to other retailers.",
                    "We match our own website's prices, but not those of other retailers.",
                ),
            ),
            (
                "How do I get the difference?",
                (
                    "The difference goes back to your original payment method within {refund_days}.",
                    "Contact support with your order number; you can take the difference as store credit, which is available immediately.",
                ),
            ),
        ),
    ),
    "exchanges": (
        ("Exchanges", "Size Exchanges"),
        (
            (
                "Can I exchange a size?",
                (
                    "Apparel can be exchanged for a different size or color within {return_days} days, free of charge.",
                    "Exchanges are always free, including the return shipping.",
                ),
            ),
            (
                "How long does an exchange take?",
                (
                    "We ship the new size as soon as the carrier scans your return, so you're not left waiting.",
                    "The new item ships the day your return is scanned and arrives within {standard}.",
                ),
            ),
            (
                "What if my size is sold out?",
                (
                    "If the size you need is out of stock, we'll refund you instead.",
                    "When a size is sold out, we refund the item in full or hold it until it's back in stock.",
                ),
            ),
        ),
    ),
    "gift_cards": (
        ("Gift Cards", "Gift Card Terms"),
        (
            ("Do gift cards expire?", ("Gift cards never expire and have no fees.", "Our gift cards never expire.")),
            (
                "Where can I use a gift card?",
                (
                    "You can combine a gift card with a credit card or PayPal at checkout.",
                    "Gift cards can be used online and in any of our stores.",
                ),
            ),
            (
                "How do I check my balance?",
                (
                    "Check your balance anytime in your account or by contacting support.",
                    "Your balance is shown at checkout and in your account.",
                ),
            ),
        ),
    ),
    "subscriptions": (
        ("Subscriptions", "Subscribe and Save"),
        (
            (
                "Can I pause or cancel my subscription?",
                (
                    "Subscriptions ship monthly and can be paused, skipped or cancelled at any time.",
                    "You're never locked in: pause or cancel your subscription from your account page.",
                ),
            ),
            (
                "What do subscribers get?",
                (
                    "Subscribers save 10% on every delivery and always get free shipping.",
                    "Every subscription delivery is 10% off and ships free.",
                ),
            ),
            (
                "Will I be reminded before a renewal?",
                (
                    "Subscriptions renew automatically, and we email a reminder three days before each renewal.",
                    "Yes, we send a reminder email three days before every renewal.",
                ),
            ),
        ),
    ),
    "sustainability": (
        ("Our Eco Commitment", "Sustainability"),
        (
            (
                "What is your eco line?",
                (
                    "Our eco line, including the {eco}, replaces single-use plastic with reusable products.",
                    "Products in our eco range, such as the {eco}, are plastic-free and made from renewable materials.",
                ),
            ),
            (
                "Is your packaging recyclable?",
                (
                    "Every order ships in recyclable packaging, and you can choose carbon-neutral shipping at checkout.",
                    "We use recycled cardboard and paper tape, so all our packaging can be recycled.",
                ),
            ),
        ),
    ),
    "store_hours": (
        ("Store Hours", "Visit Us", "Opening Hours"),
        (
            (
                "When are your stores open?",
                (
                    "Our stores are open {weekday_hours} Monday to Saturday and {sunday_hours} on Sunday.",
                    "Store hours: Monday to Saturday {weekday_hours}, Sunday {sunday_hours}.",
                ),
            ),
            (
                "When can I reach support?",
                ("Online support is available {support_hours}.", "You can chat with our support team {support_hours}."),
            ),
            (
                "How long are pickup orders held?",
                (
                    "In-store pickup orders are held for 7 days.",
                    "We hold pickup orders for 7 days after they arrive in store.",
                ),
            ),
        ),
    ),
}


def _policy_context(rng: random.Random) -> dict[str, str]:
    pools = _pools()
    ctx = dict(_FACTS)
    ctx.update(
        carrier=rng.choice(pools.slots["carrier"]),
        product=_pick_product(rng, ("electronics", "home")),
        beauty=rng.choice(pools.by_category["beauty"]),
        eco=rng.choice(pools.by_category["eco"]),
    )
    return ctx


def _policy_doc(rng: random.Random) -> tuple[str, str]:
    """A policy snippet laid out as a paragraph, a bullet list or Q&A; returns (kind, text)."""
    kind = rng.choice(tuple(_POLICIES))
    titles, clauses = _POLICIES[kind]
    ctx = _policy_context(rng)
    chosen = [c for c in clauses if rng.random() < 0.85] or [clauses[0]]
    pairs = [(question, _agree(rng.choice(phrasings).format(**ctx), ctx["product"])) for question, phrasings in chosen]
    style = rng.random()
    if style < 0.5:
        body = " ".join(answer for _, answer in pairs)
    elif style < 0.8:
        body = "\n".join("- " + answer for _, answer in pairs)
    else:
        body = "\n".join(f"Q: {question}\nA: {answer}" for question, answer in pairs)
    return "policy:" + kind, rng.choice(titles) + "\n" + body


# ---------------------------------------------------------------------------------------------
# Product descriptions

_CATEGORY_BLURBS: dict[str, tuple[tuple[str, ...], ...]] = {
    "apparel": (
        (
            "Made for everyday comfort, it pairs a relaxed fit with durable stitching.",
            "A wardrobe staple cut from soft, breathable fabric.",
            "Designed to layer easily and hold its shape wash after wash.",
        ),
        (
            "Available in sizes XS to XXL and in {color}, black and navy.",
            "Machine wash cold and lay flat to dry.",
            "Runs true to size; size up for a looser fit.",
        ),
    ),
    "electronics": (
        (
            "Pairs in seconds over Bluetooth and works with phones, tablets and laptops.",
            "Built for all-day use, with about {hours} hours of battery on a single charge.",
            "Charges over USB-C, and a quick 15-minute top-up gives hours of use.",
        ),
        (
            "Covered by our {warranty} warranty.",
            "Comes with a charging cable and a quick-start guide.",
            "Firmware updates are installed automatically.",
        ),
    ),
    "home": (
        (
            "Made to last, with a simple design that fits any room.",
            "A kitchen and home favorite, built from sturdy, easy-to-clean materials.",
            "Compact enough for small spaces without giving up anything important.",
        ),
        (
            "Covered by our {warranty} warranty.",
            "Hand-wash recommended to keep the finish like new.",
            "Ships fully assembled.",
        ),
    ),
    "eco": (
        (
            "Plastic-free and reusable, a simple swap for single-use products.",
            "Made from renewable, biodegradable materials.",
            "Part of our eco line: fewer things thrown away, more things that last.",
        ),
        (
            "Ships in recyclable, plastic-free packaging.",
            "Rinse with mild soap and air dry.",
            "Compost or recycle it at the end of its life.",
        ),
    ),
    "beauty": (
        (
            "Fragrance-free and dermatologist tested, gentle enough for sensitive skin.",
            "A lightweight formula that absorbs quickly and leaves no residue.",
            "Cruelty-free and vegan, made without parabens.",
        ),
        (
            "Apply morning and evening to clean skin.",
            "Unopened items can be returned within {return_days} days.",
            "Store in a cool, dry place.",
        ),
    ),
    "fitness": (
        (
            "Built for home workouts, sturdy enough for daily training.",
            "A favorite for beginners and experienced athletes alike.",
            "Easy to store, with a non-slip grip for safer workouts.",
        ),
        (
            "Covered by our {warranty} warranty.",
            "Includes a quick-start guide with beginner routines.",
            "Wipe clean after each use.",
        ),
    ),
}
_REVIEW_LINES = (
    "Exactly what I hoped for.",
    "Great quality for the price.",
    "Arrived quickly and works perfectly.",
    "I bought a second one as a gift.",
    "Would recommend to a friend.",
    "Good, but I wish it came in more colors.",
)


def _product_doc(rng: random.Random) -> tuple[str, str]:
    """A product page: name, category blurb, care/spec line, price and shipping, maybe a review."""
    s = _pools().slots
    product = rng.choice(s["product"])
    category = product_category(product)
    line = product.split(" ")[0]
    ctx = dict(_FACTS)
    ctx.update(color=rng.choice(_COLORS), hours=str(rng.choice((8, 10, 12, 20, 24, 30))))
    intro, detail = _CATEGORY_BLURBS[category]
    parts = [
        f"The {product} is part of our {line} collection.",
        rng.choice(intro).format(**ctx),
        rng.choice(detail).format(**ctx),
        f"Price: {rng.choice(s['amount'])}. Free standard shipping on orders over {_FACTS['free_ship']}, "
        f"and free returns within {_FACTS['return_days']} days.",
    ]
    text = product + "\n" + _agree(" ".join(parts), product)
    if rng.random() < 0.5:
        text += f"\nReview by {rng.choice(s['customer'])}: {rng.choice(_REVIEW_LINES)}"
    return "product", text


# ---------------------------------------------------------------------------------------------
# The corpus


def generate_labeled_corpus(n_docs: int = DEFAULT_N_DOCS, seed: int = 0) -> list[tuple[str, str]]:
    """``generate_corpus`` with each document's kind: an intent name, "policy:<kind>" or "product".

    Dialogue intents cycle through ``INTENTS`` in order, so any corpus with at least
    ``len(INTENTS)`` dialogues covers every intent.
    """
    if isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 1:
        raise ValueError(f"n_docs must be an integer >= 1, got {n_docs!r}")
    rng = random.Random(seed)
    docs: list[tuple[str, str]] = []
    n_dialogues = n_tickets = 0
    for _ in range(n_docs):
        r = rng.random()
        if r < POLICY_SHARE:
            docs.append(_policy_doc(rng))
        elif r < POLICY_SHARE + PRODUCT_SHARE:
            docs.append(_product_doc(rng))
        elif r < POLICY_SHARE + PRODUCT_SHARE + TICKET_SHARE:
            intent = INTENTS[n_tickets % len(INTENTS)]
            n_tickets += 1
            docs.append(("ticket:" + intent, generate_ticket(intent, rng)))
        else:
            intent = INTENTS[n_dialogues % len(INTENTS)]
            n_dialogues += 1
            docs.append((intent, generate_dialogue(intent, rng)))
    return docs


def _dialogue_corpus(n_docs: int, seed: int) -> list[str]:
    """Two thirds exchanges in the SFT generator's wording, one third reference drills, shuffled."""
    docs = dialogue_documents(n_docs - n_docs // 3, seed) + reference_drills(n_docs // 3, seed)
    random.Random(f"dialogue-corpus-{seed}").shuffle(docs)
    return docs


def default_n_docs(kind: str) -> int:
    """The documents a corpus of ``kind`` has by default."""
    return DEFAULT_N_DOCS if kind == "generic" else DIALOGUE_N_DOCS


def generate_corpus(n_docs: int | None = None, seed: int = 0, kind: str = "dialogue") -> list[str]:
    """``n_docs`` (default: ``default_n_docs(kind)``) synthetic support documents of ``kind`` (see
    ``CORPUS_KINDS`` and the module docstring); the same (n_docs, seed, kind) gives the same list.
    "mixed" is ``n_docs - n_docs // 2`` generic and ``n_docs // 2`` dialogue documents, shuffled."""
    if kind not in CORPUS_KINDS:
        raise ValueError(f"kind must be one of {CORPUS_KINDS}, got {kind!r}")
    n_docs = default_n_docs(kind) if n_docs is None else n_docs
    if isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 1:
        raise ValueError(f"n_docs must be an integer >= 1, got {n_docs!r}")
    if kind == "generic":
        return [text for _, text in generate_labeled_corpus(n_docs, seed)]
    if kind == "dialogue":
        return _dialogue_corpus(n_docs, seed)
    docs = generate_corpus(n_docs - n_docs // 2, seed, "generic") + _dialogue_corpus(n_docs // 2, seed)
    random.Random(f"mixed-{seed}").shuffle(docs)
    return docs


_SENTENCE_SPLIT = re.compile(r"[.!?\n]+")


def corpus_stats(docs: Sequence[str]) -> dict:
    """``{"n_docs", "bytes", "distinct_sentences"}``; sentences are split on . ! ? and newlines."""
    sentences = {s.strip() for d in docs for s in _SENTENCE_SPLIT.split(d)}
    sentences.discard("")
    return {
        "n_docs": len(docs),
        "bytes": sum(len(d.encode("utf-8")) for d in docs),
        "distinct_sentences": len(sentences),
    }


# ---------------------------------------------------------------------------------------------
# The user's own files


def _read_text(path: Path, shown: str | os.PathLike) -> str:
    """The file's text, or a CorpusError naming it (missing, unreadable, not UTF-8, empty)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(shown, "no such file") from None
    except IsADirectoryError:
        raise CorpusError(shown, "is a directory, not a file") from None
    except OSError as err:
        raise CorpusError(shown, f"cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(shown, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError(shown, "file is empty")
    return text


def _txt_docs(text: str) -> list[str]:
    # A blank line is empty or whitespace-only; one or more of them separate documents.
    blocks = re.split(r"\n[ \t]*\n(?:[ \t]*\n)*", text)
    return [b.strip("\n") for b in blocks if b.strip()]


def _jsonl_docs(text: str, shown: str | os.PathLike) -> list[str]:
    docs = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(shown, f"invalid JSON ({err.msg})", lineno) from None
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise CorpusError(shown, 'missing string field "text"', lineno)
        if not value.strip():
            raise CorpusError(shown, 'field "text" is empty', lineno)
        docs.append(value)
    return docs


def load_corpus_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Documents from the user's .txt files (split on blank lines) and .jsonl files (one
    ``{"text": ...}`` per line), in the order given. Any problem raises ``CorpusError``."""
    docs: list[str] = []
    for shown in paths:
        path = Path(shown)
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise CorpusError(shown, f"unsupported file type {suffix or '(none)'!r}; expected .txt or .jsonl")
        text = _read_text(path, shown)
        docs.extend(_txt_docs(text) if suffix == ".txt" else _jsonl_docs(text, shown))
    return docs
