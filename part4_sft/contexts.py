"""The one context key: what counts as "the same message" in every duplicate and overlap check.

Case, punctuation and whitespace are ignored (``#`` and ``$`` are kept, so ``#A1`` and ``A1``, or
``$5`` and ``5``, stay different): a casual variant ("hi my order #A1 ...") of a training
context must count as the same context when keeping evaluation contexts out of training. The
synthetic generator deduplicates with it, the splits check train/test overlap with it, and user
data is grouped by it before the seeded split.
"""

from __future__ import annotations

import re


def context_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form of a context."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s#$]", "", text.lower())).strip()
