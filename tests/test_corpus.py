"""Tests for part3_pretrain/corpus.py: the generated support corpus and loading user text files.
The documents themselves (exchanges and reference drills) are tested in test_domain.py."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from part3_pretrain.agents import agent_documents
from part3_pretrain.corpus import (
    DIALOGUE_N_DOCS,
    corpus_parts,
    corpus_stats,
    generate_corpus,
    load_corpus_files,
)
from part3_pretrain.datafile import DataError
from part3_pretrain.documents import retail_documents
from part3_pretrain.domain import BOILERPLATE, RUDE_CLOSES, RUDE_OPENERS, reference_drills, template_leaks
from part3_pretrain.slots import find_heldout_leaks

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>")
REPO_ROOT = Path(__file__).resolve().parents[1]


@cache
def default_corpus() -> tuple[list[str], float]:
    """The default corpus and the seconds it took (generated once per test session)."""
    start = time.perf_counter()
    docs = generate_corpus()
    return docs, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Generation


def test_same_seed_same_corpus_different_seed_different() -> None:
    assert generate_corpus(300, seed=1) == generate_corpus(300, seed=1)
    assert generate_corpus(300, seed=1) != generate_corpus(300, seed=2)


def test_identical_across_processes_with_different_hash_seeds() -> None:
    # Set or dict iteration that depends on string hashing would differ between these runs.
    code = (
        "import hashlib; from part3_pretrain.corpus import generate_corpus; "
        "print(hashlib.sha256('\\x00'.join(generate_corpus(200, seed=3)).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_generation_does_not_touch_global_rng() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_corpus(100, seed=0)
    assert random.random() == expected


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_n_docs_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="n_docs"):
        generate_corpus(bad)  # type: ignore[arg-type]


def test_two_thirds_exchanges_one_third_drills_and_documents_on_request() -> None:
    docs = generate_corpus(42, seed=2)
    assert corpus_parts(42) == {"exchanges": 28, "documents": 0, "drills": 14}
    assert sorted(docs) == sorted(agent_documents(28, 2) + reference_drills(14, 2))
    with_docs = generate_corpus(42, seed=2, documents_share=0.25)
    assert corpus_parts(42, 0.25) == {"exchanges": 18, "documents": 10, "drills": 14}
    assert sorted(with_docs) == sorted(agent_documents(18, 2) + retail_documents(10, 2) + reference_drills(14, 2))
    with pytest.raises(ValueError, match="documents_share"):
        generate_corpus(42, documents_share=0.9)


def test_exchanges_hold_agents_of_every_quality() -> None:
    # The base models support text as it is: careful replies and flawed ones, in about the
    # proportions of part 4's pairs (which the rubric then filters); not the best replies only.
    mixed, careful = agent_documents(400, 0), agent_documents(400, 0, careful=True)
    assert mixed != careful
    restated = [doc for doc in mixed if "Agent: " in doc]
    assert len(restated) == 400
    rude = sum(any(line.lower() in doc.lower() for line in RUDE_CLOSES + RUDE_OPENERS) for doc in mixed)
    boiler = sum(any(line in doc for line in BOILERPLATE) for doc in mixed)
    assert 20 <= rude <= 100 and 40 <= boiler <= 130, (rude, boiler)
    assert not any(any(line in doc for line in BOILERPLATE) for doc in careful)


def test_default_corpus_has_no_heldout_value_or_phrasing() -> None:
    # Part 4 evaluates on held-out slot values and (test_unseen) held-out phrasing: the base model
    # must have seen neither.
    docs, _ = default_corpus()
    assert len(docs) == DIALOGUE_N_DOCS
    assert find_heldout_leaks(docs) == []
    assert template_leaks(docs) == []
    assert not any(tok in doc for doc in docs for tok in SPECIAL_TOKENS)


def test_default_corpus_size_speed_and_variety() -> None:
    docs, elapsed = default_corpus()
    stats = corpus_stats(docs)
    assert stats["n_docs"] == DIALOGUE_N_DOCS == len(set(docs))
    assert 5_000_000 <= stats["bytes"] <= 8_000_000
    assert elapsed < 30


def test_corpus_stats_hand_computed() -> None:
    docs = ["Hello there. Hello there!\nWhat? ok", "ok. $23.99"]
    # sentences: "Hello there", "Hello there", "What", "ok", "ok", "$23", "99"
    assert corpus_stats(docs) == {"n_docs": 2, "bytes": len("".join(docs).encode()), "distinct_sentences": 5}
    assert corpus_stats([]) == {"n_docs": 0, "bytes": 0, "distinct_sentences": 0}


# ---------------------------------------------------------------------------------------------
# Loading user files


def test_load_txt_splits_on_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("first doc\nline two\n\n\nsecond doc\n   \n\nthird\n", encoding="utf-8")
    assert load_corpus_files([path]) == ["first doc\nline two", "second doc", "third"]


def test_load_txt_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes("\ufeffone\r\n\r\ntwo\r\n".encode("utf-8"))
    assert load_corpus_files([str(path)]) == ["one", "two"]


def test_load_jsonl_and_keep_file_order(tmp_path: Path) -> None:
    jl = tmp_path / "b.jsonl"
    jl.write_text(
        json.dumps({"text": "Customer: hi\nAgent: hello", "id": 1}) + "\n\n" + json.dumps({"text": "second"}) + "\n",
        encoding="utf-8",
    )
    txt = tmp_path / "c.txt"
    txt.write_text("from txt", encoding="utf-8")
    assert load_corpus_files([txt, jl]) == ["from txt", "Customer: hi\nAgent: hello", "second"]
    assert load_corpus_files([]) == []


def _error(tmp_path: Path, name: str, content: bytes | None) -> str:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_corpus_files([path])
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("missing.txt", None, ": no such file"),
        ("empty.txt", b"", ": file is empty"),
        ("blank.txt", b"  \n\n\t\n", ": file is empty"),
        ("empty.jsonl", b"\n\n", ": file is empty"),
        ("bad.txt", b"hello\xffworld", ": not valid UTF-8 (byte 0xff at offset 5)"),
        ("notes.md", b"hello", "unsupported file type '.md'"),
        ("noext", b"hello", "unsupported file type"),
    ],
)
def test_file_errors(tmp_path: Path, name: str, content: bytes | None, expected: str) -> None:
    assert expected in _error(tmp_path, name, content)


@pytest.mark.parametrize(
    "lines,line_no,expected",
    [
        (['{"text": "ok"}', '{"text": "a" "b"}'], 2, "invalid JSON (Expecting ',' delimiter)"),
        (['{"text": "ok"}', "", '{"body": "x"}'], 3, 'missing string field "text"'),
        (['{"text": 5}'], 1, 'missing string field "text"'),
        (['["text"]'], 1, 'missing string field "text"'),
        (['{"text": "  "}'], 1, 'field "text" is empty'),
        (
            [
                '{"text": "ok"}',
                '{"text": "x\\ny"',
            ],
            2,
            "invalid JSON",
        ),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, lines: list[str], line_no: int, expected: str) -> None:
    message = _error(tmp_path, "data.jsonl", "\n".join(lines).encode())
    assert f"data.jsonl:{line_no}: " in message and expected in message


def test_directory_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "dir.txt"
    folder.mkdir()
    assert "is a directory" in _error(tmp_path, "dir.txt", None)


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------------------------------------
# Support pairs and conversations as corpus files

CHAT = {
    "messages": [
        {"role": "system", "content": "You are a helpful retail agent."},
        {"role": "user", "content": "Where is order #A1234?"},
        {"role": "assistant", "content": "It ships today."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You're welcome."},
    ]
}


def test_pairs_and_conversations_become_dialogue_documents(tmp_path: Path) -> None:
    jl = tmp_path / "mixed.jsonl"
    rows = [{"query": " Where is it? ", "response": "On its way."}, CHAT, {"text": "plain\ntext "}]
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert load_corpus_files([jl]) == [
        "Customer: Where is it?\nAgent: On its way.",
        "System: You are a helpful retail agent.\nCustomer: Where is order #A1234?\nAgent: It ships today.\n"
        "Customer: Thanks!\nAgent: You're welcome.",
        "plain\ntext ",  # a text row stays as written
    ]
    js = tmp_path / "pairs.json"
    js.write_text(json.dumps({"data": [{"question": "Q1", "answer": "A1"}, CHAT]}), encoding="utf-8")
    assert load_corpus_files([js])[0] == "Customer: Q1\nAgent: A1"
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text('customer,agent\n"hi, there",hello\n', encoding="utf-8")
    assert load_corpus_files([csv_file]) == ["Customer: hi, there\nAgent: hello"]


@pytest.mark.parametrize(
    "name,rows,where,expected",
    [
        ("bad.jsonl", [CHAT, {"messages": [{"role": "bot", "content": "hi"}]}], "bad.jsonl:2: ", "role 'bot'"),
        ("bad.json", [CHAT, {"messages": [{"role": "user", "content": "hi"}]}], "record 2", "no assistant reply"),
        ("bad.jsonl", [{"query": "a", "response": "b"}, {"query": "c"}], "bad.jsonl:2: ", "missing response"),
        ("bad.jsonl", [{"q": "a", "a": "b"}], "bad.jsonl:1: ", 'a "text" field'),
    ],
)
def test_bad_pair_or_conversation_rows_name_file_and_line(
    tmp_path: Path, name: str, rows: list, where: str, expected: str
) -> None:
    text = json.dumps(rows) if name.endswith(".json") else "".join(json.dumps(r) + "\n" for r in rows)
    message = _error(tmp_path, name, text.encode())
    assert where in message and expected in message
