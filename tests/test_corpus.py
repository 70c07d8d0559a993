"""Tests for part3_pretrain/corpus.py: the synthetic support corpus (every kind) and loading user
text files. The "dialogue" documents themselves are tested in test_domain.py."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from part3_pretrain.corpus import (
    CORPUS_KINDS,
    DEFAULT_N_DOCS,
    DIALOGUE_N_DOCS,
    INTENTS,
    CorpusError,
    corpus_stats,
    generate_corpus,
    generate_dialogue,
    generate_labeled_corpus,
    generate_ticket,
    load_corpus_files,
)
from part3_pretrain.domain import dialogue_documents, reference_drills, template_leaks
from part3_pretrain.slots import find_heldout_leaks, slot_values

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def labeled() -> list[tuple[str, str]]:
    return generate_labeled_corpus(2000, seed=5)


@cache
def default_corpus(kind: str) -> tuple[list[str], float]:
    """The default corpus of ``kind`` and the seconds it took (generated once per test session)."""
    start = time.perf_counter()
    docs = generate_corpus(kind=kind)
    return docs, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Generation


@pytest.mark.parametrize("kind", CORPUS_KINDS)
def test_same_seed_same_corpus_different_seed_different(kind: str) -> None:
    assert generate_corpus(300, seed=1, kind=kind) == generate_corpus(300, seed=1, kind=kind)
    assert generate_corpus(300, seed=1, kind=kind) != generate_corpus(300, seed=2, kind=kind)
    if kind == "generic":  # "dialogue" and "mixed" shuffle their parts together
        assert generate_corpus(50, seed=1, kind=kind) == generate_corpus(300, seed=1, kind=kind)[:50]


def test_identical_across_processes_with_different_hash_seeds() -> None:
    # Set or dict iteration that depends on string hashing would differ between these runs.
    code = (
        "import hashlib; from part3_pretrain.corpus import CORPUS_KINDS, generate_corpus; "
        "print([hashlib.sha256('\\x00'.join(generate_corpus(200, seed=3, kind=k)).encode()).hexdigest() "
        "for k in CORPUS_KINDS])"
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


@pytest.mark.parametrize("kind", CORPUS_KINDS)
def test_generation_does_not_touch_global_rng(kind: str) -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_corpus(100, seed=0, kind=kind)
    assert random.random() == expected


@pytest.mark.parametrize("kind", CORPUS_KINDS)
@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_n_docs_is_validated(bad: object, kind: str) -> None:
    with pytest.raises(ValueError, match="n_docs"):
        generate_corpus(bad, kind=kind)  # type: ignore[arg-type]


def test_kind_is_validated() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_corpus(10, kind="tweets")


def test_kinds() -> None:
    assert CORPUS_KINDS == ("dialogue", "generic", "mixed")
    # "dialogue": two thirds exchanges in the SFT generator's wording, one third reference drills
    dialogue = generate_corpus(40, seed=2, kind="dialogue")
    assert generate_corpus(40, seed=2) == dialogue
    assert sorted(dialogue) == sorted(dialogue_documents(27, 2) + reference_drills(13, 2))
    assert generate_corpus(40, seed=2, kind="generic") == [text for _, text in generate_labeled_corpus(40, 2)]
    # "mixed": half of each (the odd one generic), shuffled together
    mixed = generate_corpus(41, seed=2, kind="mixed")
    assert sorted(mixed) == sorted(generate_corpus(21, seed=2, kind="generic") + generate_corpus(20, seed=2))


@pytest.mark.parametrize("kind", CORPUS_KINDS)
def test_default_corpus_has_no_heldout_value_or_phrasing(kind: str) -> None:
    # Part 4 evaluates on held-out slot values and (test_unseen) held-out phrasing: the base model
    # must have seen neither, whichever corpus it was pretrained on.
    docs, _ = default_corpus(kind)
    assert len(docs) == (DEFAULT_N_DOCS if kind == "generic" else DIALOGUE_N_DOCS)
    assert find_heldout_leaks(docs) == []
    assert template_leaks(docs) == []


def test_at_least_20_intents_and_all_appear_in_a_small_corpus() -> None:
    assert len(INTENTS) >= 20 and len(set(INTENTS)) == len(INTENTS)
    kinds = [kind for kind, _ in generate_labeled_corpus(300, seed=0)]
    assert set(INTENTS) <= set(kinds)


def test_document_mix(labeled: list[tuple[str, str]]) -> None:
    kinds = [kind for kind, _ in labeled]
    other = sum(k == "product" or k.startswith("policy:") for k in kinds) / len(kinds)
    assert 0.12 <= other <= 0.24  # ~15-20% policies and product descriptions
    assert any(k == "product" for k in kinds) and any(k.startswith("policy:") for k in kinds)


def test_dialogues_are_customer_agent_lines(labeled: list[tuple[str, str]]) -> None:
    for kind, text in labeled:
        if kind == "product" or kind.startswith("policy:"):
            continue
        lines = text.split("\n")
        if kind.startswith("ticket:"):
            assert len(lines) in (2, 4), text  # one exchange, maybe a short thanks / goodbye
        else:
            assert 4 <= len(lines) <= 8 and len(lines) % 2 == 0, text
        for i, line in enumerate(lines):
            assert line.startswith("Customer: " if i % 2 == 0 else "Agent: "), text
            assert line.split(": ", 1)[1].strip(), text


def test_tickets_cover_every_intent_and_share() -> None:
    kinds = [kind for kind, _ in generate_labeled_corpus(300, seed=0)]
    assert {"ticket:" + intent for intent in INTENTS} <= set(kinds)
    big = [kind for kind, _ in generate_labeled_corpus(3000, seed=7)]
    assert 0.33 <= sum(k.startswith("ticket:") for k in big) / len(big) <= 0.42


def _pattern(values: tuple[str, ...]) -> re.Pattern[str]:
    vals = sorted(values, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(v) for v in vals) + r")(?!\w)")


@pytest.fixture(scope="module")
def slot_patterns() -> dict[str, re.Pattern[str]]:
    train = slot_values("train")
    return {slot: _pattern(train[slot]) for slot in ("customer", "product", "order_id", "amount", "carrier", "date")}


def test_ticket_reply_repeats_every_specific_the_customer_states(
    labeled: list[tuple[str, str]], slot_patterns: dict[str, re.Pattern[str]]
) -> None:
    tickets = [text for kind, text in labeled if kind.startswith("ticket:")]
    assert len(tickets) > 500
    stated = {slot: 0 for slot in slot_patterns}
    for text in tickets:
        customer, agent = text.split("\n")[:2]
        assert customer.startswith("Customer: ") and agent.startswith("Agent: "), text
        for slot, pattern in slot_patterns.items():
            in_customer = set(pattern.findall(customer))
            in_agent = set(pattern.findall(agent))
            assert in_customer <= in_agent, (slot, text)  # every stated value is repeated
            if in_customer and slot in ("order_id", "product", "customer"):
                assert in_agent <= in_customer, (slot, text)  # and none is swapped for another
            stated[slot] += bool(in_customer)
    # The customer states these in a varying share of tickets: copying, not a fixed pattern.
    for slot in ("customer", "product", "order_id"):
        assert 0.2 * len(tickets) < stated[slot] < 0.95 * len(tickets), (slot, stated)
    for slot in ("amount", "carrier", "date"):
        assert stated[slot] > 20, (slot, stated)


def test_ticket_agent_never_names_an_order_the_customer_did_not_give(
    labeled: list[tuple[str, str]], slot_patterns: dict[str, re.Pattern[str]]
) -> None:
    for kind, text in labeled:
        if kind.startswith("ticket:"):
            customer, agent = text.split("\n")[:2]
            if not slot_patterns["order_id"].search(customer):
                assert not slot_patterns["order_id"].search(agent), text


@pytest.mark.parametrize("intent", INTENTS)
def test_generate_ticket_each_intent(intent: str) -> None:
    rng = random.Random(0)
    for _ in range(20):
        lines = generate_ticket(intent, rng).split("\n")
        assert lines[0].startswith("Customer: ") and lines[1].startswith("Agent: ")
        assert "{" not in "".join(lines) and "}" not in "".join(lines)
    with pytest.raises(ValueError, match="unknown intent"):
        generate_ticket("teleport_order", rng)


@pytest.mark.parametrize("intent", INTENTS)
def test_generate_dialogue_each_intent(intent: str) -> None:
    rng = random.Random(0)
    for _ in range(20):
        text = generate_dialogue(intent, rng)
        assert text.startswith("Customer: ") and "\nAgent: " in text
        assert "{" not in text and "}" not in text  # every template field was filled


def test_generate_dialogue_rejects_unknown_intent() -> None:
    with pytest.raises(ValueError, match="unknown intent"):
        generate_dialogue("teleport_order", random.Random(0))


def test_no_heldout_values_leak(labeled: list[tuple[str, str]]) -> None:
    assert find_heldout_leaks(text for _, text in labeled) == []


def test_uses_train_slot_values(labeled: list[tuple[str, str]]) -> None:
    text = "\n".join(t for _, t in labeled)
    train = slot_values("train")
    for slot in ("customer", "product", "order_id", "amount", "carrier", "date"):
        assert sum(v in text for v in train[slot][:50]) > 0, slot


def test_no_special_tokens(labeled: list[tuple[str, str]]) -> None:
    for _, text in labeled:
        assert not any(tok in text for tok in SPECIAL_TOKENS)
        assert "<|" not in text


def test_agent_uses_name_once_the_customer_gives_it(labeled: list[tuple[str, str]]) -> None:
    intro = re.compile(r"^Customer: .*?(?:this is|my name is|my name's|I'm|it's) ([A-Z][a-z]+)[.!]")
    checked = 0
    for _, text in labeled:
        m = intro.match(text)
        if m and m.group(1) in slot_values("train")["customer"]:
            agent_text = "\n".join(line for line in text.split("\n") if line.startswith("Agent: "))
            assert m.group(1) in agent_text, text
            checked += 1
    assert checked > 100


def test_some_customer_text_is_sloppy(labeled: list[tuple[str, str]]) -> None:
    customer = [
        line[len("Customer: ") :] for _, t in labeled for line in t.split("\n") if line.startswith("Customer: ")
    ]
    lowercase = sum(c == c.lower() and any(ch.isalpha() for ch in c) for c in customer)
    assert 0.02 < lowercase / len(customer) < 0.3


def test_default_corpus_size_speed_and_variety() -> None:
    docs, elapsed = default_corpus("generic")
    stats = corpus_stats(docs)
    assert stats["n_docs"] == DEFAULT_N_DOCS
    assert 3_000_000 <= stats["bytes"] <= 5_000_000
    assert stats["distinct_sentences"] >= 30_000
    assert elapsed < 10
    docs, elapsed = default_corpus("dialogue")
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
    with pytest.raises(CorpusError) as info:
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


def test_corpus_error_is_value_error() -> None:
    assert issubclass(CorpusError, ValueError)
