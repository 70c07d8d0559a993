"""Load the hand-written test split: real-looking customer messages the generator cannot produce.

``handwritten_test.jsonl`` (next to this module) holds customer messages written by hand, in
formats the synthetic generator never uses (typos and shorthand, formal letters, order ids like
``QX-77120`` or ``#k4821``, dates like ``23/10`` or ``the 5th of March``, amounts in pounds and
euros, products and carriers outside the slot pools), each with its intent, the specifics a good
reply must restate (``slots``, every value verbatim in the message) and two hand-written
references the rubric rates >= 4.0. ``load_handwritten`` validates every row and raises one
``DataError`` naming the file and line of the first problem; the split is scored beside ``test``
and ``test_unseen`` as ``test_handwritten``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from part3_pretrain.datafile import read_text
from part3_pretrain.domain import INTENTS, mentions
from part3_pretrain.slots import SLOT_NAMES

from .user_data import DataError

HANDWRITTEN_PATH = Path(__file__).resolve().parent / "handwritten_test.jsonl"
# Hand-written VALIDATION messages (other messages, other values; generic references): for choosing
# between variants (``bench/validation_probe.py --split handwritten``), never scored as a test set.
HANDWRITTEN_VAL_PATH = Path(__file__).resolve().parent / "handwritten_val.jsonl"
KEYS: tuple[str, ...] = ("id", "context", "intent", "slots", "reference", "reference_2")
_TEXT_KEYS = ("context", "reference", "reference_2")


def _problem(row: object) -> str | None:
    """What is wrong with one parsed row (None when it is valid)."""
    if not isinstance(row, Mapping):
        return f"expected a JSON object, got {type(row).__name__}"
    missing = [k for k in KEYS if k not in row]
    if missing:
        return f"missing key(s) {', '.join(missing)}; each row needs {', '.join(KEYS)}"
    if not isinstance(row["id"], int) or isinstance(row["id"], bool):
        return f"'id' must be an integer, got {row['id']!r}"
    empty = [k for k in _TEXT_KEYS if not isinstance(row[k], str) or not row[k].strip()]
    if empty:
        return f"{', '.join(empty)} must be non-empty text"
    if row["intent"] not in INTENTS:
        return f"unknown intent {row['intent']!r}; expected one of {', '.join(INTENTS)}"
    return _slot_problem(row["slots"], row["context"])


def _slot_problem(slots: object, context: str) -> str | None:
    """What is wrong with a row's slots: not an object, an unknown slot, or a value the message
    does not state verbatim (``domain.mentions``: case-insensitive, whole words)."""
    if not isinstance(slots, Mapping):
        return f"'slots' must be an object of slot -> value, got {type(slots).__name__}"
    for name, value in slots.items():
        if name not in SLOT_NAMES:
            return f"unknown slot {name!r}; expected one of {', '.join(SLOT_NAMES)}"
        if not isinstance(value, str) or not value.strip():
            return f"slot {name!r} must be non-empty text, got {value!r}"
        if not mentions(context, value):
            return f"slot {name}={value!r} is not mentioned in the context {context!r}"
    return None


def load_handwritten(path: str | os.PathLike = HANDWRITTEN_PATH) -> list[dict]:
    """The rows of a hand-written test file (JSONL, one row a line; blank lines skipped), each
    ``{"id", "context", "intent", "slots", "reference", "reference_2"}``. Bad JSON, a missing key,
    an unknown intent or slot, or a slot value the context does not mention raises one
    ``DataError`` naming the file and line; so does an id used twice."""
    rows: list[dict] = []
    seen: dict[int, int] = {}
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, f"not valid JSON ({err.msg} at column {err.colno})", line_no) from None
        problem = _problem(row)
        if problem is None and row["id"] in seen:
            problem = f"id {row['id']} is already used on line {seen[row['id']]}"
        if problem is not None:
            raise DataError(path, problem, line_no)
        seen[row["id"]] = line_no
        rows.append({k: (dict(row[k]) if k == "slots" else row[k]) for k in KEYS})
    return rows
