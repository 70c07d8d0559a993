"""Pretraining text for part 3: the generated retail support corpus, or the user's own files.

``generate_corpus(n_docs, seed)`` (``DIALOGUE_N_DOCS`` documents by default) models retail
support text as it is written, from the one retail world of ``part3_pretrain.domain``:

* two thirds are ``agents.agent_documents``, "Customer: <message>\nAgent: <reply>" exchanges whose
  replies come from agents of every quality (the traits of part 4's pairs, drawn independently:
  some restate the order and some do not, some answer another question, some are curt, rude or
  cut off), with customers who write in every register (``variety``: composed requests,
  typos, shorthand, sentences that do not matter, a second request);
* a third are ``domain.reference_drills``: a customer lists 1-4 ids, names, products, carriers,
  amounts or codes and the agent repeats them verbatim (an order id perhaps written another way),
  dense practice at copying;
* optionally (``documents_share``, ``--documents-share``; none by default, as measured) other
  retail text from ``documents.retail_documents``: order confirmations, shipping notices, tickets
  with notes, returns forms, product Q&A, invoices and multi-turn chats, each read by an agent.

Slot values come from open-ended pools (``open_values``: pseudo-word names, brands and couriers,
ids, dates, amounts and codes in open formats), never a held-out value, and the text holds no
held-out phrasing (``domain.template_leaks``); the tests check both. Generation uses seeded
``random.Random`` instances only, so the output is identical in every process.

``load_corpus_files(paths)`` reads the user's own text instead (.txt: documents separated by
blank lines; .jsonl, .json, .csv: one document per row, a ``{"text": ...}`` row as written, a
support pair or a ``{"messages": [...]}`` conversation, as part 4 reads them, in the corpus's own
"Customer: ...\nAgent: ..." format), raising ``datafile.DataError`` with a one-line message
naming the file (and line) on any problem.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

from part3_pretrain import records
from part3_pretrain.agents import agent_documents
from part3_pretrain.datafile import read_text
from part3_pretrain.documents import retail_documents
from part3_pretrain.domain import reference_drills

# ~7.5 MB at ~250 bytes a document; a few seconds on one core.
DIALOGUE_N_DOCS = 30000
SUFFIXES = (".txt", ".jsonl", ".json", ".csv")


# The corpus's mix: exchanges with agents of every quality, reference drills, and (an option,
# ``--documents-share``) other retail documents. At the 30-TFLOP budget every share of documents
# measured cost the job more than it gave (README, the corpus ablation), so the default is none.
DOCUMENTS_SHARE = 0.0
DRILLS_SHARE = 1 / 3


def corpus_parts(n_docs: int, documents_share: float = DOCUMENTS_SHARE) -> dict[str, int]:
    """How many documents of each kind ``n_docs`` holds (the exchanges take the rest)."""
    documents, drills = round(n_docs * documents_share), round(n_docs * DRILLS_SHARE)
    return {"exchanges": n_docs - documents - drills, "documents": documents, "drills": drills}


def _dialogue_corpus(n_docs: int, seed: int, documents_share: float) -> list[str]:
    """Exchanges, other retail documents and reference drills (``corpus_parts``), shuffled."""
    parts = corpus_parts(n_docs, documents_share)
    docs = (
        agent_documents(parts["exchanges"], seed)
        + retail_documents(parts["documents"], seed)
        + reference_drills(parts["drills"], seed)
    )
    random.Random(f"dialogue-corpus-{seed}").shuffle(docs)
    return docs


def generate_corpus(n_docs: int = DIALOGUE_N_DOCS, seed: int = 0, documents_share: float | None = None) -> list[str]:
    """``n_docs`` synthetic support documents (see the module docstring), ``documents_share`` of
    them other retail documents (default ``DOCUMENTS_SHARE``); the same arguments give the same list."""
    if isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 1:
        raise ValueError(f"n_docs must be an integer >= 1, got {n_docs!r}")
    share = DOCUMENTS_SHARE if documents_share is None else documents_share
    if not 0.0 <= share <= 1.0 - DRILLS_SHARE:
        raise ValueError(f"documents_share must be in [0, {1.0 - DRILLS_SHARE:.2f}], got {share!r}")
    return _dialogue_corpus(n_docs, seed, share)


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

TEXT = "text"  # the field of a plain document row
NOT_A_DOCUMENT = f'missing string field "{TEXT}" (or a "{records.MESSAGES}" conversation or a context/response pair)'
FIELDS_FIX = f'give each row a "{TEXT}" field, or name its fields after one of the known pairs'


def _txt_docs(text: str) -> list[str]:
    # A blank line is empty or whitespace-only; one or more of them separate documents.
    blocks = re.split(r"\n[ \t]*\n(?:[ \t]*\n)*", text)
    return [b.strip("\n") for b in blocks if b.strip()]


def dialogue_document(turns: Sequence[dict]) -> str:
    """A conversation in the corpus's own format: one line per message, ``System: ...`` first,
    then ``Customer: ...`` and ``Agent: ...``."""
    label = {"system": "System", "user": "Customer", "assistant": "Agent"}
    return "\n".join(f"{label[t['role']]}: {t['content']}" for t in turns)


def _kind(record: dict, path: Path) -> str:
    """What a row is: a conversation, a plain text document, or a (context, response) pair."""
    if records.is_conversation(record, path):
        return "messages"
    return TEXT if TEXT in record else "pair"


def _text_doc(record: dict, raise_at: records.RaiseAt) -> str:
    """A ``{"text": ...}`` row's document, as written."""
    value = record[TEXT]
    if not isinstance(value, str):
        raise_at(NOT_A_DOCUMENT)
    if not value.strip():
        raise_at(f'field "{TEXT}" is empty')
    return value


def _pair_fields(path: Path, pairs: records.Located) -> tuple[str, str]:
    """The (context, response) fields of the pair rows; a first such row with no known pair is
    reported at its line (it may be a text row that lacks its "text")."""
    where, first = pairs[0]
    if not any(c in first and r in first for c, r in records.FIELD_PAIRS):
        records.raiser(path, where)(f"{NOT_A_DOCUMENT}; keys: {sorted(first)}; {FIELDS_FIX}")
    return records.detect_fields([record for _, record in pairs], path, FIELDS_FIX)


def _record_docs(path: Path) -> list[str]:
    """Documents from a .jsonl/.json/.csv file: ``{"text"}`` rows as written, conversations and
    (context, response) pairs as ``dialogue_document``s."""
    located = records.read_records(path, not_object=NOT_A_DOCUMENT + ": expected a JSON object")
    kinds = [_kind(record, path) for _, record in located]
    pairs = [(where, record) for (where, record), kind in zip(located, kinds, strict=True) if kind == "pair"]
    fields = _pair_fields(path, pairs) if pairs else None
    docs = []
    for (where, record), kind in zip(located, kinds, strict=True):
        raise_at = records.raiser(path, where)
        if kind == TEXT:
            docs.append(_text_doc(record, raise_at))
        elif kind == "messages":
            docs.append(dialogue_document(records.conversation_turns(record, raise_at)))
        else:
            context = records.text_field(record, fields[0], "context", raise_at)
            response = records.text_field(record, fields[1], "response", raise_at)
            docs.append(
                dialogue_document([{"role": "user", "content": context}, {"role": "assistant", "content": response}])
            )
    return docs


def load_corpus_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Documents from the user's files, in the order given: .txt files split on blank lines;
    .jsonl/.json/.csv rows, each one document (``{"text": ...}`` as written, conversations and
    (context, response) pairs as ``dialogue_document``s). Any problem raises ``DataError``."""
    docs: list[str] = []
    for shown in paths:
        path = Path(shown)
        if path.suffix.lower() == ".txt":
            docs.extend(_txt_docs(read_text(path, shown)))
        else:
            records.suffix_of(path, SUFFIXES)
            docs.extend(_record_docs(path))
    return docs
