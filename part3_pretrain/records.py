"""The user's record files (.json, .jsonl, .csv) parsed with line numbers, and what their rows hold.

Shared by part 3's ``--corpus`` (pairs and conversations become pretraining documents) and part 4's
``--data`` (fine-tuning pairs); part 3 never imports part 4, so the parsing lives here.

* ``read_records(path)`` returns ``[(where, record)]``: ``where`` is the physical line (.jsonl,
  .csv: the line a record starts on) or the 1-based index in the list (.json, whose errors read
  ``<path>: record <N>: ...``). Every record is checked to be an object.
* ``FIELD_PAIRS`` are the (context, response) field names detected, ``detect_fields`` picks the
  first present.
* A JSON/JSONL record with a ``"messages"`` list is a conversation, ``[{"role": "system" | "user" |
  "assistant", "content": str}, ...]``; ``conversation_turns`` validates it: known roles,
  non-empty string contents, a system message only first, then user and assistant turns
  alternating from a user turn to a final assistant turn.

Every problem is one ``DataError`` line naming the file, the line (or record) and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from part3_pretrain.datafile import DataError, read_text

FIELD_PAIRS: tuple[tuple[str, str], ...] = (
    ("context", "response"),
    ("instruction", "response"),
    ("instruction", "output"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("input", "output"),
    ("input_text", "output_text"),
    ("query", "response"),
    ("user", "assistant"),
    ("customer", "agent"),
    ("message", "reply"),
    ("prompt", "response"),
    ("question", "response"),
    ("input", "response"),
)
JSON_LIST_KEYS: tuple[str, ...] = ("data", "train", "examples")
SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".csv")
MESSAGES = "messages"  # the key of a conversation record
ROLES: tuple[str, ...] = ("system", "user", "assistant")
SHOW_CHARS = 40  # how much of an offending value to quote in a message

# (location, record) where location is a physical line (jsonl, csv) or a 1-based list index (json)
Located = list[tuple[int, Any]]
RaiseAt = Callable[[str], NoReturn]


def show(value: Any) -> str:
    """repr of a value, shortened so one bad cell cannot flood the message."""
    text = repr(value)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, which is what the user wrote in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------
# Parsing


def suffix_of(path: Path, suffixes: Sequence[str] = SUFFIXES) -> str:
    """The file's lower-case suffix, refused unless it is one of ``suffixes``."""
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        shown = f"'{path.suffix}'" if path.suffix else "(no suffix)"
        raise DataError(path, f"unsupported file type {shown}; expected one of {', '.join(suffixes)}")
    return suffix


def _invalid_json(err: json.JSONDecodeError) -> str:
    return f"invalid JSON ({err.msg}) at column {err.colno}"


def parse_json(text: str, path: Path) -> Located:
    """Records of a .json file (a list, or a list under one of JSON_LIST_KEYS), located by their
    1-based index in the list."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, _invalid_json(err), err.lineno) from None
    if isinstance(data, dict):
        key = next((k for k in JSON_LIST_KEYS if k in data), None)
        if key is None:
            raise DataError(
                path, f"top-level JSON object has no list under {' / '.join(JSON_LIST_KEYS)}; keys seen: {sorted(data)}"
            )
        if not isinstance(data[key], list):
            raise DataError(path, f"'{key}' must be a list of objects, got {json_type(data[key])}")
        data = data[key]
    elif not isinstance(data, list):
        raise DataError(path, f"expected a list of objects at the top level, got {json_type(data)}")
    return list(enumerate(data, start=1))


def parse_jsonl(text: str, path: Path) -> Located:
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
            raise DataError(path, _invalid_json(err), lineno) from None
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


def parse_csv(text: str, path: Path) -> Located:
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


PARSERS: dict[str, Callable[[str, Path], Located]] = {".json": parse_json, ".jsonl": parse_jsonl, ".csv": parse_csv}


def read_records(path: str | os.PathLike, not_object: str = "expected a JSON object") -> Located:
    """Every record of a .json/.jsonl/.csv file with its location, each checked to be an object
    (``not_object`` starts the message for one that is not). No records is an error."""
    path = Path(path)
    suffix = suffix_of(path)
    located = PARSERS[suffix](read_text(path), path)
    if not located:
        raise DataError(path, "no records" + (" (only a header row)" if suffix == ".csv" else ""))
    for where, record in located:
        if not isinstance(record, dict):
            raise DataError(path, f"{not_object}, got {json_type(record)}", where, record=suffix == ".json")
    return located


def is_json_file(path: str | os.PathLike) -> bool:
    """Whether errors in ``path`` name a record index (.json) rather than a line."""
    return Path(path).suffix.lower() == ".json"


def raiser(path: str | os.PathLike, where: int) -> RaiseAt:
    """A function raising the one-line DataError for the record at ``where`` of ``path``."""

    def raise_at(problem: str) -> NoReturn:
        raise DataError(path, problem, where, record=is_json_file(path))

    return raise_at


# ---------------------------------------------------------------------------------------------
# Pair fields


def _keys_everywhere(records: list[dict]) -> set[str]:
    keys = set(records[0])
    for record in records[1:]:
        keys &= set(record)
    return keys


FIELDS_FIX = "pass --context-field and --response-field"


def detect_fields(records: list[dict], path: str | os.PathLike, fix: str = FIELDS_FIX) -> tuple[str, str]:
    """The (context, response) field names: the first FIELD_PAIRS pair found in the data.

    A pair present in every record wins; failing that, the first pair present in the first
    record is returned so the record lacking it is reported (with its line) by the loader.
    ``fix`` ends the message when no known pair is present.
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
        f"first record: {sorted(records[0])}; known pairs: {known}; {fix}",
    )


def text_field(record: dict, name: str, role: str, raise_at: RaiseAt) -> str:
    """The stripped, non-empty string under ``name``; anything else is reported via raise_at."""
    if name not in record:
        raise_at(f"missing {role} field '{name}'; record has keys {sorted(record)}")
    value = record[name]
    if not isinstance(value, str):
        raise_at(f"{role} field '{name}' must be a string, got {json_type(value)}")
    text = value.strip()
    if not text:
        raise_at(f"{role} field '{name}' is empty")
    return text


# ---------------------------------------------------------------------------------------------
# Conversations


def is_conversation(record: dict, path: str | os.PathLike) -> bool:
    """A JSON/JSONL record holding a ``"messages"`` conversation (never a CSV row: cells are text)."""
    return MESSAGES in record and Path(path).suffix.lower() in (".json", ".jsonl")


def _message(message: Any, i: int, raise_at: RaiseAt) -> dict:
    """Message ``i`` (1-based) as ``{"role", "content"}``, content stripped, or a one-line error."""
    at = f"message {i}"
    if not isinstance(message, dict):
        raise_at(f'{at} must be an object {{"role": ..., "content": ...}}, got {json_type(message)}')
    role = message.get("role")
    if role not in ROLES:
        raise_at(f"{at} has role {show(role)}; use one of {', '.join(ROLES)}")
    content = message.get("content")
    if not isinstance(content, str):
        raise_at(f"{at} ({role}) needs a string 'content', got {json_type(content)}")
    if not content.strip():
        raise_at(f"{at} ({role}) has empty content; remove the message or write its text")
    return {"role": role, "content": content.strip()}


FIRST_FIX = "start with a user message (a greeting can go in the system message)"


def _check_order(turns: list[dict], raise_at: RaiseAt) -> None:
    """System only first; then user, assistant, user, ... from a user turn to an assistant turn."""
    start = 1 if turns[0]["role"] == "system" else 0
    for i, turn in enumerate(turns[start:], start=start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if turn["role"] == "system":
            raise_at(f"message {i + 1} is a system message; a system message may only come first")
        if turn["role"] != expected:
            after = f"after a {turns[i - 1]['role']} message" if i > start else "first"
            fix = (
                "merge the two messages"
                if i > start
                else "start with a user message (a greeting can go in the system message)"
            )
            raise_at(f"message {i + 1} is a {turn['role']} message {after}; turns alternate user, assistant ({fix})")
    if len(turns) - start < 2:
        raise_at("the conversation has no assistant reply after a user message; add the reply")
    if turns[-1]["role"] != "assistant":
        raise_at(
            f"message {len(turns)} is a user message with no reply; end the conversation with the assistant's reply"
        )


def conversation_turns(record: dict, raise_at: RaiseAt) -> list[dict]:
    """The validated messages of a conversation record: ``[{"role", "content"}]``, contents stripped."""
    messages = record[MESSAGES]
    if not isinstance(messages, list) or not messages:
        shown = "an empty array" if messages == [] else json_type(messages)
        raise_at(f'\'{MESSAGES}\' must be a non-empty array of {{"role", "content"}} objects, got {shown}')
    turns = [_message(m, i, raise_at) for i, m in enumerate(messages, start=1)]
    _check_order(turns, raise_at)
    return turns
