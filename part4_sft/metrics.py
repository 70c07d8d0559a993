"""Text metrics for comparing generated support replies with references, and how generations stopped.

Everything here works offline: BLEU is ``nltk.translate.bleu_score``'s (which needs no nltk
data) and ROUGE-L ``rouge_score``'s; both see the same tokens, produced by :func:`tokenize`.
Confidence intervals are percentile bootstraps over rows, seeded through
``numpy.random.default_rng``.

Both are computed here rather than by calling those libraries row by row (the tests hold them
to the libraries' numbers): corpus BLEU inside the bootstrap, and sentence BLEU, come from
per-row n-gram match counts and lengths computed once (:func:`bleu_stats`), summed over
resampled rows with one matrix product and turned into BLEU by :func:`bleu_from_stats` (the
same number as nltk's ``corpus_bleu`` / ``sentence_bleu`` with ``SmoothingFunction().method1``,
tested to 1e-9); ROUGE-L's longest common subsequence is counted bit-parallel (:func:`lcs_length`),
which gives rouge-score's exact F1 about 50 times faster than its dynamic-programming table.

Conventions, from nltk's BLEU with method1 smoothing:
- an empty hypothesis scores 0;
- an identical pair shorter than 4 tokens scores below 1, because its empty higher-order
  n-gram precisions are smoothed to epsilon / 1 rather than skipped.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from nltk.translate import bleu_score as nltk_bleu

MAX_ORDER = 4  # BLEU-4, uniform weights
BLEU_WEIGHTS = (0.25, 0.25, 0.25, 0.25)
METRICS = ("bleu", "rouge_l", "sentence_bleu")

# One token is either
#  - a word: letters/digits, joined across inner apostrophes or hyphens ("don't", "t-shirt",
#    "ord-1234") and, between two digits, across "." or "," ("23.99", "1,000");
#  - or one punctuation/symbol character ("$", "#", "?", "." ...).
# So "$23.99" -> ["$", "23.99"] and "#A1234" -> ["#", "a1234"]: the amount and the order id
# stay whole (a half-right price should not earn partial n-gram credit), while the symbol is
# its own token, so "$23.99" and "23.99 dollars" still share the number.
# [^\W_] is "letter or digit" in any script; "_" counts as punctuation.
_WORD = r"[^\W_]+(?:['\-][^\W_]+|(?<=\d)[.,](?=\d)\d+)*"
_TOKEN_RE = re.compile(rf"{_WORD}|[^\w\s]|_")
# Typographic apostrophes are folded so "don’t" and "don't" are the same token.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into word and punctuation tokens (see ``_TOKEN_RE``).

    Used for references and hypotheses alike, by BLEU and ROUGE-L alike.
    """
    if not isinstance(text, str):
        raise ValueError(f"tokenize expects a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text.lower().translate(_APOSTROPHES))


# ---------------------------------------------------------------------------- validation


References = Sequence["str | Sequence[str]"]  # one reference, or alternatives, per row


def _ref_list(reference: str | Sequence[str]) -> list[str]:
    """A row's references as a list (one string is one reference)."""
    return [reference] if isinstance(reference, str) else list(reference)


def _check_pairs(references: References, hypotheses: Sequence[str]) -> None:
    """Raise ValueError unless both are equally long, non-empty sequences; each reference is a
    str or a non-empty sequence of str (alternatives), each hypothesis a str."""
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise ValueError("references and hypotheses must be sequences of strings, not a string")
    if len(references) != len(hypotheses):
        raise ValueError(
            f"got {len(references)} references but {len(hypotheses)} hypotheses; they must pair up one to one"
        )
    if len(references) == 0:
        raise ValueError("references and hypotheses are empty")
    for i, text in enumerate(hypotheses):
        if not isinstance(text, str):
            raise ValueError(f"hypotheses[{i}] is {type(text).__name__}, expected str")
    for i, ref in enumerate(references):
        alts = [ref] if isinstance(ref, str) else ref
        if not isinstance(alts, Sequence) or not alts or not all(isinstance(a, str) for a in alts):
            raise ValueError(f"references[{i}] is {type(ref).__name__}, expected str or non-empty list of str")


def _check_boot(n_boot: int, alpha: float = 0.05) -> None:
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


# ---------------------------------------------------------------------------------- BLEU


def _smoothing() -> nltk_bleu.SmoothingFunction:
    return nltk_bleu.SmoothingFunction()


def corpus_bleu(references: References, hypotheses: Sequence[str]) -> float:
    """Corpus BLEU-4 as nltk's ``corpus_bleu`` with method1 smoothing computes it (a row may have
    several references), from the summed per-row statistics (``bleu_stats``), which an
    evaluation computes once per row for the bootstrap and the paired differences anyway."""
    return float(bleu_from_stats(bleu_stats(references, hypotheses).sum(0)))


def sentence_bleu(references: References, hypotheses: Sequence[str]) -> list[float]:
    """Smoothed (method1) sentence BLEU-4 for each (reference(s), hypothesis) pair: nltk's
    ``sentence_bleu``, which is corpus BLEU of the one row, from the row's statistics."""
    return [float(b) for b in bleu_from_stats(bleu_stats(references, hypotheses))]


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _row_bleu_stats(refs: list[list[str]], hyp: list[str]) -> list[int]:
    """[match_1..match_4, total_1..total_4, hyp_len, ref_len] for one row, as nltk counts.

    With several references an n-gram is clipped by its largest count in any one reference, and
    the reference length is the one closest to the hypothesis length (the shorter on a tie).
    """
    matches, totals = [], []
    for n in range(1, MAX_ORDER + 1):
        hyp_counts = _ngrams(hyp, n)
        ref_max: Counter = Counter()
        for ref in refs:
            ref_max |= _ngrams(ref, n)  # element-wise max
        matches.append(sum(min(c, ref_max[g]) for g, c in hyp_counts.items()))
        # nltk floors each row's denominator at 1 (even when the hypothesis has no n-grams
        # of this order), and corpus BLEU sums those floored denominators; so must we.
        totals.append(max(1, len(hyp) - n + 1))
    ref_len = min((len(r) for r in refs), key=lambda length: (abs(length - len(hyp)), length))
    return matches + totals + [len(hyp), ref_len]


def bleu_stats(references: References, hypotheses: Sequence[str]) -> np.ndarray:
    """Per-row sufficient statistics for corpus BLEU, shape (N, 2 * MAX_ORDER + 2).

    Columns: clipped n-gram matches for n=1..4, hypothesis n-gram counts (floored at 1) for
    n=1..4, hypothesis length, (closest) reference length. Summing any subset of rows and
    passing the sum to :func:`bleu_from_stats` gives that subset's corpus BLEU.
    """
    _check_pairs(references, hypotheses)
    rows = [_row_stats(tuple(_ref_list(ref)), h) for ref, h in zip(references, hypotheses, strict=False)]
    return np.asarray(rows, dtype=np.float64)


# An evaluation scores the same replies against the same references several times (each
# system's metrics, then every paired comparison it takes part in): rows are computed once.
@functools.lru_cache(maxsize=1 << 16)
def _row_stats(refs: tuple[str, ...], hypothesis: str) -> tuple[int, ...]:
    return tuple(_row_bleu_stats([tokenize(r) for r in refs], tokenize(hypothesis)))


@functools.lru_cache(maxsize=1 << 16)
def _row_rouge_l(refs: tuple[str, ...], hypothesis: str) -> float:
    hyp = tokenize(hypothesis)
    return max(rouge_l_f1(tokenize(r), hyp) for r in refs)


def bleu_from_stats(stats: np.ndarray) -> np.ndarray:
    """Corpus BLEU-4 with method1 smoothing from summed statistics, vectorised.

    ``stats`` has shape (..., 2 * MAX_ORDER + 2) (columns as in :func:`bleu_stats`); the
    result has shape (...).
    """
    stats = np.asarray(stats, dtype=np.float64)
    matches = stats[..., :MAX_ORDER]
    totals = stats[..., MAX_ORDER : 2 * MAX_ORDER]
    hyp_len = stats[..., 2 * MAX_ORDER]
    ref_len = stats[..., 2 * MAX_ORDER + 1]
    eps = _smoothing().epsilon
    # method1: a zero match count becomes epsilon; totals are >= 1 by construction.
    precisions = np.where(matches == 0, eps, matches) / totals
    log_mean = np.log(precisions) @ np.asarray(BLEU_WEIGHTS)
    safe_hyp = np.maximum(hyp_len, 1.0)  # hyp_len == 0 is handled by the match test below
    brevity = np.where(hyp_len > ref_len, 1.0, np.exp(np.minimum(0.0, 1.0 - ref_len / safe_hyp)))
    # nltk returns 0 outright when no unigram matches (this also covers empty hypotheses).
    return np.where(matches[..., 0] == 0, 0.0, brevity * np.exp(log_mean))


# --------------------------------------------------------------------------------- ROUGE


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists, bit-parallel over ``a``
    (Hyyroe 2004): one row of the dynamic-programming table is one Python integer, so each
    token of ``b`` costs a few big-integer operations instead of ``len(a)`` table cells."""
    return lcs_with(lcs_masks(a), len(a), b)


def lcs_masks(a: Sequence[str]) -> dict[str, int]:
    """Each token of ``a`` -> the bit mask of its positions: what ``lcs_with`` reads of ``a``,
    made once where ``a`` meets many other lists."""
    masks: dict[str, int] = {}
    for i, t in enumerate(a):
        masks[t] = masks.get(t, 0) | (1 << i)
    return masks


def lcs_with(masks: Mapping[str, int], n: int, b: Sequence[str]) -> int:
    """``lcs_length(a, b)`` from ``a``'s ``lcs_masks`` and length ``n``."""
    full = (1 << n) - 1
    v = full
    for t in b:
        u = v & masks.get(t, 0)
        v = ((v + u) | (v - u)) & full
    return n - v.bit_count()


def rouge_l_f1(ref: Sequence[str], hyp: Sequence[str]) -> float:
    """ROUGE-L F1 of token lists, with rouge-score's precision, recall and F arithmetic (one
    reference; symmetric in its arguments)."""
    return f1_of_lcs(lcs_length(ref, hyp), len(ref), len(hyp))


def f1_of_lcs(lcs: int, ref_len: int, hyp_len: int) -> float:
    """ROUGE-L F1 from an LCS length and the two lengths (``rouge_l_f1``'s arithmetic)."""
    if lcs == 0:
        return 0.0
    precision, recall = lcs / hyp_len, lcs / ref_len
    return 2 * precision * recall / (precision + recall)


def rouge_l(references: References, hypotheses: Sequence[str]) -> list[float]:
    """ROUGE-L F1 per row, both sides tokenized by :func:`tokenize` (no stemming); with several
    references, the best of them: rouge-score's ``RougeScorer(["rougeL"]).score_multi``."""
    _check_pairs(references, hypotheses)
    return [_row_rouge_l(tuple(_ref_list(ref)), h) for ref, h in zip(references, hypotheses, strict=False)]


# ----------------------------------------------------------------------------- bootstrap


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of ``n`` rows is drawn in each of ``n_boot`` resamples, (n_boot, n).

    Resampled sums then become one matrix product ``counts @ per_row``, which keeps memory
    at n_boot * n instead of n_boot * n * columns and lets paired comparisons reuse the rows.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n) row indices
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _percentiles(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile (1 - alpha) bootstrap confidence interval of the mean of ``values``."""
    _check_boot(n_boot, alpha)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence of numbers")
    means = _resample_counts(arr.size, n_boot, seed) @ arr / arr.size  # (n_boot,)
    return _percentiles(means, alpha)


def bootstrap_corpus_bleu_ci(
    references: References,
    hypotheses: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap CI of corpus BLEU, resampling (reference, hypothesis) rows."""
    _check_boot(n_boot, alpha)
    stats = bleu_stats(references, hypotheses)  # (N, C)
    counts = _resample_counts(len(stats), n_boot, seed)  # (n_boot, N)
    return _percentiles(bleu_from_stats(counts @ stats), alpha)


def paired_bootstrap_diff(
    references: References,
    hyps_a: Sequence[str],
    hyps_b: Sequence[str],
    metric: str,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Paired bootstrap of ``metric(B) - metric(A)``, both scored on the same resampled rows.

    ``metric`` is "bleu" (corpus BLEU), "rouge_l" or "sentence_bleu" (means of per-row
    scores). Returns {"diff": full-data difference, "ci_low", "ci_high"}.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    _check_boot(n_boot, alpha)
    _check_pairs(references, hyps_a)
    _check_pairs(references, hyps_b)
    counts = _resample_counts(len(references), n_boot, seed)  # (n_boot, N)
    if metric == "bleu":
        stats_a, stats_b = bleu_stats(references, hyps_a), bleu_stats(references, hyps_b)
        diff = float(bleu_from_stats(stats_b.sum(0)) - bleu_from_stats(stats_a.sum(0)))
        samples = bleu_from_stats(counts @ stats_b) - bleu_from_stats(counts @ stats_a)
    else:
        score = rouge_l if metric == "rouge_l" else sentence_bleu
        return paired_bootstrap_values(
            score(references, hyps_a), score(references, hyps_b), n_boot=n_boot, seed=seed, alpha=alpha
        )
    lo, hi = _percentiles(samples, alpha)
    return {"diff": diff, "ci_low": lo, "ci_high": hi}


def _ratio_samples(num: np.ndarray, den: np.ndarray | None, counts: np.ndarray) -> np.ndarray:
    """sum(num) / sum(den) on each resample (den None: the mean of num)."""
    if den is None:
        return counts @ num / num.size
    d = counts @ den
    return np.divide(counts @ num, d, out=np.zeros_like(d), where=d > 0)


def bootstrap_ratio_ci(
    num: Sequence[float],
    den: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap CI, over rows, of ``sum(num) / sum(den)`` (den None: mean of num).

    A micro-averaged rate such as "specifics restated / specifics in the messages" resamples
    whole rows, so rows with many specifics weigh as much as they do in the point estimate.
    """
    _check_boot(n_boot, alpha)
    a = np.asarray(num, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence of numbers")
    b = None if den is None else np.asarray(den, dtype=np.float64)
    if b is not None and b.shape != a.shape:
        raise ValueError(f"numerators {a.shape} and denominators {b.shape} differ in shape")
    return _percentiles(_ratio_samples(a, b, _resample_counts(a.size, n_boot, seed)), alpha)


def paired_bootstrap_values(
    values_a: Sequence[float],
    values_b: Sequence[float],
    den: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Paired bootstrap of ``rate(B) - rate(A)`` from per-row values of two systems on the same
    rows, where rate is the mean (or ``sum(values) / sum(den)`` when ``den`` is given).

    Returns {"diff": full-data difference, "ci_low", "ci_high"}; identical systems give exactly 0.
    """
    _check_boot(n_boot, alpha)
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long non-empty 1-D value lists, got {a.shape} and {b.shape}")
    d = None if den is None else np.asarray(den, dtype=np.float64)
    full = np.ones((1, a.size))
    diff = float((_ratio_samples(b - a, d, full))[0])
    lo, hi = _percentiles(_ratio_samples(b - a, d, _resample_counts(a.size, n_boot, seed)), alpha)
    return {"diff": diff, "ci_low": lo, "ci_high": hi}


def text_metrics(
    references: References, hypotheses: Sequence[str], n_boot: int = 1000, seed: int = 0
) -> dict[str, object]:
    """All text metrics for one system: corpus BLEU (+CI), mean sentence BLEU, ROUGE-L (+CI)."""
    _check_pairs(references, hypotheses)
    rouge = rouge_l(references, hypotheses)
    return {
        "n": len(references),
        "bleu": corpus_bleu(references, hypotheses),
        "bleu_ci": list(bootstrap_corpus_bleu_ci(references, hypotheses, n_boot, seed)),
        "sentence_bleu": float(np.mean(sentence_bleu(references, hypotheses))),
        "rouge_l": float(np.mean(rouge)),
        "rouge_l_ci": list(bootstrap_ci(rouge, n_boot, seed)),
    }


# --------------------------------------------------------------------------- generations


def stop_stats(finished_by_eos: Sequence[bool], lengths: Sequence[int]) -> dict[str, float]:
    """How generations ended: share stopped by EOS, share cut by the length limit, mean length.

    ``lengths`` are generated token counts, one per generation.
    """
    if len(finished_by_eos) != len(lengths):
        raise ValueError(f"got {len(finished_by_eos)} stop flags but {len(lengths)} lengths")
    if len(lengths) == 0:
        raise ValueError("stop_stats needs at least one generation")
    if any(n < 0 for n in lengths):
        raise ValueError("lengths must be non-negative token counts")
    n = len(lengths)
    n_eos = sum(bool(f) for f in finished_by_eos)
    return {
        "eos_stop_rate": n_eos / n,
        "length_limit_rate": (n - n_eos) / n,
        "mean_length": math.fsum(lengths) / n,
    }
