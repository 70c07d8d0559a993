"""The hand-written test split: its rows keep their promises (intents, verbatim specifics, good
references, contexts no training pair has), its loader names the file and line of a bad row, and
it is a test set beside "test" and "test_unseen" (scored, counted in the compute budget)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

import part4_sft
from part3_pretrain.cli import compose
from part3_pretrain.domain import INTENTS, mentions
from part3_pretrain.model import GPTConfig
from part4_sft import synthetic
from part4_sft.contexts import context_key
from part4_sft.handwritten import HANDWRITTEN_PATH, HANDWRITTEN_VAL_PATH, KEYS, load_handwritten
from part4_sft.sft import SFTConfig, compute_budget
from part4_sft.splits import DatasetSplits, synthetic_splits
from part4_sft.user_data import DataError

GENERATOR_ORDER_ID = re.compile(r"[A-Z]\d{4}")  # the shape of slots.py's order ids ("A1234")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_handwritten()


@pytest.fixture(scope="module")
def training_context_keys() -> frozenset[str]:
    """The context keys of the default generated pairs (generated once for the module)."""
    return frozenset(context_key(p["context"]) for p in synthetic.generate_pairs())


def test_the_file_sits_beside_the_module_and_loads(rows):
    assert HANDWRITTEN_PATH == Path(part4_sft.__file__).resolve().parent / "handwritten_test.jsonl"
    assert HANDWRITTEN_PATH.is_file()
    assert len(rows) >= 64 and all(list(r) == list(KEYS) for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({context_key(r["context"]) for r in rows}) == len(rows)  # no message twice


def test_the_validation_messages_load_and_share_no_value_with_the_test_split(rows):
    val = load_handwritten(HANDWRITTEN_VAL_PATH)
    assert len(val) >= 30
    assert not {context_key(r["context"]) for r in val} & {context_key(r["context"]) for r in rows}
    assert not {v for r in val for v in r["slots"].values()} & {v for r in rows for v in r["slots"].values()}


def test_every_intent_has_at_least_three_rows(rows):
    counts = Counter(r["intent"] for r in rows)
    assert set(counts) == set(INTENTS) and min(counts.values()) >= 3, counts


def test_every_slot_value_is_stated_in_its_message(rows):
    for r in rows:
        for name, value in r["slots"].items():
            assert mentions(r["context"], value), (r["id"], name, value)


@pytest.mark.parametrize("key", ["reference", "reference_2"])
def test_both_references_are_good_replies(rows, key):
    for r in rows:
        rating, rules = synthetic.rate_response({"response": r[key], "intent": r["intent"], "slots": r["slots"]})
        assert rating >= synthetic.HIGH_QUALITY_THRESHOLD, (r["id"], key, rating, rules)
    assert all(r["reference"] != r["reference_2"] for r in rows)


def test_no_message_is_a_generated_training_context(rows, training_context_keys):
    shared = [r["context"] for r in rows if context_key(r["context"]) in training_context_keys]
    assert not shared


def test_order_ids_come_in_shapes_the_generator_does_not_use(rows):
    open_ids = [r["slots"]["order_id"] for r in rows if "order_id" in r["slots"]]
    assert sum(not GENERATOR_ORDER_ID.fullmatch(v) for v in open_ids) >= 15


GOOD = {
    "id": 1,
    "context": "where is order QX-1 pls",
    "intent": "order_status",
    "slots": {"order_id": "QX-1"},
    "reference": "a",
    "reference_2": "b",
}


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ('{"id": 2, "context": "where is', "not valid JSON"),
        (json.dumps({k: v for k, v in {**GOOD, "id": 2}.items() if k != "reference_2"}), "missing key(s) reference_2"),
        (json.dumps({**GOOD, "id": 2, "intent": "refund_please"}), "unknown intent 'refund_please'"),
        (json.dumps({**GOOD, "id": 2, "slots": {"colour": "navy"}}), "unknown slot 'colour'"),
        (json.dumps({**GOOD, "id": 2, "slots": {"order_id": "ZZ-999"}}), "order_id='ZZ-999' is not mentioned"),
        (json.dumps(GOOD), "id 1 is already used on line 1"),
    ],
)
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path, bad_line, problem):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_handwritten(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:3: ") and problem in message, message


def test_a_good_file_gives_rows_with_exactly_the_keys(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({**GOOD, "note": "extra keys are dropped"}) + "\n", encoding="utf-8")
    assert load_handwritten(path) == [GOOD]


def test_test_sets_include_the_handwritten_split_when_set():
    a, b, c = [{"context": "a"}], [{"context": "b"}], [{"context": "c"}]
    assert list(DatasetSplits([], [], a).test_sets()) == ["test"]
    assert list(DatasetSplits([], [], a, test_handwritten=c).test_sets()) == ["test", "test_handwritten"]
    both = DatasetSplits([], [], a, b, test_handwritten=c).test_sets()
    assert list(both) == ["test", "test_unseen", "test_handwritten"] and both["test_handwritten"] is c


def test_synthetic_splits_load_and_check_the_handwritten_split(tmp_path, rows):
    cfg = compose(
        SFTConfig, dataset_path=str(tmp_path / "d.json"), n_pairs=120, n_high_quality=24, n_val=6, n_test=10
    ).dataset
    splits = synthetic_splits(cfg)
    assert splits.test_handwritten == rows and splits.summary["test_handwritten"] == len(rows)
    assert splits.summary["disjointness"]["test_handwritten"]["shared_contexts"] == 0
    assert "test_handwritten" in splits.test_sets()


def test_compute_budget_counts_every_test_set():
    def report(tokens: int) -> dict:
        return {"sft": {"forward_tokens": tokens}, "pretrained": {"forward_tokens": tokens}}

    evaluation = {**report(100), "test_unseen": report(10), "test_handwritten": report(1)}
    budget = compute_budget(GPTConfig(), {}, 0, evaluation)
    assert budget["tokens"]["evaluation_forward"] == 222
