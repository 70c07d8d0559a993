"""Tests for part4_sft.synthetic: the rubric on hand-written replies, quotas, determinism, splits."""
from __future__ import annotations

import json
import random

import pytest

from part3_pretrain.slots import find_heldout_leaks, slot_values
from part4_sft import synthetic as syn


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return syn.generate_pairs()


@pytest.fixture(scope="module")
def test_set() -> list[dict]:
    return syn.generate_eval_set("test", 200, seed=0)


@pytest.fixture(scope="module")
def val_set(pairs: list[dict]) -> list[dict]:
    return syn.generate_eval_set("val", 200, seed=0, exclude_contexts={p["context"] for p in pairs})


# ----------------------------------------------------------------------------- the rubric
SLOTS = {"customer": "Leila", "order_id": "A1234", "product": "Cedar Rain Jacket"}
GOOD = ("I'm so sorry about the damage, Leila. Your Cedar Rain Jacket from order #A1234 arrived "
        "damaged, so I've sent a free replacement that ships today. Have a great day!")


def _rate(response: str, intent: str = "damaged_item", slots: dict | None = None) -> tuple[float, list[str]]:
    return syn.rate_response({"context": "", "response": response, "intent": intent,
                              "slots": SLOTS if slots is None else slots})


def test_good_response_scores_high() -> None:
    assert _rate(GOOD) == (5.0, [])


@pytest.mark.parametrize("response, rule", [
    ("Calm down, Leila. Your Cedar Rain Jacket from order #A1234 arrived damaged, so I've sent a "
     "free replacement that ships today. Have a great day!", "rude"),
    ("I'm so sorry about the damage, Leila. Your Cedar Rain Jacket from order #A1234 arrived "
     "damaged, so I've sent a free replacement that", "truncated"),
    ("I'm so sorry about the damage, Leila. Your Cedar Rain Jacket arrived damaged, so I've sent a "
     "free replacement that ships today. Have a great day!", "ignores_specifics"),
    ("Thanks for reaching out, Leila. Your Cedar Rain Jacket from order #A1234 is in transit, and "
     "I've emailed you the tracking link. Have a great day!", "off_intent"),
    ("I'm so sorry about the damage, Leila. Your Cedar Rain Jacket from order #A1234 arrived "
     "damaged and we know that is frustrating. Have a great day!", "no_next_step"),
    ("Sorry Leila, order #A1234 damaged, replacement sent.", "curt"),
    (GOOD + " Have a great day! Have a great day!", "repetitive"),
    ("Thank you for contacting customer support. We value your business. Our team will get back "
     "to you as soon as possible. Have a great day!", "generic"),
])
def test_flawed_responses_score_low_with_the_rule(response: str, rule: str) -> None:
    rating, rules = _rate(response)
    assert rating < syn.HIGH_QUALITY_THRESHOLD
    assert rule in rules


def test_mild_omissions_lower_but_do_not_reject() -> None:
    no_close = GOOD.replace(" Have a great day!", "")
    assert _rate(no_close) == (4.4, ["no_polite_close"])
    rating, rules = _rate(GOOD.replace(", Leila", ""))
    assert rules == ["no_name"] and 4.0 <= rating < 5.0


def test_product_name_does_not_count_as_intent_keyword() -> None:
    slots = {"product": "Juniper Organic Cotton Tote"}
    reply = ("Thanks for asking! The Juniper Organic Cotton Tote ships today, and I've emailed you "
             "the tracking link. Have a great day!")
    assert "off_intent" in _rate(reply, "eco_products", slots)[1]


def test_rate_response_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        syn.rate_response({"response": "hi", "intent": "no_such_intent", "slots": {}})
    with pytest.raises(ValueError):
        syn.rate_response({"response": "hi", "intent": "order_status"})


def test_generators_and_rubric_agree() -> None:
    # The generator's intention is not the label, but it should almost never disagree.
    rng = random.Random(123)
    for i in range(300):
        ctx = syn._make_context(syn.INTENTS[i % len(syn.INTENTS)], "train", rng)
        example = {"intent": ctx.intent, "slots": ctx.slots}
        assert syn.rate_response({**example, "response": syn._good_response(ctx, "train", rng)})[0] >= 4.0
        for name, flaw in syn._FLAWS.items():
            rating, _ = syn.rate_response({**example, "response": flaw(ctx, "train", rng)})
            assert rating < 4.0, name


# ----------------------------------------------------------------------------- training pairs
def test_quota_and_labels(pairs: list[dict]) -> None:
    assert len(pairs) == 5000
    assert sum(p["high_quality"] for p in pairs) == 500
    assert [p["id"] for p in pairs] == list(range(5000))
    for p in pairs[:1000]:
        assert p["high_quality"] == int(p["rating"] >= 4.0)
        assert (p["rating"], p["rules"]) == syn.rate_response(p)
    assert all(p["rules"] == [] for p in pairs if p["rating"] == 5.0)
    json.dumps(pairs)


def test_intents_and_variety(pairs: list[dict]) -> None:
    assert len(syn.INTENTS) >= 20
    kept = {p["intent"] for p in pairs if p["high_quality"]}
    assert kept == set(syn.INTENTS)
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
    assert syn.generate_eval_set("test", 20, 3) == syn.generate_eval_set("test", 20, 3)


def test_generate_pairs_rejects_bad_quota() -> None:
    with pytest.raises(ValueError):
        syn.generate_pairs(10, 11)


def test_training_pairs_use_only_train_values(pairs: list[dict]) -> None:
    assert find_heldout_leaks(p["context"] + "\n" + p["response"] for p in pairs) == []
    train = slot_values("train")
    assert all(v in train[k] for p in pairs for k, v in p["slots"].items())


# ----------------------------------------------------------------------------- eval sets
def test_test_set_uses_heldout_values(test_set: list[dict]) -> None:
    held = slot_values("heldout")
    for row in test_set:
        assert find_heldout_leaks([row["context"]]) != []
        assert all(v in held[k] for k, v in row["slots"].items())
        assert "order_id" in row["slots"] or "product" in row["slots"]


@pytest.mark.parametrize("split", ["test", "val"])
def test_references_are_high_quality_and_independent(split: str, test_set: list[dict],
                                                     val_set: list[dict]) -> None:
    rows = test_set if split == "test" else val_set
    assert len(rows) == 200 and [r["id"] for r in rows] == list(range(200))
    for row in rows:
        for key in ("reference", "reference_2"):
            rating, _ = syn.rate_response({**row, "response": row[key]})
            assert rating >= 4.0
    assert sum(r["reference"] != r["reference_2"] for r in rows) >= 0.9 * len(rows)
    assert len({r["intent"] for r in rows}) == len(syn.INTENTS)


def test_val_contexts_are_not_training_contexts(pairs: list[dict], val_set: list[dict]) -> None:
    train_contexts = {p["context"] for p in pairs}
    assert not train_contexts & {r["context"] for r in val_set}
    assert find_heldout_leaks(r["context"] + r["reference"] + r["reference_2"] for r in val_set) == []
    first = val_set[0]["context"]
    excluded = syn.generate_eval_set("val", 5, seed=0, exclude_contexts={first.upper() + " !"})
    assert first not in {r["context"] for r in excluded}
    # Default exclusion: the training contexts of generate_pairs() with default arguments.
    default = syn.generate_eval_set("val", 50, seed=0)
    assert not {syn._context_key(c) for c in train_contexts} & {syn._context_key(r["context"]) for r in default}


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
    assert all(p["rules"] for p in rejected)
    with pytest.raises(ValueError):
        syn.filter_report([{"context": "x"}])
