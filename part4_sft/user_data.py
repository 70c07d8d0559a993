"""Load the user's own (context, response) fine-tuning pairs from .json, .jsonl or .csv.

``load_pairs(path)`` returns ``[{"context", "response", "quality", "line"}]`` in file order, or
raises one ``DataError`` whose text is a single line ``<path>:<line>: <problem>`` (for .json,
``<path>: record <N>: <problem>``), so a user can jump straight to the bad record. The whole
file is parsed and validated before anything is returned: there are no half-loaded results.

Field names come from explicit flags when given, else from ``FIELD_PAIRS`` (the first pair
present in the data). An optional quality column (explicit, else the first of
``QUALITY_FIELDS`` present) is parsed to a float, and ``filter_by_quality`` keeps rows at or
above a threshold.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

# DataError is part 3's (one error for every user data file); ``from .user_data import DataError`` keeps working
from part3_pretrain.datafile import DataError, read_text

FIELD_PAIRS: tuple[tuple[str, str], ...] = (
    ("context", "response"),
    ("instruction", "response"),
    ("instruction", "output"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("input", "output"),
)
QUALITY_FIELDS: tuple[str, ...] = ("high_quality", "quality", "rating", "score", "label")
JSON_LIST_KEYS: tuple[str, ...] = ("data", "train", "examples")
SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".csv")

_TRUE_WORDS = frozenset({"true", "yes"})
_FALSE_WORDS = frozenset({"false", "no"})
_SHOW_CHARS = 40  # how much of an offending value to quote in a message

# (location, record) where location is a physical line (jsonl, csv) or a 1-based list index (json)
Located = list[tuple[int, Any]]


def _show(value: Any) -> str:
    """repr of a value, shortened so one bad cell cannot flood the message."""
    text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."


def _json_type(value: Any) -> str:
    """The JSON name of a Python value's type, which is what the user wrote in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------
# Reading and parsing


def _suffix_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise DataError(path, f"unsupported file type ({shown}); expected one of {', '.join(SUFFIXES)}")
    return suffix


def _parse_json(text: str, path: Path) -> Located:
    """Records of a .json file, located by their 1-based index in the list."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON: {err.msg} (column {err.colno})", err.lineno) from None
    if isinstance(data, dict):
        key = next((k for k in JSON_LIST_KEYS if k in data), None)
        if key is None:
            raise DataError(
                path, f"top-level JSON object has no list under {' / '.join(JSON_LIST_KEYS)}; keys seen: {sorted(data)}"
            )
        if not isinstance(data[key], list):
            raise DataError(path, f"'{key}' must be a list of objects, got {_json_type(data[key])}")
        data = data[key]
    elif not isinstance(data, list):
        raise DataError(path, f"expected a list of objects at the top level, got {_json_type(data)}")
    return list(enumerate(data, start=1))


def _parse_jsonl(text: str, path: Path) -> Located:
    """Records of a .jsonl file, located by physical line; blank lines are skipped."""
    located: Located = []
    # split("\n"), not splitlines(): the latter also breaks on U+2028 etc. and would
    # make our line numbers disagree with the user's editor.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            located.append((lineno, json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataError(path, f"invalid JSON: {err.msg} (column {err.colno})", lineno) from None
    return located


def _csv_header(reader: Any, path: Path) -> list[str]:
    """The first non-blank row, checked to be usable as field names."""
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            line = reader.line_num
            if "" in header:
                raise DataError(path, f"header row has an empty column name (column {header.index('') + 1})", line)
            dupes = sorted({name for name in header if header.count(name) > 1})
            if dupes:
                raise DataError(path, f"header row repeats column name(s) {dupes}", line)
            return header
    raise DataError(path, "file is empty")


def _parse_csv(text: str, path: Path) -> Located:
    """Records of a .csv file (header row first), located by the line each record starts on."""
    # newline="" keeps quoted newlines inside a field; strict=True makes bad quoting an
    # error rather than a silently mangled field.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    located: Located = []
    start = 1  # line of the record being read, for errors raised inside csv itself
    try:
        header = _csv_header(reader, path)
        start = reader.line_num + 1
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                start = reader.line_num + 1
                continue  # blank line between records
            if len(row) != len(header):
                raise DataError(path, f"expected {len(header)} columns (as in the header), got {len(row)}", start)
            located.append((start, dict(zip(header, row, strict=False))))
            start = reader.line_num + 1
    except csv.Error as err:
        # An unterminated quote is only noticed at EOF; the record's first line is the useful one.
        raise DataError(path, f"CSV error in the record starting here: {err}", start) from None
    return located


_PARSERS: dict[str, Callable[[str, Path], Located]] = {
    ".json": _parse_json,
    ".jsonl": _parse_jsonl,
    ".csv": _parse_csv,
}


# ---------------------------------------------------------------------------------------------
# Field names


def _keys_everywhere(records: list[dict]) -> set[str]:
    keys = set(records[0])
    for record in records[1:]:
        keys &= set(record)
    return keys


def detect_fields(records: list[dict], path: str | os.PathLike) -> tuple[str, str]:
    """The (context, response) field names: the first FIELD_PAIRS pair found in the data.

    A pair present in every record wins; failing that, the first pair present in the first
    record is returned so the record lacking it is reported (with its line) by the loader.
    """
    if not records:
        raise DataError(path, "no records")
    everywhere = _keys_everywhere(records)
    for pair in FIELD_PAIRS:
        if pair[0] in everywhere and pair[1] in everywhere:
            return pair
    for pair in FIELD_PAIRS:
        if pair[0] in records[0] and pair[1] in records[0]:
            return pair
    known = ", ".join(f"{c}/{r}" for c, r in FIELD_PAIRS)
    raise DataError(
        path,
        f"cannot tell which fields hold context and response; keys in the "
        f"first record: {sorted(records[0])}; known pairs: {known}; "
        "pass --context-field and --response-field",
    )


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
        raise ValueError(f"unsupported type {_json_type(value)}")
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _text_field(record: dict, name: str, role: str, raise_at: Callable[[str], NoReturn]) -> str:
    """The stripped, non-empty string under ``name``; anything else is reported via raise_at."""
    if name not in record:
        raise_at(f"missing {role} field '{name}'; record has keys {sorted(record)}")
    value = record[name]
    if not isinstance(value, str):
        raise_at(f"{role} field '{name}' must be a string, got {_json_type(value)}")
    text = value.strip()
    if not text:
        raise_at(f"{role} field '{name}' is empty")
    return text


def _make_row(
    record: Any,
    where: int,
    path: Path,
    is_json: bool,
    fields: tuple[str, str],
    quality_field: str | None,
    quality_detected: bool,
) -> dict:
    def raise_at(problem: str) -> NoReturn:
        raise DataError(path, problem, where, record=is_json)

    context = _text_field(record, fields[0], "context", raise_at)
    response = _text_field(record, fields[1], "response", raise_at)
    quality = None
    if quality_field is not None:
        raw = record.get(quality_field)
        try:
            quality = parse_quality(raw)
        except ValueError:
            # A detected "label" column may hold categories; say where the name came from.
            how = " (auto-detected; pass --quality-field)" if quality_detected else ""
            raise_at(
                f"quality field '{quality_field}'{how} has unparseable value {_show(raw)}; "
                "expected a number, true/false or yes/no"
            )
    return {"context": context, "response": response, "quality": quality, "line": where}


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_pairs(
    path: str | os.PathLike,
    context_field: str | None = None,
    response_field: str | None = None,
    quality_field: str | None = None,
) -> list[dict]:
    """Load every (context, response[, quality]) pair of a .json/.jsonl/.csv file.

    Returns ``[{"context": str, "response": str, "quality": float | None, "line": int}]`` in
    file order, where ``line`` is the physical line (jsonl, csv) or the 1-based record index
    (json). Raises DataError on the first problem; nothing is returned from a bad file.
    """
    path = Path(path)
    suffix = _suffix_of(path)
    located = _PARSERS[suffix](read_text(path), path)
    is_json = suffix == ".json"
    if not located:
        raise DataError(path, "no records" + (" (only a header row)" if suffix == ".csv" else ""))
    for where, record in located:
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {_json_type(record)}", where, record=is_json)
    records = [record for _, record in located]
    fields = _resolve_fields(records, path, context_field, response_field)
    quality = _resolve_quality_field(records, path, quality_field)
    detected = quality_field is None
    return [_make_row(record, where, path, is_json, fields, quality, detected) for where, record in located]


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
