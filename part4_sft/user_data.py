"""Load the user's own fine-tuning data from .json, .jsonl or .csv: (context, response) pairs and
chat conversations.

``load_pairs(path)`` returns ``[{"context", "response", "quality", "line"}]`` in file order, or
raises one ``DataError`` whose text is a single line ``<path>:<line>: <problem>`` (for .json,
``<path>: record <N>: <problem>``), so a user can jump straight to the bad record. The whole
file is parsed and validated before anything is returned: there are no half-loaded results.

Pair field names come from explicit flags when given, else from ``FIELD_PAIRS`` (the first pair
present in the data). A JSON/JSONL record ``{"messages": [{"role", "content"}, ...]}`` is a
conversation (system, then user and assistant turns alternating, validated by part 3's
``records.conversation_turns``): its row also has ``"turns"``, its context is the last user
message and its response the last assistant message. A file may hold both kinds of row. An
optional quality column (explicit, else the first of ``QUALITY_FIELDS`` present) is parsed to a
float, and ``filter_by_quality`` keeps rows at or above a threshold.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

# The record parsing and field detection are part 3's (its --corpus reads these files too);
# ``from .user_data import DataError, FIELD_PAIRS, detect_fields`` keeps working.
from part3_pretrain.datafile import DataError
from part3_pretrain.records import (
    FIELD_PAIRS,
    JSON_LIST_KEYS,
    SUFFIXES,
    RaiseAt,
    conversation_turns,
    detect_fields,
    is_conversation,
    json_type,
    raiser,
    read_records,
    show,
    text_field,
)

__all__ = [
    "FIELD_PAIRS",
    "JSON_LIST_KEYS",
    "QUALITY_FIELDS",
    "SUFFIXES",
    "DataError",
    "detect_fields",
    "filter_by_quality",
    "load_pairs",
    "parse_quality",
]

QUALITY_FIELDS: tuple[str, ...] = ("high_quality", "quality", "rating", "score", "label")

_TRUE_WORDS = frozenset({"true", "yes"})
_FALSE_WORDS = frozenset({"false", "no"})


# ---------------------------------------------------------------------------------------------
# Field names


def _first_present(names: list[str], records: list[dict], exclude: str) -> str | None:
    """The first of ``names`` (in order, without repeats) that the first record has."""
    for name in dict.fromkeys(names):
        if name != exclude and name in records[0]:
            return name
    return None


def _resolve_fields(
    records: list[dict], path: Path, context_field: str | None, response_field: str | None
) -> tuple[str, str]:
    """Explicit flags win; a missing half is filled from the FIELD_PAIRS names present."""
    if context_field is None and response_field is None:
        return detect_fields(records, path)
    context = context_field or _first_present([c for c, _ in FIELD_PAIRS], records, exclude=response_field or "")
    response = response_field or _first_present([r for _, r in FIELD_PAIRS], records, exclude=context_field or "")
    if context is None or response is None:
        flag = "--context-field" if context is None else "--response-field"
        raise DataError(
            path, f"cannot detect the other field; keys in the first record: {sorted(records[0])}; pass {flag} as well"
        )
    if context == response:
        raise DataError(path, f"context and response fields are both '{context}'")
    return context, response


def _resolve_quality_field(records: list[dict], path: Path, quality_field: str | None) -> str | None:
    """Explicit flag (must exist somewhere), else the first QUALITY_FIELDS name seen, else None."""
    if quality_field is not None:
        if not any(quality_field in record for record in records):
            raise DataError(
                path, f"quality field '{quality_field}' is in no record; keys in the first record: {sorted(records[0])}"
            )
        return quality_field
    for name in QUALITY_FIELDS:
        if any(name in record for record in records):
            return name
    return None


# ---------------------------------------------------------------------------------------------
# Values


def parse_quality(value: Any) -> float | None:
    """A quality value as a float: bools and yes/no -> 1.0/0.0, numbers as is, blank -> None.

    Raises ValueError for anything else (including NaN/inf, which would break comparisons).
    """
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _TRUE_WORDS:
            return 1.0
        if word in _FALSE_WORDS:
            return 0.0
        number = float(word)  # ValueError for non-numeric text
    else:
        raise ValueError(f"unsupported type {json_type(value)}")
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _quality(record: dict, quality_field: str | None, detected: bool, raise_at: RaiseAt) -> float | None:
    """The record's quality value, parsed (None without a quality field)."""
    if quality_field is None:
        return None
    raw = record.get(quality_field)
    try:
        return parse_quality(raw)
    except ValueError:
        # A detected "label" column may hold categories; say where the name came from.
        how = " (auto-detected; pass --quality-field)" if detected else ""
        raise_at(
            f"quality field '{quality_field}'{how} has unparseable value {show(raw)}; "
            "expected a number, true/false or yes/no"
        )


def _make_row(record: dict, raise_at: RaiseAt, fields: tuple[str, str] | None) -> dict:
    """A pair row, or (``fields`` None) a conversation row: its last user message is the context,
    its last assistant message the response, and every message is kept under "turns"."""
    if fields is None:
        turns = conversation_turns(record, raise_at)
        return {"context": turns[-2]["content"], "response": turns[-1]["content"], "turns": turns}
    return {
        "context": text_field(record, fields[0], "context", raise_at),
        "response": text_field(record, fields[1], "response", raise_at),
    }


def _pair_fields(
    path: Path, records: list[dict], conversation: list[bool], context_field: str | None, response_field: str | None
) -> tuple[str, str] | None:
    """The pair rows' (context, response) field names; None when every row is a conversation (the
    field flags then have nothing to name: ``--test-data`` of conversations beside pairs)."""
    pairs = [r for r, is_conv in zip(records, conversation, strict=True) if not is_conv]
    return _resolve_fields(pairs, path, context_field, response_field) if pairs else None


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_pairs(
    path: str | os.PathLike,
    context_field: str | None = None,
    response_field: str | None = None,
    quality_field: str | None = None,
) -> list[dict]:
    """Load every (context, response[, quality]) pair and conversation of a .json/.jsonl/.csv file.

    Returns ``[{"context": str, "response": str, "quality": float | None, "line": int}]`` in
    file order, where ``line`` is the physical line (jsonl, csv) or the 1-based record index
    (json). A ``"messages"`` record (JSON/JSONL) also has ``"turns"``, its validated messages;
    its context is the last user message and its response the last assistant message. A file
    may hold both kinds. Raises DataError on the first problem; nothing is returned from a bad
    file.
    """
    path = Path(path)
    located = read_records(path)
    records = [record for _, record in located]
    conversation = [is_conversation(record, path) for record in records]
    fields = _pair_fields(path, records, conversation, context_field, response_field)
    quality = _resolve_quality_field(records, path, quality_field)
    rows = []
    for (where, record), is_conv in zip(located, conversation, strict=True):
        raise_at = raiser(path, where)
        row = _make_row(record, raise_at, None if is_conv else fields)
        quality_value = _quality(record, quality, quality_field is None, raise_at)
        rows.append({"context": row["context"], "response": row["response"], "quality": quality_value, "line": where})
        if is_conv:
            rows[-1]["turns"] = row["turns"]
    return rows


def filter_by_quality(rows: list[dict], min_quality: float | None) -> tuple[list[dict], dict]:
    """Keep rows whose quality >= min_quality; returns (kept, {"total", "kept", "dropped"}).

    Rows without a quality are kept only when no row has one (the threshold then has
    nothing to act on); ``min_quality=None`` keeps everything.
    """
    if min_quality is not None and not math.isfinite(min_quality):
        raise ValueError(f"min_quality must be a finite number, got {min_quality!r}")
    if min_quality is None or all(row["quality"] is None for row in rows):
        kept = list(rows)
    else:
        kept = [row for row in rows if row["quality"] is not None and row["quality"] >= min_quality]
    return kept, {"total": len(rows), "kept": len(kept), "dropped": len(rows) - len(kept)}
