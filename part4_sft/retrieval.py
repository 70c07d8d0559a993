"""Retrieval in the prompt (``--retrieve K``): the K training exchanges most like a message, before it.

A small model that must write a 150-word answer from a 15-word message has little to go on; the
answer a human gave to the most similar training message (the ``nearest_answer`` yardstick) is a
strong start. With ``--retrieve K``, every row (training, validation, test) gets under
"retrieved" the K training exchanges whose messages share the most words with its message
(``yardsticks.NearestNeighbours``, Jaccard), as user and assistant turns, the most similar last,
next to the message. ``examples.py`` puts them after a system message and before the row's own
turns, masked out of the loss; when the context is short they are dropped first, whole, least
similar first (``examples.fit_with_retrieved``). So the model is trained to use them and
evaluated with them in the same way.

Only TRAINING rows are ever retrieved, and a training row never retrieves a row with its own
message (``contexts.row_key``): at training time the model must not learn to copy its own answer,
which no test message has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .splits import DatasetSplits
from .yardsticks import NearestNeighbours


def exchange(row: Mapping) -> list[dict]:
    """A training row as one retrieved exchange: its message and its answer (for a conversation,
    its last user message and final reply)."""
    return [{"role": "user", "content": row["context"]}, {"role": "assistant", "content": row["response"]}]


def retrieved_turns(nn: NearestNeighbours, row: Mapping, k: int, exclude_same: bool) -> list[dict]:
    """The turns of the ``k`` training exchanges most similar to ``row``, least similar first."""
    nearest = nn.nearest(row, k, exclude_same=exclude_same)
    return [turn for i in reversed(nearest) for turn in exchange(nn.train[i])]


def with_retrieved(rows: Sequence[Mapping], nn: NearestNeighbours, k: int, exclude_same: bool) -> list[dict]:
    """Copies of ``rows``, each with its "retrieved" turns."""
    return [{**r, "retrieved": retrieved_turns(nn, r, k, exclude_same)} for r in rows]


def add_retrieved(splits: DatasetSplits, k: int) -> DatasetSplits:
    """The splits with ``k`` retrieved training exchanges on every row (unchanged for k = 0):
    training rows never retrieve their own message; evaluation rows retrieve training rows only."""
    if k <= 0:
        return splits
    nn = NearestNeighbours(splits.train)
    return replace(
        splits,
        train=with_retrieved(splits.train, nn, k, exclude_same=True),
        val=with_retrieved(splits.val, nn, k, exclude_same=False),
        test=with_retrieved(splits.test, nn, k, exclude_same=False),
        test_unseen=with_retrieved(splits.test_unseen, nn, k, exclude_same=False),
        test_handwritten=with_retrieved(splits.test_handwritten, nn, k, exclude_same=False),
    )
