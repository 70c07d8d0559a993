"""Pretraining text for part 3: the generated retail support corpus, or the user's own files.

``generate_corpus(n_docs, seed)`` (``DIALOGUE_N_DOCS`` documents by default) draws on the one
retail world of ``part3_pretrain.domain``:

* two thirds are ``domain.dialogue_documents``, one "Customer: <message>\nAgent: <good reply>"
  exchange each, in the SFT generator's own wording (train-side templates only) with slot values
  from open-ended pools (``open_values``): pseudo-word names, brands and couriers, random order
  ids, amounts and promo codes, so a model can only restate a specific by reading it;
* one third are ``domain.reference_drills``: a customer lists 1-4 ids, names, products, carriers,
  amounts or codes and the agent repeats them verbatim, dense practice at copying.

The documents hold no held-out slot value (the open pools exclude them) and no held-out phrasing
(``domain.template_leaks``); the tests check both. Generation uses seeded ``random.Random``
instances only, so the output is identical in every process.

(An earlier "generic" corpus with its own table of 25 intents lost every ablation it was in,
README rows G and "previous default", and was removed: one retail world, in ``domain.py``.)

``load_corpus_files(paths)`` reads the user's own text instead (.txt: documents separated by
blank lines; .jsonl: one ``{"text": ...}`` object per line), raising ``datafile.DataError`` with
a one-line message naming the file (and line) on any problem.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

from part3_pretrain.datafile import DataError, read_text
from part3_pretrain.domain import dialogue_documents, reference_drills

# ~7.5 MB at ~250 bytes a document; a few seconds on one core.
DIALOGUE_N_DOCS = 30000
SUFFIXES = (".txt", ".jsonl")


def _dialogue_corpus(n_docs: int, seed: int) -> list[str]:
    """Two thirds exchanges in the SFT generator's wording, one third reference drills, shuffled."""
    docs = dialogue_documents(n_docs - n_docs // 3, seed) + reference_drills(n_docs // 3, seed)
    random.Random(f"dialogue-corpus-{seed}").shuffle(docs)
    return docs


def generate_corpus(n_docs: int = DIALOGUE_N_DOCS, seed: int = 0) -> list[str]:
    """``n_docs`` synthetic support documents (see the module docstring); the same (n_docs, seed)
    gives the same list."""
    if isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 1:
        raise ValueError(f"n_docs must be an integer >= 1, got {n_docs!r}")
    return _dialogue_corpus(n_docs, seed)


_SENTENCE_SPLIT = re.compile(r"[.!?\n]+")


def corpus_stats(docs: Sequence[str]) -> dict:
    """``{"n_docs", "bytes", "distinct_sentences"}``; sentences are split on . ! ? and newlines."""
    sentences = {s.strip() for d in docs for s in _SENTENCE_SPLIT.split(d)}
    sentences.discard("")
    return {
        "n_docs": len(docs),
        "bytes": sum(len(d.encode("utf-8")) for d in docs),
        "distinct_sentences": len(sentences),
    }


# ---------------------------------------------------------------------------------------------
# The user's own files


def _txt_docs(text: str) -> list[str]:
    # A blank line is empty or whitespace-only; one or more of them separate documents.
    blocks = re.split(r"\n[ \t]*\n(?:[ \t]*\n)*", text)
    return [b.strip("\n") for b in blocks if b.strip()]


def _jsonl_docs(text: str, shown: str | os.PathLike) -> list[str]:
    docs = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(shown, f"invalid JSON ({err.msg})", lineno) from None
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise DataError(shown, 'missing string field "text"', lineno)
        if not value.strip():
            raise DataError(shown, 'field "text" is empty', lineno)
        docs.append(value)
    return docs


def load_corpus_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Documents from the user's .txt files (split on blank lines) and .jsonl files (one
    ``{"text": ...}`` per line), in the order given. Any problem raises ``DataError``."""
    docs: list[str] = []
    for shown in paths:
        path = Path(shown)
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise DataError(shown, f"unsupported file type {suffix or '(none)'!r}; expected .txt or .jsonl")
        text = read_text(path, shown)
        docs.extend(_txt_docs(text) if suffix == ".txt" else _jsonl_docs(text, shown))
    return docs
