"""Tests for part4_sft.synthetic: the rubric on hand-written replies, trait draws, top-rated
selection, determinism, splits, and the held-out phrasing of "test_unseen". The retail world it
writes with (intents, template partition, contexts, good replies) is tested in test_domain.py."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
from collections import Counter

import pytest

from part3_pretrain import agents, domain
from part3_pretrain.domain import template_leaks
from part3_pretrain.open_values import open_pools
from part3_pretrain.slots import find_heldout_leaks, slot_values, split_pools
from part4_sft import synthetic as syn
from part4_sft.contexts import context_key


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return syn.generate_pairs()


@pytest.fixture(scope="module")
def test_set() -> list[dict]:
    return syn.generate_eval_set("test", 200, seed=0)


@pytest.fixture(scope="module")
def val_set(pairs: list[dict]) -> list[dict]:
    return syn.generate_eval_set("val", 200, seed=0, exclude_contexts={p["context"] for p in pairs})


@pytest.fixture(scope="module")
def unseen_set() -> list[dict]:
    return syn.generate_eval_set("test_unseen", 200, seed=0)


# ----------------------------------------------------------------------------- the rubric
SLOTS = {"customer": "Leila", "order_id": "A1234", "product": "Cedar Rain Jacket"}
GOOD = (
    "I'm so sorry about the damage, Leila. Your Cedar Rain Jacket from order #A1234 arrived "
    "damaged, so I've sent a free replacement that ships today. Have a great day!"
)


def _rate(response: str, intent: str = "damaged_item", slots: dict | None = None) -> tuple[float, list[str]]:
    return syn.rate_response(
        {"context": "", "response": response, "intent": intent, "slots": SLOTS if slots is None else slots}
    )


def test_good_response_scores_high() -> None:
    assert _rate(GOOD) == (5.0, [])


@pytest.mark.parametrize(
    "response, rule",
    [
        (
            "Calm down, Leila. Your Cedar Rain Jacket from order #A1234 arrived damaged, so I've sent a "
            "free replacement that ships today. Have a great day!",
            "rude",
        ),
        (
            "I'm so sorry about the damage, Leila. Your Cedar Rain Jacket from order #A1234 arrived "
            "damaged, so I've sent a free replacement that",
            "truncated",
        ),
        (
            "I'm so sorry about the damage, Leila. Your Cedar Rain Jacket arrived damaged, so I've sent a "
            "free replacement that ships today. Have a great day!",
            "ignores_specifics",
        ),
        (
            "Thanks for reaching out, Leila. Your Cedar Rain Jacket from order #A1234 is in transit, and "
            "I've emailed you the tracking link. Have a great day!",
            "off_intent",
        ),
        (
            "I'm so sorry about the damage, Leila. Your Cedar Rain Jacket from order #A1234 arrived "
            "damaged and we know that is frustrating. Have a great day!",
            "no_next_step",
        ),
        ("Sorry Leila, order #A1234 damaged, replacement sent.", "curt"),
        (GOOD + " Have a great day! Have a great day!", "repetitive"),
        (
            "Thank you for contacting customer support. We value your business. Our team will get back "
            "to you as soon as possible. Have a great day!",
            "generic",
        ),
    ],
)
def test_flawed_responses_score_low_with_the_rule(response: str, rule: str) -> None:
    rating, rules = _rate(response)
    assert rating < syn.HIGH_QUALITY_THRESHOLD
    assert rule in rules


def test_mild_omissions_lower_but_do_not_reject() -> None:
    no_close = GOOD.replace(" Have a great day!", "")
    assert _rate(no_close) == (4.4, ["no_polite_close"])
    rating, rules = _rate(GOOD.replace(", Leila", ""))
    assert rules == ["no_name"] and 4.0 <= rating < 5.0


def test_boilerplate_padding_a_specific_reply_is_generic() -> None:
    padded = GOOD.replace(" Have a great day!", " We value your business. Have a great day!")
    assert _rate(padded) == (4.2, ["generic"])
    padded = "Thank you for contacting customer support. " + GOOD
    assert _rate(padded) == (4.2, ["generic"])


def test_product_name_does_not_count_as_intent_keyword() -> None:
    slots = {"product": "Juniper Organic Cotton Tote"}
    reply = (
        "Thanks for asking! The Juniper Organic Cotton Tote ships today, and I've emailed you "
        "the tracking link. Have a great day!"
    )
    assert "off_intent" in _rate(reply, "eco_products", slots)[1]


def test_rate_response_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        syn.rate_response({"response": "hi", "intent": "no_such_intent", "slots": {}})
    with pytest.raises(ValueError):
        syn.rate_response({"response": "hi", "intent": "order_status"})


def test_rubric_recognises_every_template_on_both_sides() -> None:
    # The held-out acknowledgements, next steps and closes must be as recognisable as the train ones.
    for spec in domain.INTENT_SPECS:
        for step in spec.next:
            assert any(p.search(step) for p in syn._NEXT_RES), step
    for close in domain._CLOSES:
        assert syn._CLOSE_RE.search(close), close
    for ack in domain._ACKS_APOLOGY + domain._ACKS_NOTICE + domain._ACKS_THANKS:
        assert syn._ACK_RE.search(ack), ack


# ----------------------------------------------------------------------------- traits
REAL_FLAWS = {
    "specifics": ("some", "none"),
    "intent": ("other",),
    "next_step": (False,),
    "tone": ("rude",),
    "length": ("curt",),
    "truncated": (True,),
    "repetition": (True,),
}
MILD_FLAWS = {"acknowledgement": (False,), "name": (False,), "close": (False,)}


@pytest.mark.parametrize("side", domain.TEMPLATE_SIDES)
def test_single_traits_and_the_rubric_agree(side: str) -> None:
    # Nothing passes the traits to the rubric, but it should read each one off the text.
    rng = random.Random(123)
    ph = domain.phrasing(side)
    pools = split_pools("train" if side == "train" else "heldout")
    for i in range(150):
        ctx = domain.make_context(syn.INTENTS[i % len(syn.INTENTS)], pools, rng, ph)
        example = {"intent": ctx.intent, "slots": ctx.slots}

        def rate(trait: str | None = None, value: object = None, example=example, ctx=ctx) -> tuple[float, list[str]]:
            traits = {**agents.GOOD_TRAITS, **({trait: value} if trait else {})}
            return syn.rate_response({**example, "response": agents.reply_with_traits(ctx, traits, pools, rng, ph)})

        assert rate() == (5.0, [])
        for trait, values in REAL_FLAWS.items():
            for value in values:
                assert rate(trait, value)[0] < 4.0, (trait, value)
        for trait, values in MILD_FLAWS.items():
            for value in values:
                assert rate(trait, value)[0] >= 4.0, (trait, value)
        assert "generic" in rate("boilerplate", True)[1]


@pytest.mark.parametrize("side", domain.TEMPLATE_SIDES)
def test_good_traits_write_the_domains_good_reply(side: str) -> None:
    # A reply with every careful trait is domain.good_reply, draw for draw.
    ph, values = domain.phrasing(side), split_pools("train" if side == "train" else "heldout")
    rng = random.Random(5)
    for i in range(100):
        ctx = domain.make_context(syn.INTENTS[i % len(syn.INTENTS)], values, rng, ph)
        a, b = random.Random(i), random.Random(i)
        assert agents.reply_with_traits(ctx, agents.GOOD_TRAITS, values, a, ph) == domain.good_reply(ctx, values, b, ph)
        assert a.random() == b.random()


def test_traits_vary_independently(pairs: list[dict]) -> None:
    traits = [p["traits"] for p in pairs]
    assert all(set(t) == set(agents.TRAITS) for t in traits)
    for trait, options in agents.TRAITS.items():
        seen = Counter(t[trait] for t in traits)
        assert {value for value, _ in options} <= set(seen), trait
    assert all((t["name"] is None) == ("customer" not in p["slots"]) for t, p in zip(traits, pairs, strict=False))
    # Each pair of traits: "both off their careful value" about as often as independence predicts.
    off = {k: [t[k] is not None and t[k] != agents.GOOD_TRAITS[k] for t in traits] for k in agents.TRAITS}
    for a, b in itertools.combinations(agents.TRAITS, 2):
        idx = [i for i, t in enumerate(traits) if t["name"] is not None or "name" not in (a, b)]
        pa = sum(off[a][i] for i in idx) / len(idx)
        pb = sum(off[b][i] for i in idx) / len(idx)
        expected = pa * pb * len(idx)
        observed = sum(off[a][i] and off[b][i] for i in idx)
        assert abs(observed - expected) <= 4 * math.sqrt(expected) + 3, (a, b, observed, expected)


# ----------------------------------------------------------------------------- training pairs
def test_top_rated_are_kept(pairs: list[dict]) -> None:
    assert len(pairs) == 5000
    assert sum(p["high_quality"] for p in pairs) == 500
    assert [p["id"] for p in pairs] == list(range(5000))
    assert all(
        list(p) == ["id", "context", "response", "intent", "slots", "rating", "rules", "high_quality", "traits"]
        for p in pairs
    )
    for p in pairs:
        assert (p["rating"], p["rules"]) == syn.rate_response(p)
    assert all(p["rules"] == [] for p in pairs if p["rating"] == 5.0)
    kept = [p["rating"] for p in pairs if p["high_quality"]]
    rejected = [p["rating"] for p in pairs if not p["high_quality"]]
    assert min(kept) >= max(rejected)
    # The rubric, not a quota, decides: comfortably more than 500 reach 4.0, and the rest spread out.
    n_high = sum(p["rating"] >= syn.HIGH_QUALITY_THRESHOLD for p in pairs)
    assert 800 <= n_high <= 1500
    assert min(kept) >= syn.HIGH_QUALITY_THRESHOLD
    assert len({round(p["rating"] * 2) / 2 for p in pairs}) == 9  # every half point from 1.0 to 5.0
    json.dumps(pairs)


def test_selection_reads_only_the_ratings(pairs: list[dict]) -> None:
    flags = [p["high_quality"] for p in pairs]
    assert syn._select(pairs, 500, seed=0) == flags
    shuffled = copy.deepcopy(pairs)
    traits = [p["traits"] for p in shuffled]
    random.Random(1).shuffle(traits)
    for p, t in zip(shuffled, traits, strict=False):
        p["traits"] = t
    assert syn._select(shuffled, 500, seed=0) == flags
    bare = [{"rating": p["rating"]} for p in pairs]
    assert syn._select(bare, 500, seed=0) == flags
    # Ties are broken by the seed, not by position alone.
    assert syn._select(bare, 500, seed=1) != flags


def test_kept_may_fall_below_the_threshold() -> None:
    few = syn.generate_pairs(200, 150, seed=7)
    kept = [p["rating"] for p in few if p["high_quality"]]
    assert len(kept) == 150 and min(kept) < syn.HIGH_QUALITY_THRESHOLD
    assert min(kept) >= max(p["rating"] for p in few if not p["high_quality"])
    assert sum(p["high_quality"] for p in syn.generate_pairs(50, 0, seed=7)) == 0
    assert sum(p["high_quality"] for p in syn.generate_pairs(50, 50, seed=7)) == 50


def test_intents_and_variety(pairs: list[dict]) -> None:
    assert len(syn.INTENTS) >= 20
    kept = Counter(p["intent"] for p in pairs if p["high_quality"])
    assert set(kept) == set(syn.INTENTS)
    assert min(kept.values()) >= 10  # balanced enough, not forced
    assert len({p["context"] for p in pairs}) == len(pairs)
    assert len({p["response"] for p in pairs if p["high_quality"]}) == 500
    words = [len(p["response"].split()) for p in pairs if p["high_quality"]]
    assert 20 <= min(words) and max(words) <= 65


def test_contexts_mention_a_specific(pairs: list[dict]) -> None:
    for p in pairs:
        slots = p["slots"]
        assert "order_id" in slots or "product" in slots
        assert all(v in p["context"] for k, v in slots.items())


def test_deterministic(pairs: list[dict]) -> None:
    assert syn.generate_pairs(200, 20, seed=7) == syn.generate_pairs(200, 20, seed=7)
    assert syn.generate_pairs(200, 20, seed=7) != syn.generate_pairs(200, 20, seed=8)
    for split in syn.EVAL_SPLITS:
        assert syn.generate_eval_set(split, 20, 3) == syn.generate_eval_set(split, 20, 3)
        assert syn.generate_eval_set(split, 20, 3) != syn.generate_eval_set(split, 20, 4)


def test_generate_pairs_rejects_bad_quota() -> None:
    with pytest.raises(ValueError):
        syn.generate_pairs(10, 11)


def test_training_pairs_use_only_train_or_open_values(pairs: list[dict]) -> None:
    assert find_heldout_leaks(p["context"] + "\n" + p["response"] for p in pairs) == []
    train, open_ = slot_values("train"), open_pools()
    assert all(v in train[k] or v in open_[k] for p in pairs for k, v in p["slots"].items())
    # about OPEN_VALUES_SHARE of the contexts take open-format values (an id not shaped "A1234")
    open_ids = sum(not re.fullmatch(r"[A-Z]\d{4}", p["slots"].get("order_id", "A0000")) for p in pairs)
    with_ids = sum("order_id" in p["slots"] for p in pairs)
    assert 0.15 * with_ids < open_ids < 0.5 * with_ids


# ----------------------------------------------------------------------------- held-out phrasing
def test_training_text_has_no_held_out_phrasing(pairs: list[dict], val_set: list[dict], test_set: list[dict]) -> None:
    assert template_leaks(p["context"] + "\n" + p["response"] for p in pairs) == []
    for rows in (val_set, test_set):
        assert template_leaks(r[k] for r in rows for k in ("context", "reference", "reference_2")) == []


# ----------------------------------------------------------------------------- eval sets
def test_eval_splits() -> None:
    assert syn.EVAL_SPLITS == ("val", "test", "test_unseen")


@pytest.mark.parametrize("split", ["test", "test_unseen"])
def test_test_sets_use_heldout_values(split: str, request: pytest.FixtureRequest) -> None:
    held = slot_values("heldout")
    for row in request.getfixturevalue("test_set" if split == "test" else "unseen_set"):
        assert find_heldout_leaks([row["context"]]) != []
        assert all(v in held[k] for k, v in row["slots"].items())
        assert "order_id" in row["slots"] or "product" in row["slots"]


@pytest.mark.parametrize("split", syn.EVAL_SPLITS)
def test_references_are_high_quality_and_independent(split: str, request: pytest.FixtureRequest) -> None:
    rows = request.getfixturevalue({"test": "test_set", "val": "val_set", "test_unseen": "unseen_set"}[split])
    assert len(rows) == 200 and [r["id"] for r in rows] == list(range(200))
    assert all(list(r) == ["id", "context", "intent", "slots", "reference", "reference_2"] for r in rows)
    for row in rows:
        for key in ("reference", "reference_2"):
            rating, _ = syn.rate_response({**row, "response": row[key]})
            assert rating >= 4.0
    assert sum(r["reference"] != r["reference_2"] for r in rows) >= 0.9 * len(rows)
    assert len({r["intent"] for r in rows}) == len(syn.INTENTS)
    assert len({context_key(r["context"]) for r in rows}) == len(rows)


def test_unseen_split_is_phrased_with_held_out_templates(
    pairs: list[dict], unseen_set: list[dict], test_set: list[dict]
) -> None:
    contexts = [r["context"] for r in unseen_set]
    with_held = sum(bool(template_leaks([c])) for c in contexts)
    assert with_held >= 0.6 * len(contexts)
    refs = [r[k] for r in unseen_set for k in ("reference", "reference_2")]
    assert sum(bool(template_leaks([r])) for r in refs) >= 0.9 * len(refs)
    assert len(template_leaks(contexts + refs, limit=1000)) >= 40
    # ... and none of the phrasing only the train side uses (a list with nothing held out is shared)
    assert domain._find_fragments(contexts + refs, "train", 5) == []
    # whereas the "test" split (train-side phrasing) is full of train-only fragments
    assert domain._find_fragments([r["context"] for r in test_set], "train", 5) != []
    train_keys = {context_key(p["context"]) for p in pairs}
    assert not train_keys & {context_key(c) for c in contexts}


def test_val_contexts_are_not_training_contexts(pairs: list[dict], val_set: list[dict]) -> None:
    train_contexts = {p["context"] for p in pairs}
    assert not train_contexts & {r["context"] for r in val_set}
    assert find_heldout_leaks(r["context"] + r["reference"] + r["reference_2"] for r in val_set) == []
    first = val_set[0]["context"]
    excluded = syn.generate_eval_set("val", 5, seed=0, exclude_contexts={first.upper() + " !"})
    assert first not in {r["context"] for r in excluded}
    # Default exclusion: the training contexts of generate_pairs() with default arguments.
    default = syn.generate_eval_set("val", 50, seed=0)
    assert not {context_key(c) for c in train_contexts} & {context_key(r["context"]) for r in default}


def test_eval_set_rejects_bad_split() -> None:
    with pytest.raises(ValueError):
        syn.generate_eval_set("train", 5, 0)


# ----------------------------------------------------------------------------- report
def test_filter_report_counts_add_up(pairs: list[dict]) -> None:
    report = syn.filter_report(pairs)
    assert report["total"] == 5000 == report["high_quality"] + report["low_quality"]
    assert report["high_quality"] == 500
    assert sum(report["kept_intents"].values()) == 500
    assert sum(report["rejected_intents"].values()) == 4500
    assert report["distinct_contexts"] == 5000
    rejected = [p for p in pairs if not p["high_quality"]]
    for rule, count in report["rejected_rules"].items():
        assert count == sum(rule in p["rules"] for p in rejected)
    histogram = report["rating_histogram"]
    assert sum(histogram.values()) == 5000
    assert list(histogram) == sorted(histogram, key=float) and all(isinstance(k, str) for k in histogram)
    assert set(histogram) <= {f"{x / 2:.1f}" for x in range(2, 11)}
    assert histogram["5.0"] == sum(p["rating"] == 5.0 for p in pairs)
    assert report["kept_min_rating"] == min(p["rating"] for p in pairs if p["high_quality"])
    assert report["rated_at_least_4"] == sum(p["rating"] >= 4.0 for p in pairs) > 500
    assert syn.filter_report([])["kept_min_rating"] is None
    with pytest.raises(ValueError):
        syn.filter_report([{"context": "x"}])
    with pytest.raises(ValueError):
        syn.filter_report([{**pairs[0], "high_quality": 2}])
