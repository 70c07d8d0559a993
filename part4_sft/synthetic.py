"""Synthetic SFT data for retail customer support, labelled by a text rubric.

The retail world (intents, phrase tables, the train / held-out template partition, contexts and
good replies) is ``part3_pretrain.domain``, shared with the pretraining corpus; this module is
what makes it an SFT dataset. A context is a customer message ("hi my order #A1234 arrived
damaged ...") or a scenario line ("Customer Leila wants to return the Cedar Rain Jacket bought
on March 3") for one of ``INTENTS``, written in every register (``part3_pretrain.variety``), with
slot values from ``part3_pretrain.slots`` (train side) or, for ``OPEN_VALUES_SHARE`` of the pairs,
the open-ended pools of ``part3_pretrain.open_values`` (values in open formats). Each response is
written by ``part3_pretrain.agents`` with independently varying traits (``agents.TRAITS``):
acknowledgement, the customer's name, specifics restated (all / some / none), on- or off-intent,
next step, polite close, tone, length (curt one-liner), boilerplate lines, truncation and
repetition, each sampled on its own; the pretraining corpus writes its agents the same way.

The quality label never comes from the generator: nothing tells ``rate_response`` what was drawn.
It reads the response text and scores it, and ``generate_pairs`` marks the ``n_high_quality``
best-rated pairs as high quality (ties in a seeded random order); ``filter_report`` shows the
rating histogram and how many reach ``HIGH_QUALITY_THRESHOLD``.

``generate_eval_set`` builds held-out evaluation contexts with two independently phrased
high-quality references each: "val" from train slot values but never an exact training context,
"test" from held-out slot values, "test_unseen" from held-out slot values AND held-out phrasing
templates (``domain.phrasing``; ``domain.template_leaks`` finds held-out phrasing in any text). Training
pairs, "val" and "test" only use the train side of the templates. Everything is a pure function of
the seed: only private ``random.Random`` instances, no global RNG, no dependence on hash order.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache

from part3_pretrain.agents import draw_traits, reply_with_traits
from part3_pretrain.domain import (
    INTENTS,
    KEYWORD_RES,
    SPECIFIC_SLOTS,
    Context,
    Phrasing,
    addresses_intent,
    good_reply,
    make_context,
    mentions,
    phrasing,
    sentences,
)
from part3_pretrain.open_values import open_pools
from part3_pretrain.slots import SlotPools, split_pools

from .contexts import context_key

HIGH_QUALITY_THRESHOLD = 4.0
# Contexts of the 5,000 pairs whose values come from the open-ended pools (open formats), so SFT
# practises restating values of every shape, not only the train pools' "A1234" and "March 3".
OPEN_VALUES_SHARE = 0.5
EVAL_SPLITS = ("val", "test", "test_unseen")

# ---------------------------------------------------------------------------------------------
# The rubric.
# ---------------------------------------------------------------------------------------------
RUBRIC_RULES: tuple[str, ...] = (
    "no_acknowledgement",
    "no_name",
    "off_intent",
    "ignores_specifics",
    "no_next_step",
    "no_polite_close",
    "rude",
    "curt",
    "truncated",
    "repetitive",
    "generic",
)
# Penalties subtracted from 5.0. Any single "real" flaw drops a perfect reply below 4.0; the
# mild ones (no_acknowledgement, no_name, no_polite_close, and generic for stock lines padding an
# otherwise specific reply) only do so in combination.
_PENALTY = {
    "no_acknowledgement": 0.7,
    "no_name": 0.4,
    "off_intent": 2.0,
    "ignores_specifics": 1.2,
    "no_next_step": 1.2,
    "no_polite_close": 0.6,
    "rude": 2.5,
    "curt": 1.5,
    "truncated": 1.5,
    "repetitive": 1.5,
    "generic": 0.8,
}
_MISSING_SPECIFICS_EXTRA = 0.6  # scaled by the fraction of specifics missing
_MIN_WORDS = 16

_ACK_RE = re.compile(r"\b(?:sorry|apolog\w*|thanks?|thank you|appreciate\w*|i understand)\b", re.I)
_CLOSE_RE = re.compile(
    r"let (?:me|us) know|anything else|have a (?:great|good|lovely|nice|wonderful) \w+"
    r"|thanks? (?:you )?(?:so much |again )?for (?:your patience|shopping|being|choosing|your understanding)"
    r"|take care|we're here (?:if|to help|for you)|happy to help|glad to help|enjoy|kind regards"
    r"|best regards|don't hesitate",
    re.I,
)
_ACTION_VERBS = (
    "started|issued|sent|send|emailed|email|arranged|arrange|flagged|opened|open|escalated|escalate"
    "|updated|update|applied|apply|added|add|reset|cancell?ed|cancel|processed|process|requested"
    "|request|booked|book|reserved|reserve|created|create|credited|credit|refunded|refund|submitted"
    "|submit|filed|file|forwarded|forward|scheduled|schedule|switched|switch|generated|generate"
    "|attached|attach|reactivated|reactivate|paused|pause|reissued|reissue|voided|void|unlocked"
    "|unlock|adjusted|adjust|placed|place|restored|restore|shipped|ship|included|include|set up"
    "|raised|raise|logged|log|initiated|initiate|contacted|contact|asked|ask|skipped|skip|put"
    "|chase|chased|hold|held|arrange|refund"
)
_NEXT_RES = tuple(
    re.compile(p, re.I)
    for p in (
        rf"\b(?:i've|i have|i'll|i will|we've|we have|we'll|we will)\s+(?:\w+\s+){{0,2}}?(?:{_ACTION_VERBS})\b",
        r"\bplease\s+(?:\w+\s+)?(?:reply|send|check|click|use|try|visit|log|confirm|share|upload|keep"
        r"|return|drop|attach|select|enter|pack|print|follow|choose|sign|open|pick|allow)\b",
        r"\byou(?:'ll| will)\s+(?:\w+\s+)?(?:receive|get|see|be able)\b",
        r"\byou can\s+(?:now\s+|also\s+|still\s+)?(?:track|use|return|exchange|log|reset|choose|drop"
        r"|print|find|check|see|pick|apply|start|manage|update|cancel|claim|redeem|reply|download|resume)\b",
        r"\bwithin \d+\s+(?:business |working )?(?:days|hours)\b",
        r"\b(?:prepaid|return) (?:shipping )?label\b",
    )
)
_RUDE_RE = re.compile(
    r"\b(?:stupid|idiot\w*|dumb|ridiculous|whatever|calm down|deal with it|not our (?:fault|problem)"
    r"|your (?:own )?(?:fault|problem)|should have read|stop complaining|obviously|(?:we|i) don't care"
    r"|nobody cares|shut up|figure it out yourself|read the (?:description|instructions|policy)"
    r"|nonsense|pathetic|useless|not my job|tough luck|too bad|bother us)\b",
    re.I,
)
_BOILERPLATE_RE = re.compile(
    r"we value your|satisfaction is our|looking into (?:your|this|it)|get back to you"
    r"|any inconvenience|has been noted|committed to providing|top priority|contacting customer support",
    re.I,
)
_WORD_RE = re.compile(r"[a-z0-9#$'-]+")


def _is_repetitive(text: str) -> bool:
    """A repeated sentence, a 5-gram used twice, or a word/phrase looped back to back."""
    norm = [re.sub(r"[^a-z0-9# ]", "", s.lower()).strip() for s in sentences(text)]
    if len(norm) != len(set(norm)):
        return True
    words = _WORD_RE.findall(text.lower())
    grams = Counter(tuple(words[i : i + 5]) for i in range(len(words) - 4))
    if grams and max(grams.values()) >= 2:
        return True
    return any(_has_loop(_WORD_RE.findall(s.lower())) for s in sentences(text))


def _has_loop(words: list[str]) -> bool:
    """A word said three times in a row, or a 2-3 word phrase said twice in a row, in one sentence."""
    for i in range(len(words) - 2):
        if words[i] == words[i + 1] == words[i + 2]:
            return True
    for n in (2, 3):
        for i in range(len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n]:
                return True
    return False


def _check_example(example: Mapping) -> tuple[str, str, Mapping]:
    if not isinstance(example, Mapping):
        raise ValueError(f"example must be a mapping, got {type(example).__name__}")
    missing = [k for k in ("response", "intent", "slots") if k not in example]
    if missing:
        raise ValueError(f"example is missing keys {missing}")
    response, intent, slots = example["response"], example["intent"], example["slots"]
    if not isinstance(response, str):
        raise ValueError("example['response'] must be a string")
    if intent not in KEYWORD_RES:
        raise ValueError(f"unknown intent {intent!r}; expected one of INTENTS")
    if not isinstance(slots, Mapping):
        raise ValueError("example['slots'] must be a mapping of slot -> value")
    return response, intent, slots


def _rule_hits(response: str, intent: str, slots: Mapping) -> dict[str, float]:
    """Every rubric rule that fires on ``response``, with its penalty."""
    hits: dict[str, float] = {}
    sents = sentences(response) or [""]
    name = slots.get("customer")
    if not (_ACK_RE.search(sents[0]) or (name and mentions(response, name))):
        hits["no_acknowledgement"] = _PENALTY["no_acknowledgement"]
    if name and not mentions(response, name):
        hits["no_name"] = _PENALTY["no_name"]
    on_intent = addresses_intent(response, intent, slots)
    if not on_intent:
        hits["off_intent"] = _PENALTY["off_intent"]
    specifics = [str(slots[s]) for s in SPECIFIC_SLOTS if slots.get(s)]
    missing = [v for v in specifics if not mentions(response, v)]
    if missing:
        frac = len(missing) / len(specifics)
        hits["ignores_specifics"] = _PENALTY["ignores_specifics"] + _MISSING_SPECIFICS_EXTRA * frac
    if not any(p.search(response) for p in _NEXT_RES):
        hits["no_next_step"] = _PENALTY["no_next_step"]
    if not _CLOSE_RE.search(sents[-1]):
        hits["no_polite_close"] = _PENALTY["no_polite_close"]
    if _RUDE_RE.search(response):
        hits["rude"] = _PENALTY["rude"]
    if len(response.split()) < _MIN_WORDS:
        hits["curt"] = _PENALTY["curt"]
    if not re.search(r"[.!?][\"')\]]*\s*$", response):
        hits["truncated"] = _PENALTY["truncated"]
    if _is_repetitive(response):
        hits["repetitive"] = _PENALTY["repetitive"]
    # Generic: stock support lines anywhere (they pad even a specific reply), or a reply that
    # neither restates a specific nor addresses the intent.
    no_specifics = bool(specifics) and len(missing) == len(specifics)
    if _BOILERPLATE_RE.search(response) or (no_specifics and not on_intent):
        hits["generic"] = _PENALTY["generic"]
    return hits


def rate_response(example: Mapping) -> tuple[float, list[str]]:
    """Rate a support reply from its text: ``(rating in [1, 5] rounded to 0.1, rules that lowered it)``.

    ``example`` needs "response", "intent" (one of INTENTS) and "slots" (slot -> value mentioned in
    the context; "customer" is the name). A reply that acknowledges the customer, addresses the
    intent, restates every order id / product / date / amount / carrier / promo code, gives a concrete
    next step and closes politely scores 5.0; each rule in RUBRIC_RULES that fires subtracts a penalty.
    """
    response, intent, slots = _check_example(example)
    hits = _rule_hits(response, intent, slots)
    rating = round(min(5.0, max(1.0, 5.0 - sum(hits.values()))), 1)
    return rating, [rule for rule in RUBRIC_RULES if rule in hits]


# ---------------------------------------------------------------------------------------------
# Public generators.
# ---------------------------------------------------------------------------------------------
def _select(pairs: Sequence[Mapping], n_high_quality: int, seed: object) -> list[int]:
    """1 for the ``n_high_quality`` best-rated pairs, else 0, in the order of ``pairs``.

    Reads nothing but "rating": ties are broken by a random key per position from
    ``random.Random(f"select-{seed}")``, so the choice is a pure function of the ratings and the seed.
    """
    tie = random.Random(f"select-{seed}")
    keys = [tie.random() for _ in pairs]
    order = sorted(range(len(pairs)), key=lambda i: (-pairs[i]["rating"], keys[i]))
    chosen = set(order[:n_high_quality])
    return [int(i in chosen) for i in range(len(pairs))]


def generate_pairs(n: int = 5000, n_high_quality: int = 500, seed: int = 0) -> list[dict]:
    """``n`` (context, response) pairs from train-side templates, all rated; a share
    (``OPEN_VALUES_SHARE``) of the contexts take their values from the open-ended pools
    (``open_values``: ids, dates, amounts, codes and names in open formats, products with
    open nouns), the rest from the train slot values. Neither holds a held-out value.

    Each context (intents in turn, then shuffled) gets one reply whose traits (``agents.TRAITS``) are
    drawn independently; ``rate_response`` rates it, and the ``n_high_quality`` best-rated pairs
    get ``high_quality = 1`` (ties in a seeded random order; ratings below ``HIGH_QUALITY_THRESHOLD``
    are kept too if fewer than ``n_high_quality`` reach it). ``traits`` records the draw, for
    analysis only: selection reads the ratings alone. Contexts are all distinct, even ignoring case,
    punctuation and whitespace.
    """
    if n < 1 or not 0 <= n_high_quality <= n:
        raise ValueError(f"need n >= 1 and 0 <= n_high_quality <= n, got n={n}, n_high_quality={n_high_quality}")
    rng = random.Random(seed)
    ph, train, open_ = phrasing("train"), split_pools("train"), open_pools()
    drawn: list[dict] = []
    seen: set[str] = set()
    for _ in range(50 * n + 1000):
        if len(drawn) == n:
            break
        values = open_ if rng.random() < OPEN_VALUES_SHARE else train
        ctx = make_context(INTENTS[len(drawn) % len(INTENTS)], values, rng, ph)
        key = context_key(ctx.text)
        if key in seen:
            continue
        seen.add(key)
        traits = draw_traits(rng, "customer" in ctx.slots)
        example = {
            "context": ctx.text,
            "response": reply_with_traits(ctx, traits, values, rng, ph),
            "intent": ctx.intent,
            "slots": dict(ctx.slots),
        }
        rating, rules = rate_response(example)
        drawn.append({**example, "rating": rating, "rules": rules, "traits": traits})
    if len(drawn) < n:
        raise RuntimeError(f"could only draw {len(drawn)} distinct contexts out of {n}")
    rng.shuffle(drawn)
    flags = _select(drawn, n_high_quality, seed)
    return [
        {"id": i, **{k: v for k, v in p.items() if k != "traits"}, "high_quality": hq, "traits": p["traits"]}
        for i, (p, hq) in enumerate(zip(drawn, flags, strict=False))
    ]


@lru_cache(maxsize=1)
def _default_training_contexts() -> frozenset[str]:
    return frozenset(context_key(p["context"]) for p in generate_pairs())


def _reference(ctx: Context, values: SlotPools, rng: random.Random, avoid: str = "", ph: Phrasing | None = None) -> str:
    """A good reply that the rubric rates >= 4.0 (and differs from ``avoid`` if possible)."""
    best = ""
    for _ in range(50):
        text = good_reply(ctx, values, rng, ph)
        ok = rate_response({"response": text, "intent": ctx.intent, "slots": ctx.slots})[0] >= HIGH_QUALITY_THRESHOLD
        if ok and text != avoid:
            return text
        if ok and not best:
            best = text
    if not best:
        raise RuntimeError(f"no high-quality reference for context {ctx.text!r}")
    return best


def generate_eval_set(split: str, n: int, seed: int, exclude_contexts: Collection[str] | None = None) -> list[dict]:
    """``n`` evaluation rows with two independently phrased high-quality references each.

    "test" uses held-out slot values only, so no context can occur in training data.
    "test_unseen" uses held-out slot values AND held-out templates (``domain.template_leaks``): its
    contexts and both references are phrased in ways no training pair uses (lists with nothing
    held out, see ``domain._template_partition_counts``, are shared). "val" uses train values from a
    separate RNG stream, and additionally skips any context that matches one in
    ``exclude_contexts`` ignoring case, punctuation and whitespace (default: the contexts of
    ``generate_pairs()`` with default arguments, regenerated once per process), so a val context
    is never a training context. "val" and "test" use train-side templates. Contexts within the
    set are distinct in the same sense. ``reference`` and ``reference_2`` come from two separate
    RNG streams (redrawn if identical).
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    values = split_pools("train" if split == "val" else "heldout")
    ph = phrasing("heldout" if split == "test_unseen" else "train")
    exclude = (
        frozenset(map(context_key, exclude_contexts))
        if exclude_contexts is not None
        else (_default_training_contexts() if split == "val" else frozenset())
    )
    rng = random.Random(f"eval-{split}-{seed}")
    rng_ref2 = random.Random(f"eval-{split}-{seed}-reference-2")
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n:
        ctx = make_context(INTENTS[len(rows) % len(INTENTS)], values, rng, ph)
        key = context_key(ctx.text)
        if key in exclude or key in seen:
            continue
        seen.add(key)
        ref = _reference(ctx, values, rng, ph=ph)
        rows.append(
            {
                "id": len(rows),
                "context": ctx.text,
                "intent": ctx.intent,
                "slots": dict(ctx.slots),
                "reference": ref,
                "reference_2": _reference(ctx, values, rng_ref2, avoid=ref, ph=ph),
            }
        )
    return rows


def filter_report(pairs: Sequence[Mapping]) -> dict:
    """Counts for a list of pairs: kept vs rejected, rules among the rejected, intents among the kept,
    the rating histogram (ratings rounded to 0.5), the lowest kept rating and how many reach 4.0."""
    required = ("context", "intent", "high_quality", "rules", "rating")
    for p in pairs:
        if not isinstance(p, Mapping) or any(k not in p for k in required):
            raise ValueError("each pair needs 'context', 'intent', 'high_quality', 'rules' and 'rating'")
        if p["high_quality"] not in (0, 1):
            raise ValueError(f"high_quality must be 0 or 1, got {p['high_quality']!r}")
    kept = [p for p in pairs if p["high_quality"] == 1]
    rejected = [p for p in pairs if p["high_quality"] == 0]
    rule_counts = Counter(r for p in rejected for r in p["rules"])
    intent_counts = Counter(p["intent"] for p in kept)
    histogram = Counter(round(float(p["rating"]) * 2) / 2 for p in pairs)
    return {
        "total": len(pairs),
        "high_quality": len(kept),
        "low_quality": len(rejected),
        "distinct_contexts": len({p["context"] for p in pairs}),
        "rejected_rules": {r: rule_counts[r] for r in RUBRIC_RULES},
        "kept_intents": {i: intent_counts[i] for i in INTENTS},
        "rejected_intents": dict(sorted(Counter(p["intent"] for p in rejected).items())),
        "rating_histogram": {f"{v:.1f}": histogram[v] for v in sorted(histogram)},
        "kept_min_rating": min((p["rating"] for p in kept), default=None),
        "rated_at_least_4": sum(p["rating"] >= HIGH_QUALITY_THRESHOLD for p in pairs),
    }
