"""Tests for part3_pretrain.name_grounding (capitalised words held to the message and to the
model's own training replies at decoding time)."""

from __future__ import annotations

import pytest
import torch

from part3_pretrain.name_grounding import (
    MAX_NAME_QUOTES,
    GroundedNames,
    NameVocab,
    ReplyWords,
    prompt_words,
    reply_words,
    words_of,
)
from part3_pretrain.tokenizer import RetailTokenizer, train_tokenizer
from part3_pretrain.value_grounding import ValueGrounding

LINES = [
    "Customer: hi, my Mayfield Velvet Cushion came torn. Rafael\nAgent: Hi Rafael, I'm sorry - I've sent a new one.",
    "Customer: where are my Hiking Boots from GLS? Tariq\nAgent: Thanks, Tariq. Your Hiking Boots are with GLS.",
    "Customer: please send a VAT invoice, Margaret Llewellyn-Hart\nAgent: Thanks, I've emailed the VAT invoice.",
]
KNOWN = ReplyWords(initial=frozenset({"Hi", "Thanks", "Your", "My"}), inner=frozenset({"I", "I'm", "I've", "VAT"}))


@pytest.fixture(scope="module")
def tok() -> RetailTokenizer:
    return train_tokenizer(LINES * 20, 420, split_digits=True)


def test_words_of_keeps_parts_of_hyphenated_and_possessive_words() -> None:
    assert words_of("Margaret Llewellyn-Hart's kettle") == {
        "Margaret",
        "Llewellyn-Hart's",
        "Llewellyn-Hart",
        "Llewellyn",
        "kettle",
    }
    assert prompt_words("Customer: hi Rafael\nAgent: Hello") == {"hi", "Rafael", "Hello"}  # no speaker labels


def test_reply_words_are_the_replies_own_split_by_where_they_stand() -> None:
    pairs = [
        ("my Mayfield Cushion is torn, Rafael", "Hi Rafael, I'm sorry. Your Mayfield Cushion ships today."),
        ("send a VAT invoice", "Thanks! The VAT invoice is in your Orders page."),
    ]
    words = reply_words(pairs)
    assert words.initial == {"Hi", "Your", "Thanks", "The"}  # only ever begins a sentence
    assert words.inner == {"I'm", "I", "Orders"}  # "VAT", "Mayfield", "Rafael" come from their message
    assert ReplyWords.from_dict(words.to_dict()) == words


def _rule(tok: RetailTokenizer, message: str, reply: str, known: ReplyWords = KNOWN):
    names = GroundedNames(NameVocab(tok.piece_texts, tok.vocab_size), [f"Customer: {message}\nAgent:"], known)
    return names, names.rule(0, tok.encode(reply))


def _free(tok: RetailTokenizer, mask: torch.Tensor, text: str) -> bool:
    """Whether the first token of ``text`` is allowed under ``mask``."""
    return not bool(mask[tok.encode(text)[0]])


def test_a_capitalised_word_begins_only_as_an_allowed_one(tok: RetailTokenizer) -> None:
    message = "my Mayfield Velvet Cushion came torn. Rafael"
    _, (allowed, mask) = _rule(tok, message, "")
    assert allowed is None and _free(tok, mask, "Hi") and _free(tok, mask, "Thanks")  # the replies' own starters
    _, (allowed, mask) = _rule(tok, message, "Hi")
    assert allowed is None and _free(tok, mask, " Rafael") and _free(tok, mask, " there")
    assert not _free(tok, mask, " Tariq")  # a name the message does not hold
    assert not _free(tok, mask, " Thanks")  # a sentence's first word, inside a sentence
    _, (_, mask) = _rule(tok, message, "Hi Rafael, your")
    assert _free(tok, mask, " Mayfield") and _free(tok, mask, " the") and not _free(tok, mask, " Hiking")
    _, (_, mask) = _rule(tok, message, "Hi Rafael. ")
    assert _free(tok, mask, "Thanks")  # after a full stop a sentence begins


def test_a_begun_name_goes_on_as_the_message_has_it(tok: RetailTokenizer) -> None:
    message = "my Mayfield Velvet Cushion came torn. Rafael"
    ids = tok.encode("your May")
    assert tok.decode(ids).endswith("May") and tok.decode(ids[-1:]).strip() in ("May", "M", "ay", "y")
    names, (allowed, mask) = _rule(tok, message, "your May")
    assert mask is None and allowed and all(("May" + tok.decode([i])) in "Mayfield" for i in allowed)


def test_a_replies_own_word_does_not_run_on_into_a_message_name(tok: RetailTokenizer) -> None:
    message = "where are my Hiking Boots from GLS? Tariq"
    _, (allowed, mask) = _rule(tok, message, "Hi")
    assert allowed is None
    for piece in ("king", "k", "ki"):
        ids = tok.encode("Hi" + piece)[1:]
        if len(ids) == 1:
            assert not _free(tok, mask, tok.decode(ids))  # "Hi" + "king" is not "Hi Tariq"
    _, (allowed, _) = _rule(tok, message, "your Hi")  # the message's word, begun: it may go on
    assert allowed and all("Hiking".startswith("Hi" + tok.decode([i])) for i in allowed)


def test_a_message_name_is_written_at_most_twice(tok: RetailTokenizer) -> None:
    message = "where are my Hiking Boots from GLS? Tariq"
    assert MAX_NAME_QUOTES == 2
    _, (_, mask) = _rule(tok, message, "Hi Tariq, Tariq,")  # read at once
    assert not _free(tok, mask, " Tariq") and _free(tok, mask, " Hiking")
    _, (_, mask) = _rule(tok, message, "Hi Tariq, your")
    assert _free(tok, mask, " Tariq")
    names = GroundedNames(NameVocab(tok.piece_texts, tok.vocab_size), [f"Customer: {message}\nAgent:"], KNOWN)
    reply = tok.encode("Hi Tariq, Tariq,")
    for n in range(1, len(reply) + 1):  # read a token at a time, as generate calls it
        _, mask = names.rule(0, reply[:n])
    assert not _free(tok, mask, " Tariq")


def test_grounding_with_names_changes_only_what_the_rule_names(tok: RetailTokenizer) -> None:
    """Through ``ValueGrounding``: a banned capitalised start is -inf, everything else keeps its logit."""
    g = ValueGrounding.for_tokenizer(tok, KNOWN)
    prompt = tok.encode("Customer: my Mayfield Velvet Cushion came torn. Rafael\nAgent:")
    reply = tok.encode(" Hi")
    grounded = g.start([prompt])
    logits = torch.randn(1, tok.vocab_size)
    out = grounded.apply(logits, [reply], [False])
    banned = ~torch.isfinite(out[0])
    assert bool(banned[tok.encode(" Tariq")[0]]) and not bool(banned[tok.encode(" Rafael")[0]])
    assert torch.equal(out[0][~banned], logits[0][~banned])
    assert not bool(banned[tok.eos_id]) and not bool(banned[tok.encode(",")[0]])
    off = ValueGrounding.for_tokenizer(tok).start([prompt]).apply(logits, [reply], [False])
    assert bool(torch.isfinite(off[0, tok.encode(" Tariq")[0]]))  # without reply words: names are free
