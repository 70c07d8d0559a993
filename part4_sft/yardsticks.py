"""Yardsticks: replies that need no model, scored beside it, so a user sees what a lookup is worth.

Two replies built from the TRAINING rows only (never validation or test):

- ``nearest_answer``: the training answer of the training message with the most words in common
  with the message (Jaccard of the word sets, ``metrics.tokenize`` words without punctuation; ties
  go to the earlier training row): a human answer to a similar question;
- ``fixed_answer``: the one training answer with the best mean ROUGE-L F1 against the OTHER
  training answers (chosen on training data alone), given to every message.

``sft.evaluate_test_set`` scores them exactly like a model's greedy replies (``evaluate.score``)
and pairs them with the SFT model (``evaluate.compare_replies``). The same nearest-neighbour
lookup serves retrieval in the prompt (``retrieval.py``): for a training row it excludes the rows
with the same message (``contexts.row_key``), so training never shows the model its own answer.

Choosing the fixed answer compares every pair of training answers; ROUGE-L's longest common
subsequence is computed bit-parallel (``metrics.lcs_length``, equal to rouge-score's, tested), so
a few hundred answers of 300 words take seconds, not the minutes rouge-score's table needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from .contexts import row_key
from .metrics import f1_of_lcs, lcs_masks, lcs_with, tokenize

YARDSTICKS = ("nearest_answer", "fixed_answer")
DESCRIPTIONS = {
    "nearest_answer": "the training answer of the training message sharing the most words with the message (Jaccard)",
    "fixed_answer": "the one training answer with the best mean ROUGE-L against the other training answers, "
    "given to every message",
}
LABELS = {"nearest_answer": "nearest training answer", "fixed_answer": "best fixed answer"}


def words(text: str) -> frozenset[str]:
    """The set of words of ``text`` (``metrics.tokenize``, punctuation tokens left out)."""
    return frozenset(t for t in tokenize(text) if any(c.isalnum() for c in t))


class NearestNeighbours:
    """The training rows, indexed by word, to find the most similar message (Jaccard) fast."""

    def __init__(self, train: Sequence[Mapping]) -> None:
        if not train:
            raise ValueError("nearest neighbours need at least one training row")
        self.train = list(train)
        self.sets = [words(r["context"]) for r in self.train]
        self.keys = [row_key(r) for r in self.train]
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, ws in enumerate(self.sets):
            for w in ws:
                self.index[w].append(i)

    def similarities(self, context: str) -> list[float]:
        """Jaccard similarity of ``context``'s words with every training message's."""
        query = words(context)
        shared = [0] * len(self.train)
        for w in query:
            for i in self.index.get(w, ()):
                shared[i] += 1
        return [s / max(1, len(query) + len(ws) - s) for s, ws in zip(shared, self.sets, strict=True)]

    def nearest(self, row: Mapping, k: int = 1, exclude_same: bool = False) -> list[int]:
        """Indices of the ``k`` training rows most similar to ``row``'s message, most similar first
        (ties to the earlier row); ``exclude_same`` leaves out rows with ``row``'s own message."""
        sims = self.similarities(row["context"])
        own = row_key(row) if exclude_same else None
        order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))
        return [i for i in order if self.keys[i] != own][:k]


def nearest_answers(train: Sequence[Mapping], rows: Sequence[Mapping]) -> list[str]:
    """For each row, the answer of the training row whose message shares most words with it."""
    nn = NearestNeighbours(train)
    return [train[nn.nearest(r)[0]]["response"] for r in rows]


def fixed_answer(train: Sequence[Mapping]) -> tuple[int, float]:
    """(index, mean ROUGE-L) of the training answer that scores best against all the other
    training answers (ties to the earlier row); one answer alone scores 0."""
    tokens = [tokenize(r["response"]) for r in train]
    n = len(tokens)
    if n == 0:
        raise ValueError("a fixed answer needs at least one training row")
    totals = [0.0] * n
    masks = [lcs_masks(t) for t in tokens]  # each answer's side of the LCS, made once
    for i in range(n):
        for j in range(i + 1, n):
            # F1 is symmetric in reference and hypothesis: one LCS serves both directions
            s = f1_of_lcs(lcs_with(masks[j], len(tokens[j]), tokens[i]), len(tokens[j]), len(tokens[i]))
            totals[i] += s
            totals[j] += s
    best = max(range(n), key=lambda i: (totals[i], -i))
    return best, totals[best] / max(1, n - 1)


def yardstick_replies(texts: Sequence[str], count_tokens: Callable[[str], int]) -> dict:
    """Replies in ``evaluate.generate_replies``'s shape (text, stop flag, length): a yardstick
    "stops" after its whole answer, so its EOS-stop rate is 1 by construction."""
    return {
        "texts": list(texts),
        "stopped_by_eos": [True] * len(texts),
        "lengths": [count_tokens(t) for t in texts],
    }


class Yardsticks:
    """Both yardsticks for one training set: the fixed answer is chosen once, here."""

    def __init__(self, train: Sequence[Mapping]) -> None:
        self.train = list(train)
        self.nn = NearestNeighbours(self.train)
        self.fixed_row, self.fixed_train_score = fixed_answer(self.train)

    def texts(self, rows: Sequence[Mapping]) -> dict[str, list[str]]:
        """Each yardstick's reply to each row."""
        fixed = self.train[self.fixed_row]["response"]
        return {
            "nearest_answer": [self.train[self.nn.nearest(r)[0]]["response"] for r in rows],
            "fixed_answer": [fixed] * len(rows),
        }

    def summary(self) -> dict:
        """What evaluation.json records about how the yardsticks were built."""
        return {
            "train_rows": len(self.train),
            "descriptions": DESCRIPTIONS,
            "fixed_answer": {
                "train_row": self.fixed_row,
                "mean_rouge_l_vs_other_train_answers": round(self.fixed_train_score, 4),
                "text": self.train[self.fixed_row]["response"],
            },
        }
