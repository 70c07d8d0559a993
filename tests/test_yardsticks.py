"""Yardsticks (a nearest training answer, one fixed training answer), retrieval in the prompt, and the
hints for data that does not fit a base's context: hand-computed on tiny data."""

from __future__ import annotations

import random

import pytest

from part3_pretrain.checkpoint import load_model
from part3_pretrain.model import IGNORE_INDEX
from part4_sft import fit
from part4_sft.examples import build_examples, prompt_ids
from part4_sft.metrics import lcs_length, rouge_l, rouge_l_f1, tokenize
from part4_sft.prompts import get_scheme
from part4_sft.retrieval import add_retrieved
from part4_sft.splits import DatasetSplits
from part4_sft.yardsticks import NearestNeighbours, Yardsticks, fixed_answer, nearest_answers

TRAIN = [
    {"context": "Where is my order?", "response": "The parcel ships today"},
    {"context": "Please cancel my subscription", "response": "The parcel ships tomorrow morning"},
    {"context": "refund for a broken lamp", "response": "Your parcel ships"},
    {"context": "where is the lamp", "response": "Refund issued"},
]


def _lcs_table(a: list[str], b: list[str]) -> int:
    """The textbook dynamic programme, to check the bit-parallel LCS against."""
    m = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            m[i + 1][j + 1] = m[i][j] + 1 if x == y else max(m[i][j + 1], m[i + 1][j])
    return m[-1][-1]


def test_bit_parallel_lcs_and_rouge_equal_the_reference_computations():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 25))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 25))]
        assert lcs_length(a, b) == _lcs_table(a, b)
    texts = [r["response"] + " " + r["context"] for r in TRAIN] + ["", "ok ok ok the the"]
    for x in texts:
        for y in texts:
            if tokenize(x) and tokenize(y):
                assert rouge_l_f1(tokenize(x), tokenize(y)) == pytest.approx(rouge_l([x], [y])[0], abs=1e-12)


def test_nearest_neighbour_by_shared_words_hand_computed():
    nn = NearestNeighbours(TRAIN)
    # "where is the order": row 0 {where, is, my, order} shares 3 of 5 words, row 3 {where, is,
    # the, lamp} also 3 of 5: the tie goes to the earlier row; row 1 shares none
    assert nn.similarities("where is the order") == pytest.approx([3 / 5, 0.0, 0.0, 3 / 5])
    assert nn.nearest({"context": "where is the order"}, k=2) == [0, 3]
    assert nn.nearest({"context": "WHERE is the lamp??"}) == [3]  # case and punctuation do not count
    # a training row's own message is left out when asked: its best other match comes first
    assert nn.nearest(TRAIN[3], k=1, exclude_same=True) == [0]
    assert nearest_answers(TRAIN, [{"context": "cancel subscription"}]) == ["The parcel ships tomorrow morning"]


def test_fixed_answer_is_the_best_mean_rouge_against_the_other_training_answers():
    # F1 of an LCS is 2 * lcs / (len a + len b): answer 0 vs 1: 2*3/9, vs 2: 2*2/7, vs 3: 0 ->
    # mean 0.4127; answer 1: (2*3/9 + 2*2/8) / 3 = 0.3889; answer 2: (2*2/7 + 2*2/8) / 3; answer 3: 0
    index, score = fixed_answer(TRAIN)
    assert index == 0 and score == pytest.approx((6 / 9 + 4 / 7) / 3)
    assert fixed_answer(TRAIN[2:]) == (0, 0.0)  # no shared word: the earlier row


def test_yardsticks_never_see_the_rows_they_answer():
    test = [
        {"context": "Where is my order?", "reference": "UNIQUE-ANSWER-1 only the test holds this"},
        {"context": "refund for a broken lamp", "reference": "UNIQUE-ANSWER-2 only the test holds this"},
    ]
    replies = Yardsticks(TRAIN).texts(test)
    train_answers = {r["response"] for r in TRAIN}
    assert replies["nearest_answer"] == ["The parcel ships today", "Your parcel ships"]
    assert replies["fixed_answer"] == ["The parcel ships today"] * 2
    assert all(t in train_answers for texts in replies.values() for t in texts)
    # changing the test answers changes nothing: the lookup reads training rows only
    assert Yardsticks(TRAIN).texts([{**r, "reference": "x"} for r in test]) == replies


def test_retrieval_takes_training_rows_only_and_never_a_training_rows_own_message():
    val = [{"context": "where is the lamp now", "reference": "VAL"}]
    test = [{"context": "Where is my order?", "reference": "TEST"}]
    splits = add_retrieved(DatasetSplits(train=TRAIN, val=val, test=test), 2)
    for row in splits.train:
        assert len(row["retrieved"]) == 4 and row["context"] not in [t["content"] for t in row["retrieved"]]
    # the most similar exchange comes last, next to the message
    assert [t["content"] for t in splits.test[0]["retrieved"][2:]] == ["Where is my order?", "The parcel ships today"]
    answers = {r["response"] for r in TRAIN}
    for row in splits.val + splits.test:
        assert {t["content"] for t in row["retrieved"] if t["role"] == "assistant"} <= answers
    assert add_retrieved(DatasetSplits(train=TRAIN, val=val, test=test), 0).test == test


@pytest.fixture(scope="module")
def tok(pretrained):
    return load_model(pretrained)[1]


def test_retrieved_exchanges_are_masked_in_training_and_dropped_first(tok):
    scheme = get_scheme("dialogue")
    row = add_retrieved(DatasetSplits(train=TRAIN, val=[], test=[]), 1).train[3]
    (ex,), counts = build_examples(tok, scheme, [row], 190)
    assert [t for t in ex.labels if t != IGNORE_INDEX] == scheme.encode_response(tok, row["response"])
    retrieved = "Customer: Where is my order?\nAgent: The parcel ships today"
    assert tok.decode(ex.input_ids).startswith(retrieved) and counts["context_truncated"] == 0
    own = scheme.encode_prompt(tok, row["context"]) + scheme.encode_response(tok, row["response"])
    (short,), counts = build_examples(tok, scheme, [row], len(own) - 1)  # no room for the retrieved exchange
    assert short.input_ids == own[:-1] and counts["context_truncated"] == 0 and counts["turns_dropped"] == 0
    ids, cut = prompt_ids(tok, scheme, {**row, "reference": "x"}, 190)
    assert tok.decode(ids) == retrieved + "<|endoftext|>" + "Customer: where is the lamp\nAgent:" and not cut
    assert prompt_ids(tok, scheme, row, len(scheme.encode_prompt(tok, row["context"]))) == (
        scheme.encode_prompt(tok, row["context"]),
        False,
    )


def test_a_context_too_long_for_any_base_says_so_and_a_longer_one_names_a_larger_context(tok):
    scheme = get_scheme("dialogue")
    huge = {"context": "my parcel " * 40_000, "response": "Sorry about that."}  # 400k characters
    rows = [huge] + [{"context": "Hi", "response": "Hello."}] * 9
    _, counts = build_examples(tok, scheme, rows, 160)
    hint = fit.block_size_hint(fit.reply_lengths(tok, scheme, rows))
    assert hint <= 160  # the short replies alone would fit: that is not the fix for a long message
    (line,) = fit.train_warnings(counts, 160, hint, max(fit.example_lengths(tok, scheme, rows)))
    assert "1 of 10 training rows had their context cut" in line and "no context fits" in line
    assert f"--block-size {hint}" not in line and "shorten or split" in line
    longer = [{"context": "my parcel " * 100, "response": "Sorry about that."}] + rows[1:]
    _, counts = build_examples(tok, scheme, longer, 160)
    needed = max(fit.example_lengths(tok, scheme, longer))
    (line,) = fit.train_warnings(counts, 160, hint, needed, fitted=True)
    size = fit.round_up(needed)
    assert size > 160 and line.endswith(
        f"pretrain a base with --block-size {size} (python -m part3_pretrain.pretrain) and pass it as --pretrained"
    )
