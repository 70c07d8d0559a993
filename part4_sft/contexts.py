"""The one context key: what counts as "the same message" in every duplicate and overlap check.

Case, punctuation and whitespace are ignored (``#`` and ``$`` are kept, so ``#A1`` and ``A1``, or
``$5`` and ``5``, stay different): a casual variant ("hi my order #A1 ...") of a training
context must count as the same context when keeping evaluation contexts out of training. The
synthetic generator deduplicates with it, the splits check train/test overlap with it, and user
data is grouped by it before the seeded split.

``row_key`` is the key of a data row: its context's, or for a conversation (a row with "turns")
the key of the conversation before its final reply (the messages' texts, one per line), so a
one-turn conversation and the pair with the same message share a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def context_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form of a context."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s#$]", "", text.lower())).strip()


def row_key(row: Mapping) -> str:
    """The context key of a row: of its context, or of a conversation before its final reply."""
    turns = row.get("turns")
    if not turns:
        return context_key(row["context"])
    return context_key("\n".join(t["content"] for t in turns[:-1]))
