"""Tests for part4_sft.metrics: hand-computed BLEU / ROUGE-L values, parity of the fast BLEU
with nltk and of the bit-parallel ROUGE-L with rouge-score, bootstrap properties, token accuracy
and stop statistics."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
from nltk.translate import bleu_score as nltk_bleu
from rouge_score import rouge_scorer

from part4_sft import metrics as M

# ------------------------------------------------------------------------------ tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$23.99", ["$", "23.99"]),
        ("#A1234", ["#", "a1234"]),
        ("don't", ["don't"]),
        ("Don\u2019t", ["don't"]),  # typographic apostrophe folded
        ("Where is my order?", ["where", "is", "my", "order", "?"]),
        ("It costs $1,000.50.", ["it", "costs", "$", "1,000.50", "."]),
        ("T-shirt ORD-1234, size 2.", ["t-shirt", "ord-1234", ",", "size", "2", "."]),
        ("", []),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert M.tokenize(text) == expected


# ---------------------------------------------------------------------------------- BLEU

REF_CAT = "the cat sat on the mat"


def test_bleu_identical_is_one() -> None:
    refs = ["where is my order", "your refund of $23.99 was sent today ."]
    assert M.corpus_bleu(refs, refs) == pytest.approx(1.0)
    assert M.sentence_bleu(refs, refs) == pytest.approx([1.0, 1.0])


def test_corpus_bleu_hand_worked_with_brevity_penalty() -> None:
    # Row 1: identical, 4 tokens -> matches/totals 1-4 grams: 4/4, 3/3, 2/2, 1/1.
    # Row 2: ref "the cat sat on the mat" (6), hyp "the dog sat on the" (5):
    #   1-grams the,dog,sat,on,the: "the" x2 (ref has 2), dog 0 -> 4/5
    #   2-grams the dog, dog sat, sat on, on the -> 2/4
    #   3-grams the dog sat, dog sat on, sat on the -> 1/3
    #   4-grams the dog sat on, dog sat on the -> 0/2
    # Corpus sums: p1 = 8/9, p2 = 5/7, p3 = 3/5, p4 = 1/3 (no smoothing needed).
    # Lengths: hyp 4+5 = 9 < ref 4+6 = 10 -> BP = exp(1 - 10/9) = exp(-1/9).
    # BLEU = exp(-1/9) * (8/9 * 5/7 * 3/5 * 1/3) ** (1/4) = exp(-1/9) * (8/63) ** 0.25
    refs = ["where is my order", REF_CAT]
    hyps = ["where is my order", "the dog sat on the"]
    expected = math.exp(-1 / 9) * (8 / 63) ** 0.25
    assert M.corpus_bleu(refs, hyps) == pytest.approx(expected, abs=1e-12)


def test_sentence_bleu_hand_worked_smoothing() -> None:
    # Row 2 above on its own: p = 4/5, 2/4, 1/3, and 0/2 smoothed by method1 to 0.1/2.
    # Product 0.8 * 0.5 * (1/3) * 0.05 = 1/150; BP = exp(1 - 6/5) = exp(-0.2).
    expected = math.exp(-0.2) * (1 / 150) ** 0.25
    scores = M.sentence_bleu([REF_CAT, "where is my order"], ["the dog sat on the", "nope"])
    assert scores[0] == pytest.approx(expected, abs=1e-12)
    assert scores[1] == 0.0  # no unigram match


def test_empty_hypothesis_scores_zero() -> None:
    refs, hyps = [REF_CAT], [""]
    assert M.corpus_bleu(refs, hyps) == 0.0
    assert M.sentence_bleu(refs, hyps) == [0.0]
    assert M.rouge_l(refs, hyps) == [0.0]
    assert M.bleu_from_stats(M.bleu_stats(refs, hyps).sum(0)) == 0.0


def _random_corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    rnd = random.Random(seed)
    vocab = "the a your order refund is was sent $23.99 #a1234 today . , ? don't we".split()
    refs = [" ".join(rnd.choices(vocab, k=rnd.randint(0, 20))) for _ in range(n)]
    hyps = [" ".join(rnd.choices(vocab, k=rnd.randint(0, 20))) for _ in range(n)]
    return refs, hyps


def test_fast_bleu_matches_nltk() -> None:
    refs, hyps = _random_corpus(80, seed=1)
    hyps[:3] = ["", "the", "the order"]  # empty and shorter-than-4 hypotheses
    tok_refs = [[M.tokenize(r)] for r in refs]
    tok_hyps = [M.tokenize(h) for h in hyps]
    smooth = nltk_bleu.SmoothingFunction().method1
    stats = M.bleu_stats(refs, hyps)
    for rows in (range(80), range(0, 80, 3), range(5)):
        want = nltk_bleu.corpus_bleu(
            [tok_refs[i] for i in rows], [tok_hyps[i] for i in rows], smoothing_function=smooth
        )
        got = M.bleu_from_stats(stats[list(rows)].sum(0))
        assert abs(float(got) - want) < 1e-9
    assert abs(float(M.bleu_from_stats(stats.sum(0))) - M.corpus_bleu(refs, hyps)) < 1e-9
    # Per-row stats give nltk's sentence BLEU too.
    want = [nltk_bleu.sentence_bleu(r, h, smoothing_function=smooth) for r, h in zip(tok_refs, tok_hyps, strict=True)]
    np.testing.assert_allclose(M.sentence_bleu(refs, hyps), want, atol=1e-9)


# --------------------------------------------------------------------------------- ROUGE


def test_rouge_l_hand_worked() -> None:
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens:
    # P = 5/5, R = 5/6, F = 2PR / (P + R) = (10/6) / (11/6) = 10/11.
    assert M.rouge_l([REF_CAT], ["the cat on the mat"]) == [pytest.approx(10 / 11)]


class _OurTokens:
    def tokenize(self, text: str) -> list[str]:
        return M.tokenize(text)


def test_rouge_l_equals_rouge_score_exactly() -> None:
    refs, hyps = _random_corpus(120, seed=3)
    hyps[:4] = ["", "the", refs[2], "zzz qqq"]  # empty, one word, identical, nothing shared
    multi = [[r, refs[(i + 7) % len(refs)]] for i, r in enumerate(refs)]  # two references a row
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_OurTokens())
    for references in (refs, multi):
        want = [scorer.score_multi(M._ref_list(r), h)["rougeL"].fmeasure for r, h in zip(references, hyps, strict=True)]
        assert M.rouge_l(references, hyps) == want


def test_same_tokenisation_both_sides() -> None:
    refs = ["Where is my order? It's #A1234."]
    hyps = ["where is my order ? it's # a1234 ."]
    assert M.rouge_l(refs, hyps) == [pytest.approx(1.0)]
    assert M.corpus_bleu(refs, hyps) == pytest.approx(1.0)
    assert M.sentence_bleu(refs, hyps) == [pytest.approx(1.0)]


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_mean_and_narrows() -> None:
    rng = np.random.default_rng(123)
    small, large = rng.random(30), rng.random(3000)
    lo_s, hi_s = M.bootstrap_ci(small, n_boot=500, seed=0)
    lo_l, hi_l = M.bootstrap_ci(large, n_boot=500, seed=0)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # ~ 1/sqrt(100) of the width, with slack
    assert M.bootstrap_ci(small, n_boot=200, seed=7) == M.bootstrap_ci(small, n_boot=200, seed=7)
    assert M.bootstrap_ci([0.5] * 10, n_boot=100) == (0.5, 0.5)


def test_bootstrap_corpus_bleu_ci_contains_point_and_is_fast() -> None:
    refs, hyps = _random_corpus(250, seed=2)
    start = time.perf_counter()
    lo, hi = M.bootstrap_corpus_bleu_ci(refs, hyps, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 2.0
    assert lo <= M.corpus_bleu(refs, hyps) <= hi
    assert lo < hi


def test_per_row_bootstrap_is_fast() -> None:
    values = np.random.default_rng(0).random(250)
    start = time.perf_counter()
    M.bootstrap_ci(values, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("metric", ["bleu", "rouge_l", "sentence_bleu"])
def test_paired_diff_identical_is_exactly_zero(metric: str) -> None:
    refs, hyps = _random_corpus(40, seed=3)
    out = M.paired_bootstrap_diff(refs, hyps, list(hyps), metric, n_boot=200, seed=0)
    assert out == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_paired_diff_detects_better_system() -> None:
    refs, hyps_a = _random_corpus(60, seed=4)
    for metric in ("bleu", "rouge_l", "sentence_bleu"):
        out = M.paired_bootstrap_diff(refs, hyps_a, refs, metric, n_boot=200, seed=0)
        assert 0 < out["ci_low"] <= out["diff"] <= out["ci_high"]
    out = M.paired_bootstrap_diff(refs, hyps_a, refs, "rouge_l", n_boot=10)
    want = np.mean(M.rouge_l(refs, refs)) - np.mean(M.rouge_l(refs, hyps_a))
    assert out["diff"] == pytest.approx(want)


def test_text_metrics_keys() -> None:
    refs, hyps = _random_corpus(20, seed=5)
    out = M.text_metrics(refs, hyps, n_boot=50, seed=0)
    assert set(out) == {"n", "bleu", "bleu_ci", "sentence_bleu", "rouge_l", "rouge_l_ci"}
    assert out["n"] == 20
    assert out["bleu"] == pytest.approx(M.corpus_bleu(refs, hyps))
    assert out["rouge_l"] == pytest.approx(np.mean(M.rouge_l(refs, hyps)))
    assert out["bleu_ci"][0] <= out["bleu_ci"][1]
    assert out["rouge_l_ci"][0] <= out["rouge_l"] <= out["rouge_l_ci"][1]


# --------------------------------------------------------------------------- generations


def test_stop_stats_arithmetic() -> None:
    out = M.stop_stats([True, False, True, True], [10, 64, 3, 7])
    assert out == {"eos_stop_rate": 0.75, "length_limit_rate": 0.25, "mean_length": 21.0}


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.corpus_bleu(["a", "b"], ["a"]),
        lambda: M.sentence_bleu(["a"], ["a", "b"]),
        lambda: M.rouge_l(["a"], []),
        lambda: M.corpus_bleu([], []),
        lambda: M.text_metrics(["a"], [None]),
        lambda: M.bootstrap_corpus_bleu_ci(["a"], ["a", "b"]),
        lambda: M.paired_bootstrap_diff(["a"], ["a"], ["a", "b"], "bleu"),
        lambda: M.paired_bootstrap_diff(["a"], ["a"], ["a"], "meteor"),
        lambda: M.bootstrap_ci([]),
        lambda: M.bootstrap_ci([1.0], n_boot=0),
        lambda: M.stop_stats([True], [1, 2]),
        lambda: M.stop_stats([], []),
    ],
)
def test_bad_inputs_raise_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()
