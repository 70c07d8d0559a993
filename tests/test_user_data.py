"""Tests for part4_sft.user_data: every format loads, and every bad file is one clear DataError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from part3_pretrain import datafile
from part4_sft.user_data import (
    FIELD_PAIRS,
    QUALITY_FIELDS,
    DataError,
    detect_fields,
    filter_by_quality,
    load_pairs,
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def error_of(path: Path, **kwargs: str) -> str:
    """The message of the DataError load_pairs raises, checked to be one line naming the file."""
    with pytest.raises(DataError) as info:
        load_pairs(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert path.name in message
    return message


PAIRS = [
    {"context": "Where is my order?", "response": "It ships today."},
    {"context": "Can I return it?", "response": "Yes, within 30 days."},
]


# --- formats ------------------------------------------------------------------------------


def test_jsonl_loads_in_order_with_physical_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(PAIRS[0]) + "\n  \n" + jsonl(PAIRS[1]))
    rows = load_pairs(path)
    assert rows == [
        {"context": "Where is my order?", "response": "It ships today.", "quality": None, "line": 1},
        {"context": "Can I return it?", "response": "Yes, within 30 days.", "quality": None, "line": 4},
    ]


@pytest.mark.parametrize("wrap", [None, "data", "train", "examples"])
def test_json_list_or_wrapped_list(tmp_path: Path, wrap: str | None) -> None:
    payload = PAIRS if wrap is None else {"meta": 1, wrap: PAIRS}
    rows = load_pairs(write(tmp_path, "d.json", json.dumps(payload, indent=2)))
    assert [r["context"] for r in rows] == ["Where is my order?", "Can I return it?"]
    assert [r["line"] for r in rows] == [1, 2]  # record index, not physical line


def test_csv_loads_with_quoted_multiline_field(tmp_path: Path) -> None:
    text = 'context,response\n"Hi, I need help",Sure\n"line one\nline two",Got it\nLast,One\n'
    rows = load_pairs(write(tmp_path, "d.csv", text))
    assert [r["context"] for r in rows] == ["Hi, I need help", "line one\nline two", "Last"]
    assert [r["line"] for r in rows] == [2, 3, 5]


def test_utf8_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbfcontext,response\r\nA,B\r\nC,D\r\n")
    rows = load_pairs(path)
    assert [(r["context"], r["response"], r["line"]) for r in rows] == [("A", "B", 2), ("C", "D", 3)]


def test_line_ends_inside_a_quoted_field_become_newlines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b'context,response\r\n"line one\r\nline two",Got it\r\nLast,One\r\n')
    rows = load_pairs(path)
    assert [(r["context"], r["line"]) for r in rows] == [("line one\nline two", 2), ("Last", 4)]


def test_whitespace_is_stripped_and_unicode_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"context": "  café \n", "response": "\tnaïve ✓ "}))
    assert load_pairs(path)[0]["context"] == "café"
    assert load_pairs(path)[0]["response"] == "naïve ✓"


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    assert len(load_pairs(write(tmp_path, "D.JSONL", jsonl(*PAIRS)))) == 2


# --- field names ------------------------------------------------------------------------


@pytest.mark.parametrize("pair", FIELD_PAIRS)
def test_each_common_field_pair_is_detected(tmp_path: Path, pair: tuple[str, str]) -> None:
    records = [{pair[0]: "ctx", pair[1]: "resp", "id": 7}]
    assert detect_fields(records, "x.jsonl") == pair
    rows = load_pairs(write(tmp_path, "d.jsonl", jsonl(*records)))
    assert (rows[0]["context"], rows[0]["response"]) == ("ctx", "resp")


def test_detection_prefers_pair_present_in_all_records() -> None:
    records = [{"instruction": "a", "response": "b", "output": "c"}, {"instruction": "a", "output": "c"}]
    assert detect_fields(records, "x.json") == ("instruction", "output")


def test_detection_failure_lists_keys_and_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"q": "a", "a": "b"}))
    message = error_of(path)
    assert "['a', 'q']" in message
    assert "--context-field" in message and "--response-field" in message


def test_detect_fields_with_no_records() -> None:
    with pytest.raises(DataError, match="no records"):
        detect_fields([], "x.json")


def test_explicit_field_flags_win(tmp_path: Path) -> None:
    record = {"context": "wrong", "response": "wrong", "msg": "ctx", "reply": "resp"}
    path = write(tmp_path, "d.jsonl", jsonl(record))
    row = load_pairs(path, context_field="msg", response_field="reply")[0]
    assert (row["context"], row["response"]) == ("ctx", "resp")


def test_one_explicit_flag_fills_the_other_from_known_names(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"system": "ctx", "answer": "resp"}))
    row = load_pairs(path, context_field="system")[0]
    assert (row["context"], row["response"]) == ("ctx", "resp")


def test_explicit_field_missing_is_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(PAIRS[0], {"context": "a", "reply": "b"}))
    message = error_of(path, context_field="context", response_field="reply")
    assert ":1:" in message and "missing response field 'reply'" in message


def test_same_field_for_both_is_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(PAIRS[0]))
    assert "both" in error_of(path, context_field="context", response_field="context")


# --- quality ----------------------------------------------------------------------------


def test_quality_values_are_parsed(tmp_path: Path) -> None:
    values = [1, 0, True, False, "yes", "No", "true", " FALSE ", 4.5, "3.25", "", None]
    expected = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 4.5, 3.25, None, None]
    records = [{"context": "c", "response": "r", "rating": v} for v in values]
    rows = load_pairs(write(tmp_path, "d.jsonl", jsonl(*records)))
    assert [r["quality"] for r in rows] == expected


def test_quality_field_order_and_csv(tmp_path: Path) -> None:
    assert QUALITY_FIELDS[0] == "high_quality"
    text = "context,response,score,high_quality\na,b,5,yes\nc,d,1,no\n"
    rows = load_pairs(write(tmp_path, "d.csv", text))
    assert [r["quality"] for r in rows] == [1.0, 0.0]  # high_quality beats score
    rows = load_pairs(write(tmp_path, "d.csv", text), quality_field="score")
    assert [r["quality"] for r in rows] == [5.0, 1.0]


def test_no_quality_field_gives_none(tmp_path: Path) -> None:
    rows = load_pairs(write(tmp_path, "d.json", json.dumps(PAIRS)))
    assert all(r["quality"] is None for r in rows)


def test_explicit_quality_field_absent_is_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(*PAIRS))
    assert "stars" in error_of(path, quality_field="stars")


@pytest.mark.parametrize("bad", ["great", "nan", "inf", [1], {"v": 1}])
def test_unparseable_quality_names_line(tmp_path: Path, bad: object) -> None:
    records = [
        {"context": "c", "response": "r", "quality": 1},
        {"context": "c", "response": "r", "quality": 0},
        {"context": "c", "response": "r", "quality": bad},
    ]
    message = error_of(write(tmp_path, "d.jsonl", jsonl(*records)))
    assert ":3:" in message and "quality" in message and "auto-detected" in message
    message = error_of(write(tmp_path, "d.jsonl", jsonl(*records)), quality_field="quality")
    assert ":3:" in message and "auto-detected" not in message


def rows_with(qualities: list[float | None]) -> list[dict]:
    return [{"context": "c", "response": "r", "quality": q, "line": i + 1} for i, q in enumerate(qualities)]


def test_filter_by_quality_threshold() -> None:
    rows = rows_with([1.0, 0.0, 4.5, None, 3.0])
    kept, stats = filter_by_quality(rows, 3.0)
    assert [r["line"] for r in kept] == [3, 5]  # None dropped: other rows are rated
    assert stats == {"total": 5, "kept": 2, "dropped": 3}


def test_filter_by_quality_none_threshold_keeps_all() -> None:
    rows = rows_with([1.0, 0.0, None])
    kept, stats = filter_by_quality(rows, None)
    assert kept == rows and stats == {"total": 3, "kept": 3, "dropped": 0}


def test_filter_by_quality_unrated_data_is_kept() -> None:
    rows = rows_with([None, None])
    kept, stats = filter_by_quality(rows, 1.0)
    assert kept == rows and stats["dropped"] == 0


def test_filter_by_quality_does_not_mutate_and_rejects_nan() -> None:
    rows = rows_with([1.0, 0.0])
    filter_by_quality(rows, 0.5)
    assert len(rows) == 2
    with pytest.raises(ValueError):
        filter_by_quality(rows, float("nan"))


# --- malformed files --------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in error_of(tmp_path / "nope.jsonl")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    assert "not a regular file" in error_of(tmp_path / "dir.json")


@pytest.mark.parametrize("name", ["d.txt", "d.parquet", "noext"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    assert "unsupported file type" in error_of(write(tmp_path, name, jsonl(*PAIRS)))


def test_not_utf8_names_line_of_bad_byte(tmp_path: Path) -> None:
    data = (jsonl(*PAIRS) + '{"context": "caf').encode() + b"\xe9" + b'", "response": "x"}\n'
    message = error_of(write(tmp_path, "d.jsonl", data))
    assert ":3:" in message and "UTF-8" in message
    assert f"offset {data.index(bytes([0xE9]))}" in message


@pytest.mark.parametrize("name,content", [("d.jsonl", ""), ("d.json", " \n\n"), ("d.csv", "\n")])
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    assert "empty" in error_of(write(tmp_path, name, content))


@pytest.mark.parametrize(
    "name,content", [("d.json", "[]"), ("d.json", '{"data": []}'), ("d.csv", "context,response\n")]
)
def test_no_records(tmp_path: Path, name: str, content: str) -> None:
    assert "no records" in error_of(write(tmp_path, name, content))


def test_bad_json_reports_json_line(tmp_path: Path) -> None:
    text = '[\n  {"context": "a", "response": "b"},\n  {"context": "a" "response": "b"}\n]'
    message = error_of(write(tmp_path, "d.json", text))
    assert ":3:" in message and "invalid JSON" in message and "delimiter" in message


def test_bad_jsonl_line(tmp_path: Path) -> None:
    text = jsonl(*PAIRS) + "\n" + '{"context": "a", "response": }\n'
    message = error_of(write(tmp_path, "d.jsonl", text))
    assert ":4:" in message and "invalid JSON" in message


@pytest.mark.parametrize("top", ['"hello"', "42", '{"rows": []}', '{"data": {"a": 1}}'])
def test_json_top_level_not_a_list(tmp_path: Path, top: str) -> None:
    error_of(write(tmp_path, "d.json", top))


def test_json_record_not_object_names_record(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "d.json", json.dumps([PAIRS[0], PAIRS[1], ["a", "b"]])))
    assert "record 3" in message and "array" in message


def test_jsonl_record_not_object_names_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "d.jsonl", jsonl(PAIRS[0], "just text")))
    assert ":2:" in message and "string" in message


@pytest.mark.parametrize(
    "bad,words",
    [
        ({"context": "a"}, "missing response field 'response'"),
        ({"context": 5, "response": "b"}, "must be a string, got number"),
        ({"context": "a", "response": None}, "must be a string, got null"),
        ({"context": "a", "response": ["b"]}, "must be a string, got array"),
        ({"context": "   ", "response": "b"}, "context field 'context' is empty"),
        ({"context": "a", "response": ""}, "response field 'response' is empty"),
    ],
)
def test_bad_record_json_and_jsonl(tmp_path: Path, bad: dict, words: str) -> None:
    records = [PAIRS[0], PAIRS[1], bad, PAIRS[0]]
    message = error_of(write(tmp_path, "d.json", json.dumps(records, indent=2)))
    assert "record 3" in message and words in message
    message = error_of(write(tmp_path, "d.jsonl", jsonl(*records)))
    assert ":3:" in message and words in message


def test_csv_multiline_field_then_bad_record_line(tmp_path: Path) -> None:
    text = 'context,response\nok,fine\n"first\nsecond\nthird",multi\n\n"  ",empty context\n'
    message = error_of(write(tmp_path, "d.csv", text))
    assert ":7:" in message and "context field 'context' is empty" in message


def test_csv_wrong_column_count(tmp_path: Path) -> None:
    text = 'context,response\n"a\nb",c\nx,y,z\n'
    message = error_of(write(tmp_path, "d.csv", text))
    assert ":4:" in message and "expected 2 columns" in message


def test_csv_unterminated_quote_names_record_start(tmp_path: Path) -> None:
    text = 'context,response\na,b\n"never closed,c\nd,e\n'
    message = error_of(write(tmp_path, "d.csv", text))
    assert ":3:" in message and "CSV error" in message


def test_csv_bad_header(tmp_path: Path) -> None:
    assert "repeats" in error_of(write(tmp_path, "d.csv", "context,context\na,b\n"))
    assert "empty column" in error_of(write(tmp_path, "d2.csv", "context,,response\na,b,c\n"))


def test_error_is_one_line_even_with_newlines_in_values(tmp_path: Path) -> None:
    record = {"context": "c", "response": "r", "quality": "very\ngood"}
    message = error_of(write(tmp_path, "d.jsonl", jsonl(record)))
    assert ":1:" in message


def test_data_error_format() -> None:
    assert str(DataError("a.jsonl", "bad", 3)) == "a.jsonl:3: bad"
    assert str(DataError("a.json", "bad", 3, record=True)) == "a.json: record 3: bad"
    assert str(DataError("a.csv", "bad")) == "a.csv: bad"
    assert isinstance(DataError("a", "b"), ValueError)
    assert DataError is datafile.DataError  # one error for part 3's corpus files and part 4's pairs


# --- more field names ---------------------------------------------------------------------

NEW_PAIRS = [
    ("input_text", "output_text"),
    ("query", "response"),
    ("user", "assistant"),
    ("customer", "agent"),
    ("message", "reply"),
    ("prompt", "response"),
    ("question", "response"),
    ("input", "response"),
]


def test_todays_pairs_come_first_so_existing_files_resolve_as_before() -> None:
    assert FIELD_PAIRS[:6] == (
        ("context", "response"),
        ("instruction", "response"),
        ("instruction", "output"),
        ("prompt", "completion"),
        ("question", "answer"),
        ("input", "output"),
    )
    assert set(NEW_PAIRS) <= set(FIELD_PAIRS[6:])
    # a record with an old pair and a new one keeps the old: prompt/completion before prompt/response
    assert detect_fields([{"prompt": "a", "completion": "b", "response": "c"}], "x") == ("prompt", "completion")
    assert detect_fields([{"question": "a", "answer": "b", "response": "c"}], "x") == ("question", "answer")
    assert detect_fields([{"input": "a", "output": "b", "response": "c"}], "x") == ("input", "output")


@pytest.mark.parametrize("pair", NEW_PAIRS)
def test_each_new_field_pair_loads(tmp_path: Path, pair: tuple[str, str]) -> None:
    path = write(tmp_path, "d.csv", f"{pair[0]},{pair[1]},stars\nWhere is it?,On its way.,5\n")
    row = load_pairs(path)[0]
    assert (row["context"], row["response"], row["line"]) == ("Where is it?", "On its way.", 2)


# --- conversations ------------------------------------------------------------------------

TURNS = [
    {"role": "system", "content": "You are a retail agent."},
    {"role": "user", "content": " Where is order #A1234? "},
    {"role": "assistant", "content": "It ships today."},
    {"role": "user", "content": "And the refund?"},
    {"role": "assistant", "content": "Issued yesterday."},
]


def test_conversation_rows_keep_their_turns_and_mix_with_pairs(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"messages": TURNS, "rating": 5}, {"query": "q", "response": "r"}))
    chat, pair = load_pairs(path)
    assert chat["context"] == "And the refund?" and chat["response"] == "Issued yesterday."
    assert chat["quality"] == 5.0 and chat["line"] == 1
    assert chat["turns"][1] == {"role": "user", "content": "Where is order #A1234?"}  # stripped
    assert [t["role"] for t in chat["turns"]] == ["system", "user", "assistant", "user", "assistant"]
    assert pair == {"context": "q", "response": "r", "quality": None, "line": 2}
    rows = load_pairs(write(tmp_path, "d.json", json.dumps({"data": [{"messages": TURNS[1:3]}]})))
    assert rows[0]["turns"] == [{"role": "user", "content": "Where is order #A1234?"}, TURNS[2]]


def _messages(*roles_contents: tuple) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in roles_contents]}


@pytest.mark.parametrize(
    "bad,words",
    [
        ({"messages": "hi"}, "'messages' must be a non-empty array"),
        ({"messages": []}, "got an empty array"),
        ({"messages": ["hi"]}, "message 1 must be an object"),
        (_messages(("bot", "hi"), ("assistant", "x")), "message 1 has role 'bot'; use one of system, user, assistant"),
        (_messages(("user", 5), ("assistant", "x")), "message 1 (user) needs a string 'content', got number"),
        (_messages(("user", "hi"), ("assistant", " ")), "message 2 (assistant) has empty content"),
        (_messages(("user", "hi"), ("system", "x"), ("assistant", "y")), "message 2 is a system message"),
        (_messages(("assistant", "Hello!"), ("user", "hi"), ("assistant", "y")), "start with a user message"),
        (_messages(("user", "a"), ("user", "b"), ("assistant", "y")), "after a user message; turns alternate"),
        (_messages(("system", "s"), ("user", "a")), "no assistant reply"),
        (_messages(("user", "a"), ("assistant", "b"), ("user", "thanks")), "message 3 is a user message with no reply"),
    ],
)
def test_bad_conversation_names_line_and_fix(tmp_path: Path, bad: dict, words: str) -> None:
    records = [{"messages": TURNS}, {"query": "q", "response": "r"}, bad]
    message = error_of(write(tmp_path, "d.jsonl", jsonl(*records)))
    assert ":3:" in message and words in message
    message = error_of(write(tmp_path, "d.json", json.dumps(records)))
    assert "record 3" in message and words in message


def test_field_flags_apply_to_pair_rows_only(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl({"messages": TURNS}, {"q": "a", "a": "b"}))
    chat, pair = load_pairs(path, context_field="q", response_field="a")
    assert chat["response"] == "Issued yesterday." and (pair["context"], pair["response"]) == ("a", "b")
    assert load_pairs(write(tmp_path, "c.jsonl", jsonl({"messages": TURNS})), context_field="q")[0]["turns"]


def test_a_messages_column_in_csv_is_an_ordinary_field(tmp_path: Path) -> None:
    rows = load_pairs(write(tmp_path, "d.csv", "messages,context,response\nx,a,b\n"))
    assert "turns" not in rows[0] and rows[0]["context"] == "a"
