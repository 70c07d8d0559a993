"""Customer messages as people write them: typos, shorthand, registers, filler, a second request.

The retail world (``domain``) writes every message from a few dozen templates, so a model trained
on it only understands that wording. This module varies a message (``vary_message``) and gives
many more ways to ask for each intent (``compose_request``, ``request_phrases``), all leaving the
slot values verbatim: the text is split around them (as ``domain._casualize`` does) and only the
pieces between them are rewritten.

``vary_message`` draws each change on its own, with these probabilities:

    change            p      what it does
    register          0.12   formal: "Dear Customer Service," / "To whom it may concern," for the
                             greeting, sometimes "I am writing ...", "Kind regards" before the name
                      0.15   casual: "hey", "yo", "ok so", "quick q:" for the greeting
                             (one draw: formal below 0.12, casual from 0.12 to 0.27)
    filler_before     0.15   a sentence that does not matter ("My sister recommended your shop.")
    filler_after      0.15   the same, after the request
    second_request    0.15   a short, generic second question ("Also, do you deliver on Saturdays?")
    emphasis          0.12   "??" / "???" for the last "?", "!!!" for the last "." of a complaint
    shorthand         0.25   you -> u, please -> pls, thanks -> thx, ... (``SHORTHAND``), each
                             phrase found with p 0.7
    typos             0.25   1 to n/12 of the n words: two letters swapped, one dropped or doubled
                             (never the first letter, only words of 4+ letters)
    lowercase         0.2    everything but the slot values lowercased
    no_punctuation    0.15   . , ; : ! and in-word apostrophes dropped (half the time "?" too)

About four messages in five change (79% of ``domain.make_context`` texts when measured). Fillers
and second requests match no intent's keywords (``domain.KEYWORD_RES``, checked by the tests), so
the labelled intent stays the only one the message asks about; complaint fillers ("This is the
second time I've had to write in.") only go with complaint intents. Nothing written here is
held-out phrasing (``domain.template_leaks``, checked by the tests).

``compose_request(intent, ref, rng, extras, topic)`` builds a request from a frame ("can you
{core}?", "how do I {core}?", "{core} asap", ...) and a core of the intent ("call off {ref}",
"get an invoice for {ref}", ...): 8-12 cores for each of the 21 intents, frames for asking
someone ("you") or about oneself ("me"), ~80 requests per intent.

Pure functions of the ``random.Random`` passed in; no global RNG, no hash-order iteration. Imports
only the standard library (``domain`` may import this module).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

PROBABILITIES: dict[str, float] = {
    "formal": 0.12,
    "casual": 0.15,
    "filler_before": 0.15,
    "filler_after": 0.15,
    "second_request": 0.15,
    "emphasis": 0.12,
    "shorthand": 0.25,
    "typos": 0.25,
    "lowercase": 0.2,
    "no_punctuation": 0.15,
}
SHORTHAND_RATE = 0.7  # each shorthand phrase of a message is replaced with this probability
TYPO_EVERY = 12  # at most one typo per this many words

# Intents whose customers complain (domain's ``Intent.apology``; the tests check they agree).
COMPLAINT_INTENTS = frozenset(
    "late_delivery missing_item damaged_item wrong_item refund_status payment_failed promo_code "
    "account_access warranty_claim loyalty_points".split()
)

SHORTHAND: tuple[tuple[str, tuple[str, ...]], ...] = (  # phrase -> replacements (first match wins)
    ("as soon as possible", ("asap", "ASAP")),
    ("i don't know", ("idk",)),
    ("by the way", ("btw",)),
    ("to be honest", ("tbh",)),
    ("at the moment", ("atm",)),
    ("customer service", ("CS",)),
    ("thank you", ("ty", "thx", "thank u")),
    ("thanks", ("thx", "ty", "thnx")),
    ("please", ("pls", "plz")),
    ("you're", ("ur", "youre")),
    ("your", ("ur", "yr")),
    ("you", ("u",)),
    ("because", ("bc", "cuz", "coz")),
    ("tomorrow", ("tmrw", "tmr")),
    ("tonight", ("tonite",)),
    ("without", ("w/o",)),
    ("with", ("w/",)),
    ("are", ("r",)),
    ("okay", ("ok", "k")),
    ("really", ("rly", "rlly")),
    ("people", ("ppl",)),
    ("message", ("msg",)),
    ("something", ("smth", "sth")),
    ("before", ("b4",)),
    ("information", ("info",)),
    ("number", ("no.", "num")),
    ("minutes", ("mins",)),
    ("probably", ("prob", "prolly")),
    ("going to", ("gonna",)),
    ("want to", ("wanna",)),
    ("i'm", ("im",)),
    ("don't", ("dont",)),
    ("can't", ("cant",)),
    ("received", ("recieved",)),
    ("definitely", ("def", "definately")),
)

FORMAL_OPENERS = (
    "Dear Customer Service,",
    "To whom it may concern,",
    "Dear Sir or Madam,",
    "Dear Support Team,",
    "Good afternoon,",
    "Dear team,",
    "Good evening,",
)
FORMAL_LEADS = (
    "I am writing regarding the matter below.",
    "I am writing to request your assistance.",
    "I would be grateful for your help with the following.",
    "I hope this message finds you well.",
    "Please find my query below.",
    "I am writing in the hope that you can assist me.",
)
FORMAL_CLOSINGS = ("Kind regards", "Best regards", "Yours faithfully", "Yours sincerely", "With thanks", "Sincerely")
CASUAL_OPENERS = ("hey", "yo", "ok so", "quick q:", "hiya", "hey there", "sooo", "um hi", "hi hi", "hey guys", "heyy")
CASUAL_CLOSERS = ("thx", "ty!", "cheers", "ta", "thanks!!", "xx")

FILLERS = (
    "I'm moving house next week so it's been hectic.",
    "My sister recommended your shop.",
    "Sorry if this should have gone to a different team.",
    "I tried the chat but it kept disconnecting.",
    "Hope you're having a good day.",
    "I've been shopping with you for a couple of years now.",
    "Sorry for the long message.",
    "I'm writing this on my phone, so excuse any typos.",
    "It's my first time buying from you.",
    "I couldn't find the answer in your FAQ.",
    "My husband usually handles this stuff.",
    "I'm away for work until Thursday.",
    "I called earlier but the line was busy.",
    "The website was a bit slow for me today.",
    "Not sure who else to ask.",
    "My neighbour got the same thing and loves it.",
    "I work nights so email is easiest.",
    "English isn't my first language, sorry.",
    "I'm not very good with computers.",
    "I saw your post on Instagram.",
    "It's been a long week.",
    "I hope this is the right place to ask.",
    "Just back from holiday and catching up on emails.",
    "My daughter set everything up for me.",
    "I've got a busy few days ahead.",
    "I'm usually really happy with your service.",
    "Sorry to bother you.",
    "I know you must be busy.",
    "Apologies for the short notice.",
    "Your team helped me last time, which was great.",
    "My internet has been patchy all day.",
    "I don't normally write in about things like this.",
    "I'm typing this on my lunch break.",
    "A friend told me to get in touch.",
    "Honestly I love the stuff you sell.",
    "I found you through a search online.",
    "The weather here has been awful.",
    "I'll be at work most of tomorrow.",
    "I've read the help pages already.",
    "I'm still fairly new to online shopping.",
    "I hope I'm explaining this properly.",
    "My phone died earlier so I'm on my laptop now.",
    "I'm in a different time zone, so replies may be slow.",
    "Please bear with me.",
    "My partner thinks I should just call, but I prefer email.",
    "I only have a few minutes, so I'll be quick.",
)
COMPLAINT_FILLERS = (
    "This is the second time I've had to write in.",
    "I'm honestly quite disappointed.",
    "I've been waiting all week for an answer.",
    "I'd really appreciate a quick response.",
    "Not impressed so far, to be honest.",
    "I need this sorted before the weekend.",
    "This has been really stressful.",
    "I expected better from you guys.",
    "It's the third email I've sent.",
    "I'm running out of patience here.",
)
SECOND_REQUESTS = (
    "Also, do you deliver on Saturdays?",
    "btw can you update my email to the new one?",
    "Also, are you open on bank holidays?",
    "Also, is there a phone number I can call?",
    "Also, do you have a shop in Manchester?",
    "btw, is there a way to save items for later?",
    "Also, can you add my partner as a second contact?",
    "Also, when does your summer sale start?",
    "And do you sell spare parts?",
    "Also, could you update my phone number?",
    "btw do you do student deals?",
    "Also, are you hiring at the moment?",
    "Also, how long do deliveries to Ireland usually take?",
    "Quick other thing: can I change my newsletter preferences?",
    "Also, do you have a click and collect option?",
    "One more thing, is your website down for anyone else?",
    "Also, can you stop sending me text messages?",
    "Also, what are your opening hours over the holidays?",
    "btw is there an app I can download?",
    "Also, will there be more stock of the green ones soon?",
    "Also, can you let me know when the blue version is back?",
    "PS: do you have a referral scheme?",
    "Also, is there a contact email for complaints?",
    "Also, do you deliver to PO boxes?",
    "Also, can I pick things up from your warehouse?",
    "Also, do you offer assembly?",
    "And is there a bulk option for businesses?",
    "Also, what does the little star next to some products mean?",
    "btw, is it safe to save my details on the site?",
)

# Request frames: "me" frames take what the customer does ("return {ref}"), "you" frames what they
# ask the agent to do ("send me a return label for {ref}").
ME_FRAMES = (
    "I need to {core}.",
    "how do I {core}?",
    "is it possible to {core}?",
    "I'd like to {core}.",
    "wondering if I could {core}",
    "I want to {core}.",
    "I'm trying to {core}.",
    "can I {core}?",
    "I was hoping to {core}.",
    "what's the best way to {core}?",
    "need to {core} asap",
)
YOU_FRAMES = (
    "can you {core}?",
    "could you {core}?",
    "pls {core}",
    "please {core}.",
    "{core} asap",
    "would you be able to {core}?",
    "I need you to {core}.",
    "any chance you could {core}?",
    "kindly {core}.",
    "I'd appreciate it if you could {core}.",
)

# Request cores per intent: "me|..." or "you|..." (which frames fit), "me|topic|..." for an intent
# whose replies depend on a topic (product_question). {ref} is the order/product phrase, with its
# determiner ("my order #A1234", "the Bakoru Kettle"); the intent's extra slots are always stated.
CORES: dict[str, tuple[str, ...]] = {
    "order_status": (
        "me|check the status of {ref}",
        "me|find out whether {ref} has shipped",
        "me|see if {ref} is on its way",
        "me|get a status update on {ref}",
        "you|check whether {ref} has shipped yet",
        "you|give me a status update on {ref}",
        "you|let me know if {ref} has been dispatched",
        "you|look up the status of {ref}",
        "you|tell me when {ref} is out for delivery",
    ),
    "late_delivery": (
        "me|find out why {ref} is so late with {carrier}",
        "me|chase {ref}, it's running late with {carrier}",
        "me|get an answer on {ref}, the {carrier} tracking is stuck",
        "me|report that {ref} is delayed with {carrier}",
        "you|chase {carrier} about {ref}, it's really late",
        "you|find out why {carrier} has delayed {ref}",
        "you|check on {ref}, it's been stuck with {carrier} for days",
        "you|sort out {ref}, {carrier} says it's delayed",
    ),
    "missing_item": (
        "me|report that {ref} was missing from my parcel",
        "me|get {ref} sent, it was not included in the delivery",
        "me|sort out {ref}, which was missing when I opened the box",
        "me|chase up {ref}, it was left out of my order",
        "you|send {ref}, it was left out of my delivery",
        "you|send {ref} on its own, it was missing from my order",
        "you|check why {ref} was not included in my parcel",
        "you|look into {ref} missing from my delivery",
    ),
    "damaged_item": (
        "me|report that {ref} arrived damaged",
        "me|get a replacement for {ref}, it came broken",
        "me|claim for {ref}, which was damaged in the post",
        "me|sort out {ref}, it showed up with a big dent",
        "you|replace {ref}, it arrived damaged",
        "you|send a new one, {ref} came broken",
        "you|help with {ref}, it arrived cracked",
        "you|do something about {ref}, it turned up dented",
    ),
    "wrong_item": (
        "me|report that I got the wrong item for {ref}",
        "me|get the right thing, I received something else instead of {ref}",
        "me|sort out the mix-up with {ref}",
        "me|fix {ref}, the wrong product arrived",
        "you|send the correct item for {ref}, I got the wrong one",
        "you|fix the mix-up with {ref}",
        "you|check {ref}, an incorrect item was in the box",
        "you|sort out {ref}, you sent something else instead",
    ),
    "return_request": (
        "me|return {ref}",
        "me|send {ref} back to you",
        "me|get a return label for {ref}",
        "me|start a return for {ref}, it doesn't fit right",
        "you|set up a return for {ref}",
        "you|send me a return label for {ref}",
        "you|take {ref} back, I'd like to return it",
        "you|process a return for {ref}",
    ),
    "refund_status": (
        "me|find out where my {amount} refund for {ref} is",
        "me|check on the {amount} refund for {ref}",
        "me|get my {amount} back for {ref}, the refund hasn't arrived",
        "me|track the refund of {amount} for {ref}",
        "you|check on my refund of {amount} for {ref}",
        "you|chase the {amount} refund for {ref}",
        "you|tell me when the {amount} refund for {ref} will land",
        "you|confirm the {amount} refund for {ref} went through",
    ),
    "cancel_order": (
        "me|cancel {ref}",
        "me|call off {ref}",
        "me|stop {ref} before it goes out and cancel it",
        "me|scrap {ref}, I don't need it anymore",
        "you|cancel {ref}",
        "you|cancel {ref} before it goes out",
        "you|call off {ref}",
        "you|stop {ref}, I have to cancel it",
    ),
    "exchange_size": (
        "me|exchange {ref} for a bigger size",
        "me|swap {ref} for a size up",
        "me|get {ref} one size down",
        "me|change the size of {ref}",
        "me|exchange {ref}, it's too tight",
        "you|swap {ref} for the next size up",
        "you|exchange {ref} for a size large",
        "you|send {ref} in a different size",
        "you|change {ref} to a size small",
    ),
    "payment_failed": (
        "me|pay the {amount} for {ref}, my card keeps getting declined",
        "me|complete the {amount} payment for {ref}",
        "me|find out why my {amount} payment for {ref} failed",
        "me|sort out the {amount} charge for {ref}, checkout keeps failing",
        "you|check why my card was declined for the {amount} on {ref}",
        "you|fix the {amount} payment for {ref}, it keeps failing",
        "you|look into the {amount} charge on {ref}, the order says it failed",
        "you|retry the {amount} payment for {ref}",
    ),
    "promo_code": (
        "me|use the code {promo_code} on {ref}",
        "me|apply {promo_code} to {ref}",
        "me|get the {promo_code} discount on {ref}",
        "me|redeem promo code {promo_code} for {ref}",
        "you|apply the code {promo_code} to {ref}",
        "you|add the {promo_code} discount to {ref}",
        "you|check why the code {promo_code} was rejected for {ref}",
        "you|honour the coupon {promo_code} on {ref}",
    ),
    "account_access": (
        "me|log in to my account to see {ref}",
        "me|get back into my account, I need to check {ref}",
        "me|reset my password so I can track {ref}",
        "me|unlock my account, I can't see {ref}",
        "you|unlock my account so I can check {ref}",
        "you|send me a new password link, I need to see {ref}",
        "you|help me sign in, I need {ref}",
        "you|reset my login, I can't get to {ref}",
    ),
    "warranty_claim": (
        "me|make a warranty claim on {ref}",
        "me|claim the warranty for {ref}, it stopped working",
        "me|get {ref} repaired under warranty",
        "me|check if {ref} is covered, it has a fault",
        "you|check if {ref} is still covered by the guarantee",
        "you|repair {ref} under the warranty",
        "you|process a warranty claim for {ref}",
        "you|replace {ref} under guarantee, it died after a few months",
    ),
    "product_question": (
        "me|dims|find out the dimensions of {ref}",
        "me|dims|check the exact measurements of {ref}",
        "you|dims|send me the dimensions of {ref}",
        "you|dims|give me the measurements of {ref}",
        "me|colors|see what colours {ref} comes in",
        "me|colors|get {ref} in another colour",
        "you|colors|tell me which colors {ref} is available in",
        "you|colors|list the colours for {ref}",
        "me|material|find out what {ref} is made of",
        "me|material|check what material is used in {ref}",
        "you|material|tell me what {ref} is made from",
        "you|material|confirm the material of {ref}",
    ),
    "eco_products": (
        "me|check if {ref} is eco-friendly",
        "me|find out whether {ref} uses recycled materials",
        "me|buy {ref} in plastic-free packaging",
        "me|learn how sustainable {ref} is",
        "you|tell me if {ref} is sustainable",
        "you|confirm {ref} ships plastic-free",
        "you|explain how eco-friendly {ref} is",
        "you|tell me if the packaging of {ref} is recyclable",
    ),
    "subscription": (
        "me|pause my subscription for {ref}",
        "me|skip next month on my subscription for {ref}",
        "me|stop the subscription for {ref}",
        "me|change how often my subscription for {ref} renews",
        "you|pause the subscription for {ref}",
        "you|skip the next delivery of {ref} in my subscription",
        "you|stop my subscription for {ref} from renewing",
        "you|put my subscription for {ref} on hold",
    ),
    "loyalty_points": (
        "me|get my loyalty points for {ref}",
        "me|claim the reward points from {ref}",
        "me|find out why {ref} earned no points",
        "me|check the points I got for {ref}",
        "you|add the points I'm owed for {ref}",
        "you|credit my loyalty points for {ref}",
        "you|check my rewards for {ref}",
        "you|look into the points I should have got for {ref}",
    ),
    "gift_order": (
        "me|send {ref} as a gift",
        "me|add gift wrap to {ref}",
        "me|include a gift message with {ref}",
        "me|have {ref} gift-wrapped",
        "you|gift wrap {ref}",
        "you|put a gift note in with {ref}",
        "you|wrap {ref}, it's a present",
        "you|hide the prices on {ref}, it's a gift",
    ),
    "change_address": (
        "me|change the delivery address for {ref}",
        "me|update the address on {ref}",
        "me|redirect {ref} to my new place",
        "me|get {ref} delivered to a different address",
        "you|send {ref} to a new address",
        "you|fix the address on {ref}, there's a typo in it",
        "you|reroute {ref} to my office",
        "you|change the shipping address of {ref}",
    ),
    "price_match": (
        "me|get a price match on {ref} at {amount}",
        "me|claim the difference on {ref}, it's now {amount}",
        "me|match the {amount} price I saw for {ref}",
        "me|pay {amount} for {ref} like the other shop charges",
        "you|match the {amount} price for {ref} from another store",
        "you|give me the difference, {ref} dropped to {amount}",
        "you|price match {ref}, it's {amount} elsewhere",
        "you|beat the {amount} price I found for {ref}",
    ),
    "invoice_request": (
        "me|get an invoice for {ref}",
        "me|have a VAT receipt for {ref}",
        "me|download the invoice for {ref}",
        "me|get a proper receipt for {ref} for my expenses",
        "you|send me the bill for {ref}",
        "you|email me an invoice for {ref}",
        "you|issue a VAT invoice for {ref}",
        "you|send a receipt for {ref} with my company name on it",
    ),
}


def _core_parts(core: str) -> tuple[str, str, str]:
    """A core of ``CORES`` as (person, topic, text); topic "" when untagged."""
    parts = core.split("|")
    return parts[0], parts[1] if len(parts) == 3 else "", parts[-1]


@lru_cache(maxsize=64)
def request_phrases(intent: str, topic: str = "") -> tuple[str, ...]:
    """Every request template for ``intent`` (frame x core, with {ref} and the intent's extra
    slots unfilled), for ``topic`` (cores of another topic left out; "" = every topic)."""
    if intent not in CORES:
        raise ValueError(f"unknown intent {intent!r}")
    out: list[str] = []
    for core in CORES[intent]:
        person, core_topic, text = _core_parts(core)
        if topic and core_topic and core_topic != topic:
            continue
        out.extend(frame.replace("{core}", text) for frame in (ME_FRAMES if person == "me" else YOU_FRAMES))
    return tuple(out)


def compose_request(
    intent: str, ref: str, rng: random.Random, extras: Mapping[str, str] | None = None, topic: str = ""
) -> str:
    """One request for ``intent`` about ``ref`` (e.g. "can you call off my order #A1234?"), lowercase
    first letter as the templates of ``domain``, ending in "?", "." or nothing.

    ``extras``: the slot values (a context's slots will do) with the intent's extra slots
    ({carrier}, {amount}, {promo_code}); ``topic``: the topic of a topic-tagged intent
    (product_question: "dims", "colors", "material"), "" for any.
    """
    template = rng.choice(request_phrases(intent, topic))
    return template.format(**{**(extras or {}), "ref": ref})


# ---------------------------------------------------------------------------------------------
# vary_message and its steps. Every step rewrites only the text between the kept values.
# ---------------------------------------------------------------------------------------------
_GREETING_RE = re.compile(r"(?:hi there|hello team|good morning|hello|hi|hey)\b,?\s*", re.IGNORECASE)
_SIGNOFF_RE = re.compile(r"(?:^|\s)((?:thanks|regards|cheers),?|-)\s*$", re.IGNORECASE)
_TYPO_WORD_RE = re.compile(r"(?<![\w'])[A-Za-z][a-z]{3,}(?![\w'])")
_WORD_RE = re.compile(r"[A-Za-z']+")
_PUNCT_RE = re.compile(r"[.,;:!]|(?<=[A-Za-z])'(?=[A-Za-z])")
_SHORTHAND_MAP = {phrase.replace("'", ""): subs for phrase, subs in SHORTHAND}
_SHORTHAND_RE = re.compile(
    r"(?<![\w'])(?:" + "|".join(re.escape(p).replace("'", "'?") for p, _ in SHORTHAND) + r")(?![\w'])",
    re.IGNORECASE,
)


def _segments(text: str, keep: Sequence[str]) -> list[tuple[str, bool]]:
    """``text`` cut around the kept values (longest first): (piece, is a kept value)."""
    if not keep:
        return [(text, False)]
    parts = re.split("(" + "|".join(re.escape(k) for k in keep) + ")", text)
    return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]


def map_outside(text: str, keep: Sequence[str], fn: Callable[[str], str]) -> str:
    """``fn`` applied to every piece of ``text`` outside the kept values (``keep`` longest first),
    the values left verbatim."""
    return "".join(p if kept else fn(p) for p, kept in _segments(text, keep))


def _starts_free(text: str, keep: Sequence[str]) -> bool:
    """True if ``text`` does not start with a kept value (so its first letter may change case)."""
    return not any(text.startswith(k) for k in keep)


def _split_frame(text: str, keep: Sequence[str]) -> tuple[str, str, str, str]:
    """(greeting, body, signoff, name): "Hi," / "Hey" at the start and "Thanks, <name>" /
    "- <name>" at the end (``name`` a kept value) split off the body; "" where there is none."""
    greeting, body = "", text.strip()
    m = _GREETING_RE.match(body)
    if m and _starts_free(body, keep):
        greeting, body = m.group(0).strip(), body[m.end() :]
    for name in keep:
        if body.endswith(name):
            s = _SIGNOFF_RE.search(body[: -len(name)])
            if s:
                return greeting, body[: s.start()].strip(), f"{s.group(1)} {name}", name
    return greeting, body.strip(), "", ""


def _register(greeting: str, signoff: str, name: str, u: float, rng: random.Random) -> tuple[str, str, str, bool]:
    """(opener, lead sentence, closing, casual) for register draw ``u`` (formal, casual or as written)."""
    if u < PROBABILITIES["formal"]:
        lead = rng.choice(FORMAL_LEADS) if rng.random() < 0.5 else ""
        closing = rng.choice(FORMAL_CLOSINGS)
        closing = f"{closing}, {name}" if name else (closing if rng.random() < 0.6 else "")
        return rng.choice(FORMAL_OPENERS), lead, closing, False
    if u < PROBABILITIES["formal"] + PROBABILITIES["casual"]:
        closing = signoff or (rng.choice(CASUAL_CLOSERS) if rng.random() < 0.3 else "")
        return rng.choice(CASUAL_OPENERS), "", closing, True
    return greeting, "", signoff, False


def _emphasise(body: str, keep: Sequence[str], rng: random.Random, complaint: bool) -> str:
    """The last "?" of ``body`` doubled or tripled; for a complaint, its last "." made "!!!"."""
    segs = _segments(body, keep)
    for i in range(len(segs) - 1, -1, -1):
        piece, kept = segs[i]
        marks = [] if kept else [m for m in re.finditer(r"[.?!]", piece)]
        if not marks:
            continue
        m = marks[-1]
        if m.group(0) == "?":
            new = rng.choice(("??", "???", "?!"))
        elif complaint:
            new = rng.choice(("!!!", "!!", "!!!!"))
        else:
            return body
        segs[i] = (piece[: m.start()] + new + piece[m.end() :], False)
        return "".join(p for p, _ in segs)
    return body


def _shorthand(text: str, keep: Sequence[str], rng: random.Random) -> str:
    """Phrases of ``SHORTHAND`` replaced (each with p ``SHORTHAND_RATE``), keeping a capital."""

    def sub(m: re.Match[str]) -> str:
        if rng.random() >= SHORTHAND_RATE:
            return m.group(0)
        new = rng.choice(_SHORTHAND_MAP[m.group(0).lower().replace("'", "")])
        return new[:1].upper() + new[1:] if m.group(0)[:1].isupper() and m.group(0) != "I" else new

    return map_outside(text, keep, lambda piece: _SHORTHAND_RE.sub(sub, piece))


def _typo(word: str, rng: random.Random) -> str:
    """``word`` with two adjacent letters swapped, one dropped or one doubled (never the first)."""
    i, kind = rng.randrange(1, len(word) - 1), rng.randrange(3)
    if kind == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _typos(text: str, keep: Sequence[str], rng: random.Random) -> str:
    """1 to n/``TYPO_EVERY`` typos in the n words between the kept values (words of 4+ letters)."""
    segs = _segments(text, keep)
    n_words = sum(len(_WORD_RE.findall(p)) for p, kept in segs if not kept)
    spots = [(i, m) for i, (p, kept) in enumerate(segs) if not kept for m in _TYPO_WORD_RE.finditer(p)]
    if not spots:
        return text
    n = min(len(spots), rng.randint(1, max(1, n_words // TYPO_EVERY)))
    pieces = [p for p, _ in segs]
    for i, m in sorted((spots[j] for j in rng.sample(range(len(spots)), n)), key=lambda s: -s[1].start()):
        pieces[i] = pieces[i][: m.start()] + _typo(m.group(0), rng) + pieces[i][m.end() :]
    return "".join(pieces)


def _no_punctuation(text: str, keep: Sequence[str], rng: random.Random) -> str:
    """. , ; : ! and in-word apostrophes dropped between the kept values (half the time "?" too)."""
    drop_q = rng.random() < 0.5
    return map_outside(text, keep, lambda p: _PUNCT_RE.sub("", p.replace("?", "") if drop_q else p))


def _decap(text: str, keep: Sequence[str]) -> str:
    """First letter lowercased after a casual opener ("hey where is ..."), not "I" or a kept value."""
    if _starts_free(text, keep) and not re.match(r"I\b", text):
        return text[:1].lower() + text[1:]
    return text


def _cap(text: str, keep: Sequence[str]) -> str:
    """First letter upper-cased (a new sentence), unless ``text`` starts with a kept value."""
    return text[:1].upper() + text[1:] if _starts_free(text, keep) else text


def _vary(text: str, keep: Sequence[str], rng: random.Random, intent: str | None) -> str:
    """``vary_message`` without the final check (the tests call it to see that none is needed)."""
    if intent is not None and intent not in CORES:
        raise ValueError(f"unknown intent {intent!r}")
    keep = sorted({k for k in keep if k}, key=lambda k: (-len(k), k))
    complaint = intent is None or intent in COMPLAINT_INTENTS
    u = rng.random()
    draw = {name: rng.random() < p for name, p in PROBABILITIES.items() if name not in ("formal", "casual")}
    greeting, body, signoff, name = _split_frame(text, keep)
    opener, lead, closing, casual = _register(greeting, signoff, name, u, rng)
    if draw["emphasis"]:
        body = _emphasise(body, keep, rng, complaint)
    fillers = FILLERS + (COMPLAINT_FILLERS if intent in COMPLAINT_INTENTS else ())
    before = rng.choice(fillers) if draw["filler_before"] else ""
    second = rng.choice(SECOND_REQUESTS) if draw["second_request"] else ""
    after = rng.choice(fillers) if draw["filler_after"] else ""
    if lead or before:
        body = _cap(body, keep)
    elif casual:
        body = _decap(body, keep)
    out = " ".join(p for p in (opener, lead, before, body, second, after, closing) if p)
    if draw["shorthand"]:
        out = _shorthand(out, keep, rng)
    if draw["typos"]:
        out = _typos(out, keep, rng)
    if draw["lowercase"]:
        out = map_outside(out, keep, str.lower)
    if draw["no_punctuation"]:
        out = _no_punctuation(out, keep, rng)
    return map_outside(out, keep, lambda p: re.sub(r"\s+", " ", p)).strip()


def vary_message(text: str, keep: Sequence[str], rng: random.Random, intent: str | None = None) -> str:
    """``text`` (a customer message) rewritten as people write: changes drawn as in the module
    docstring's table, every string of ``keep`` (the slot values) left verbatim.

    ``intent``: the message's intent (a name of ``domain.INTENTS``), or None; a complaint intent
    (or None) may get "!!!" and complaint fillers. If a kept value were ever lost, the message is
    returned unchanged (the tests check that this never happens).
    """
    out = _vary(text, keep, rng, intent)
    return out if all(k in out for k in keep if k and k in text) else text
