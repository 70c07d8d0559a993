"""Tests for part3_pretrain/documents.py: retail documents to read (emails, notices, tickets, forms,
listings, invoices, chats) whose agents restate what the document says."""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from part3_pretrain import documents
from part3_pretrain.documents import DOCUMENT_KINDS, MAX_CHARS, MAX_WORDS, retail_documents
from part3_pretrain.domain import template_leaks
from part3_pretrain.slots import SlotPools, find_heldout_leaks, slot_values, split_pools

REPO_ROOT = Path(__file__).resolve().parents[1]
KIND_NEW = {kind.name: kind.new for kind in documents._KINDS}


@pytest.fixture(scope="module")
def docs() -> list[documents._Doc]:
    return documents._documents(3000, seed=0, values=None)


def mentions(text: str, value: str) -> bool:
    """``value`` in ``text`` as a whole token sequence (so "2" is not found inside "A1234")."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


def turns(text: str) -> list[tuple[int, str]]:
    return [(i, line) for i, line in enumerate(text.split("\n")) if line.startswith(("Customer: ", "Agent: "))]


def test_deterministic_distinct_every_kind_and_validated(docs: list[documents._Doc]) -> None:
    texts = [d.text for d in docs]
    assert retail_documents(3000, seed=0) == texts
    assert retail_documents(50, seed=1) == retail_documents(50, seed=1) != texts[:50]
    assert len(set(texts)) == len(texts) == 3000
    assert Counter(d.kind for d in docs) == {kind: 3000 // 7 + (i < 3000 % 7) for i, kind in enumerate(DOCUMENT_KINDS)}
    assert retail_documents(0) == []
    random.seed(123)
    expected = random.random()
    random.seed(123)
    retail_documents(40, seed=2)
    assert random.random() == expected
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(ValueError, match="n must be"):
            retail_documents(bad)  # type: ignore[arg-type]


def test_no_heldout_value_or_phrasing(docs: list[documents._Doc]) -> None:
    texts = [d.text for d in docs]
    assert find_heldout_leaks(texts) == []
    assert template_leaks(texts) == []
    train = retail_documents(700, seed=3, values=split_pools("train"))
    assert find_heldout_leaks(train) == [] and template_leaks(train) == []
    for text in texts + train:
        assert "{" not in text and "}" not in text and "##" not in text and "\n\n" not in text, text


def test_short_enough_for_the_context(docs: list[documents._Doc]) -> None:
    for d in docs:
        assert len(d.text) <= MAX_CHARS and len(d.text.split()) <= MAX_WORDS, d.text
    assert MAX_WORDS <= 110 and MAX_CHARS <= 700


def test_dialogue_lines_use_the_corpus_prefixes(docs: list[documents._Doc]) -> None:
    with_dialogue = 0
    for d in docs:
        lines = d.text.split("\n")
        # no other line poses as a turn ("Customer:" as a ticket field, "agent:" lowercase, ...)
        assert not any(
            re.match(r"(?i)(customer|agent)\s*:", ln) and not ln.startswith(("Customer: ", "Agent: ")) for ln in lines
        )
        roles = [line.split(":")[0] for _, line in turns(d.text)]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), d.text  # turns alternate
        with_dialogue += bool(roles)
        if d.kind in ("support_ticket", "chat"):
            assert roles and roles[-1] == "Agent", d.text
    assert 0.5 * len(docs) < with_dialogue < len(docs)


def test_every_agent_turn_restates_a_value_from_earlier_in_the_document(docs: list[documents._Doc]) -> None:
    restated = Counter()
    for d in docs:
        lines = d.text.split("\n")
        assert set(d.new_keys) <= KIND_NEW[d.kind], d  # an agent adds only what its kind allows
        for i, line in turns(d.text):
            if not line.startswith("Agent: "):
                continue
            earlier = "\n".join(lines[:i])
            values = [v for v in (*d.facts, *d.new) if len(v) >= 3 and mentions(line, v)]
            assert any(mentions(earlier, v) for v in values), d.text
            # a value of the document's own in the reply was there before (or is new information)
            assert all(mentions(earlier, v) or v in d.new for v in values), d.text
            restated[d.kind] += 1
    assert set(restated) == set(DOCUMENT_KINDS)
    assert restated["support_ticket"] == sum(d.kind == "support_ticket" for d in docs)  # every ticket is answered


def test_chats_restate_the_first_turn_in_the_last(docs: list[documents._Doc]) -> None:
    chats = [d for d in docs if d.kind == "chat"]
    for d in chats:
        lines = [line for _, line in turns(d.text)]
        assert lines[0].startswith("Customer: ") and 4 <= len(lines) <= 6, d.text
        assert any(mentions(lines[0], v) and mentions(lines[-1], v) for v in d.facts), d.text
    assert sum(len(turns(d.text)) == 6 for d in chats) > 0.05 * len(chats)  # some chats have 3 exchanges


def test_many_layouts_per_kind(docs: list[documents._Doc]) -> None:
    """Layouts (the text with every value blanked out) vary: no kind is one memorisable string."""
    skeletons: dict[str, set[str]] = defaultdict(set)
    first_lines: dict[str, set[str]] = defaultdict(set)
    for d in docs:
        text = d.text
        for v in sorted((*d.facts, *d.new), key=len, reverse=True):
            text = text.replace(v, "<v>")
        skeletons[d.kind].add(re.sub(r"\d", "9", text))
        first_lines[d.kind].add(re.sub(r"\d", "9", text.split("\n")[0]))
    for kind in DOCUMENT_KINDS:
        assert len(first_lines[kind]) >= 5, kind
        assert len(skeletons[kind]) >= 40, kind
        assert max(Counter(d.text.split("\n")[0][:12] for d in docs if d.kind == kind).values()) < 0.3 * 3000 / 7


def test_values_of_any_shape_are_copied_as_they_are() -> None:
    train = slot_values("train")
    odd = SlotPools(
        {
            **train,
            "order_id": ("#QX-77120", "88231", "k4821", "ORD 5512/B"),
            "date": ("Oct 23", "23/10", "next Tuesday"),
            "amount": ("12,50 EUR", "$1,204.00", "JPY 4800"),
            "customer": ("Bakoru", "Tilven Osa"),
            "promo_code": ("save-10", "Z9"),
        }
    )
    docs = documents._documents(300, seed=5, values=odd)
    text = "\n".join(d.text for d in docs)
    assert "##" not in text and "#QX-77120" in text and re.search(r"(?<![\w#])88231", text)
    assert "23/10" in text and "next Tuesday" in text and "12,50 EUR" in text
    assert "{" not in text and find_heldout_leaks(d.text for d in docs) == []
    invoices = [d for d in docs if d.kind == "invoice"]
    assert any(re.search(r"(?i)total", d.text) for d in invoices)  # "$1,204.00" alone adds up
    for d in invoices:  # amounts that do not read "$D.CC" are never added up
        if "12,50 EUR" in d.text or "JPY 4800" in d.text:
            assert not re.search(r"(?i)total|subtotal|balance", d.text.split("Customer: ")[0]), d.text


def test_invoice_sums() -> None:
    rng = random.Random(0)
    fill = {"amount": "$10.00", "amount2": "$1,000.50", "amount3": "12 EUR"}
    both = {"amount", "amount2"}
    assert documents._sums(fill, both, rng) == {"subtotal": "$1,010.50", "total": "$1,010.50"}
    assert documents._sums(fill, both | {"amount3"}, rng) == {"no_math": ""}
    with_code = documents._sums(fill, both | {"promo_code"}, rng)
    cents = [int(with_code[k].strip("$").replace(",", "").replace(".", "")) for k in ("subtotal", "discount", "total")]
    assert cents[0] == 101050 and 0 < cents[1] < cents[0] and cents[2] == cents[0] - cents[1]


def test_same_in_every_process_and_part3_only() -> None:
    code = (
        "import hashlib, sys; from part3_pretrain.documents import retail_documents; "
        "print(hashlib.sha256('\\x00'.join(retail_documents(200, seed=3)).encode()).hexdigest()); "
        "print(sorted(m for m in sys.modules if m.startswith('part4_sft')))"
    )
    outs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        outs.add(out.stdout)
    assert len(outs) == 1
    digest, part4 = outs.pop().split("\n")[:2]
    assert part4 == "[]"
    expected = hashlib.sha256("\x00".join(retail_documents(200, seed=3)).encode()).hexdigest()
    assert digest == expected
