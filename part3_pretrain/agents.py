"""Agents of every quality: reply traits drawn independently, applied to the good-reply parts.

A real support inbox holds replies good and bad: some acknowledge the customer and some do not,
some restate the order and some say "your order", some answer another question, some are rude,
curt, padded with boilerplate, cut off or looping. ``TRAITS`` lists these traits with their
probabilities; ``draw_traits`` draws each on its own and ``reply_with_traits`` degrades
``domain.good_parts`` accordingly (with ``GOOD_TRAITS`` it is ``domain.good_reply``).

Both parts of the project write with it: part 4's generator (``part4_sft.synthetic``) draws the
5,000 SFT pairs this way and rates them with its rubric, and the pretraining corpus writes its
exchanges with ``agent_documents``, traits drawn independently of the pairs, so the base learns
support text as it is written (agents of every quality), not the best replies only: what SFT on
the best-rated pairs then teaches is the choice among them. No quality label reaches the text.

Imports only the standard library and part 3 (never part 4).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from itertools import combinations

from part3_pretrain.domain import (
    BOILERPLATE,
    CURT,
    GENERIC_REFS,
    INTENTS,
    RUDE_CLOSES,
    RUDE_OPENERS,
    SPECIFIC_SLOTS,
    Context,
    Intent,
    Parts,
    Phrasing,
    addresses_intent,
    assemble,
    cap,
    good_parts,
    make_context,
    phrasing,
    ref_phrase,
    sentences,
)
from part3_pretrain.open_values import open_pools
from part3_pretrain.slots import SlotPools

# trait -> ((value, probability), ...); the first value is the one a careful agent would pick.
# Each trait is sampled independently; the rubric alone decides what the combination is worth.
# With these, part 4's generate_pairs() (seed 0) rates 1,223 of 5,000 pairs >= 4.0 (590 at 5.0) and spreads
# the rest over every half point down to 1.0 (filter_report's "rating_histogram").
TRAITS: dict[str, tuple[tuple[object, float], ...]] = {
    "acknowledgement": ((True, 0.7), (False, 0.3)),
    "name": ((True, 0.7), (False, 0.3)),  # None where the context has no name
    "specifics": (("all", 0.65), ("some", 0.2), ("none", 0.15)),
    "intent": (("own", 0.88), ("other", 0.12)),
    "next_step": ((True, 0.8), (False, 0.2)),
    "close": ((True, 0.7), (False, 0.3)),
    "tone": (("polite", 0.88), ("rude", 0.12)),
    "length": (("normal", 0.94), ("curt", 0.06)),
    "boilerplate": ((False, 0.8), (True, 0.2)),
    "truncated": ((False, 0.9), (True, 0.1)),
    "repetition": ((False, 0.9), (True, 0.1)),
}
GOOD_TRAITS: dict[str, object] = {trait: options[0][0] for trait, options in TRAITS.items()}


def draw_traits(rng: random.Random, has_name: bool) -> dict[str, object]:
    """One value per trait, each from its own draw."""
    traits: dict[str, object] = {}
    for trait, options in TRAITS.items():
        r, total = rng.random(), 0.0
        for value, p in options:  # noqa: B007 (the value drawn is used after the loop)
            total += p
            if r < total:
                break
        traits[trait] = value
    if not has_name:
        traits["name"] = None
    return traits


def _kept_specifics(ctx: Context, level: object, rng: random.Random) -> frozenset[str]:
    """The specific slots a reply restates: all, none, or a random proper non-empty subset.

    "some" keeps a date only with an order id or product to hang it on; with a single specific
    in the context there is no proper subset and "some" restates none.
    """
    present = [s for s in SPECIFIC_SLOTS if ctx.slots.get(s)]
    if level == "all":
        return frozenset(present)
    options = (
        [
            c
            for k in range(1, len(present))
            for c in combinations(present, k)
            if "date" not in c or {"order_id", "product"} & set(c)
        ]
        if level == "some"
        else []
    )
    return frozenset(rng.choice(options)) if options else frozenset()


def _specific_ref(ctx: Context, keep: frozenset[str], spec: Intent, rng: random.Random, ph: Phrasing) -> str:
    """The agent's ref phrase restating only the kept order id / product / date (else generic)."""
    slots = {s: ctx.slots[s] for s in ("order_id", "product", "date") if s in keep}
    if "order_id" not in slots and "product" not in slots:
        return rng.choice(GENERIC_REFS)
    return ref_phrase(slots, "agent", rng, spec.product_head, ph)


def _other_intent_parts(
    ctx: Context,
    values: SlotPools,
    rng: random.Random,
    ph: Phrasing,
    keep: frozenset[str],
    full: bool,
    name: str | None,
) -> Parts:
    """A reply written for another intent; redrawn until it really misses this intent's keywords."""
    parts = None
    for _ in range(20):
        other = rng.choice([i for i in INTENTS if i != ctx.intent])
        ref = None if full else _specific_ref(ctx, keep, ph.specs[other], rng, ph)
        drop = [s for s in SPECIFIC_SLOTS if s in ctx.slots and s not in keep]
        parts = good_parts(ctx, values, rng, intent=other, ref=ref, ph=ph, name=name, drop=drop)
        text = " ".join(p for p in (parts.ack, parts.body, parts.next, parts.close) if p)
        if not addresses_intent(text, ctx.intent, ctx.slots):
            break
    return parts


def _truncate(text: str, rng: random.Random) -> str:
    """The reply cut off mid-sentence, as a generation that hit its length limit."""
    words = text.split()
    cut = rng.randrange(max(3, int(0.4 * len(words))), max(4, int(0.85 * len(words))))
    return " ".join(words[:cut]).rstrip(".,;:!?- ")


def _repeat(text: str, rng: random.Random) -> str:
    """The reply with a sentence or a phrase looped, as a degenerate generation."""
    sents = sentences(text)
    style = rng.randrange(3) if len(sents[-1].split()) >= 2 else rng.randrange(2)
    if style == 0:
        i = rng.randrange(len(sents))
        sents.insert(i + 1, sents[i])
    elif style == 1:
        sents += [sents[-1]] * rng.randint(1, 3)
    else:
        words = sents[-1].split()
        k = rng.randint(2, min(4, len(words)))
        loop = " ".join(words[-k:]).rstrip(".!?")
        sents[-1] = " ".join(words[:-k] + [loop] * rng.randint(3, 4)) + "."
    return " ".join(sents)


def _add_boilerplate(text: str, rng: random.Random) -> str:
    """One or two generic support lines inserted anywhere in the reply."""
    sents = sentences(text)
    for line in rng.sample(BOILERPLATE, rng.randint(1, 2)):
        sents.insert(rng.randint(0, len(sents)), line)
    return " ".join(sents)


def reply_with_traits(
    ctx: Context, traits: Mapping[str, object], values: SlotPools, rng: random.Random, ph: Phrasing | None = None
) -> str:
    """A reply to ``ctx`` with the given traits (see ``TRAITS``), from ``ph`` templates and the
    slot pools ``values`` of the context. With ``GOOD_TRAITS`` it is ``domain.good_reply``.

    A curt reply is a one-liner: acknowledgement, name, next step, close and boilerplate do not
    apply to it, a rude tone prefixes it. A rude tone otherwise replaces the acknowledgement (or
    the close) with a rude line. Repetition, then truncation, apply last, to the whole text.
    """
    ph = ph or phrasing("train")
    name = ctx.slots.get("customer") if traits["name"] else None
    keep = _kept_specifics(ctx, traits["specifics"], rng)
    full = keep == frozenset(s for s in SPECIFIC_SLOTS if ctx.slots.get(s))
    rude = traits["tone"] == "rude"
    if traits["length"] == "curt":
        spec = ph.specs[ctx.intent]
        ref = (
            ref_phrase(ctx.slots, "agent", rng, spec.product_head, ph)
            if full
            else _specific_ref(ctx, keep, spec, rng, ph)
        )
        text = cap(rng.choice(CURT).format(ref=ref))
        if rude:
            text = f"{cap(rng.choice(RUDE_OPENERS))}. {text}"
    else:
        if traits["intent"] == "own":
            ref = None if full else _specific_ref(ctx, keep, ph.specs[ctx.intent], rng, ph)
            drop = [s for s in SPECIFIC_SLOTS if s in ctx.slots and s not in keep]
            parts = good_parts(ctx, values, rng, ref=ref, ph=ph, name=name, drop=drop)
        else:
            parts = _other_intent_parts(ctx, values, rng, ph, keep, full, name)
        if not traits["acknowledgement"]:
            parts.ack, parts.greeting = None, (f"Hi {name}" if name else None)
        if not traits["next_step"]:
            parts.next = None
        if not traits["close"]:
            parts.close = None
        if rude and rng.random() < 0.6:
            parts.ack = rng.choice(RUDE_OPENERS)
        elif rude:
            parts.close = rng.choice(RUDE_CLOSES)
        text = assemble(parts, rng)
        if traits["boilerplate"]:
            text = _add_boilerplate(text, rng)
    if traits["repetition"]:
        text = _repeat(text, rng)
    if traits["truncated"]:
        text = _truncate(text, rng)
    return text


def agent_documents(n: int, seed: int = 0, values: SlotPools | None = None, careful: bool = False) -> list[str]:
    """``n`` documents "Customer: <message>\nAgent: <reply>", intents in turn, each reply written
    with traits drawn by ``draw_traits`` (agents of every quality, as in a real inbox); with
    ``careful``, every reply is ``domain.good_reply`` (the corpus before agents of every quality,
    kept for the ablation).

    Train-side templates only (never held-out phrasing) and slot values from ``values`` (default:
    ``open_pools()``, open-ended names, brands, order ids, amounts and promo codes that no model
    can memorise and that are never a held-out value), so a model trained on them must read the
    message to restate its specifics. A pure function of (n, seed, values).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    values = values if values is not None else open_pools()
    ph = phrasing("train")
    rng = random.Random(f"dialogue-{seed}")
    docs = []
    for i in range(n):
        ctx = make_context(INTENTS[i % len(INTENTS)], values, rng, ph)
        traits = GOOD_TRAITS if careful else draw_traits(rng, "customer" in ctx.slots)
        docs.append(f"Customer: {ctx.text}\nAgent: {reply_with_traits(ctx, traits, values, rng, ph)}")
    return docs
