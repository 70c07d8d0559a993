"""Tests for part3_pretrain.tokenizer: a tiny byte-level BPE trained in-process round-trips any
Unicode, owns distinct single-id special tokens (PAD != EOS), survives save/load, and reports a
missing or corrupt file as a TokenizerError naming the path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models

from part3_pretrain.tokenizer import (
    ASSISTANT,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    USER,
    RetailTokenizer,
    TokenizerError,
    train_tokenizer,
)

VOCAB = 300
LINES = [
    "Customer: Hi, my order #A1234 still hasn't arrived.",
    "Agent: I'm sorry to hear that! Let me check the tracking with UPS for you.",
    "Customer: Can I return the Cedar Wool Sweater? It's too small.",
    "Agent: Of course. Returns are free within 30 days of delivery.",
    "Our warranty covers manufacturing defects for one year.",
] * 4

ROUND_TRIP = [
    "",
    "Customer: Where is my order?",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n and \n\n blank lines",
    "emoji 📦🚚✅ and a family 👨‍👩‍👧 with ZWJ",
    "CJK: 我的订单在哪里？ 注文はどこですか",
    "accents: café, naïve, Ångström, São Paulo, Zoë",
    "combining: e\u0301 vs \u00e9, and NFKC-bait: ﬁ ① Ｆｕｌｌ",
    "special in text: hello<|endoftext|>world <|pad|> <|user|><|assistant|>",
    "odd chars: \x00\x07 \u200b zero-width \ufeff BOM \U0010ffff",
    "ß" * 50 + "a" * 300,
]


@pytest.fixture(scope="module")
def tok() -> RetailTokenizer:
    return train_tokenizer(LINES, VOCAB)


def test_vocab_size_and_training_learns_merges(tok: RetailTokenizer) -> None:
    assert 256 + len(SPECIAL_TOKENS) < tok.vocab_size <= VOCAB
    # merges learned from the lines: a frequent word is fewer tokens than its bytes
    assert len(tok.encode("Customer")) < len("Customer")


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_decode_encode_round_trip(tok: RetailTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_encode_batch_matches_encode(tok: RetailTokenizer) -> None:
    assert tok.encode_batch(ROUND_TRIP) == [tok.encode(t) for t in ROUND_TRIP]


def test_special_tokens_distinct_and_pad_is_not_eos(tok: RetailTokenizer) -> None:
    ids = [tok.pad_id, tok.eos_id, tok.user_id, tok.assistant_id]
    assert len(set(ids)) == 4
    assert tok.pad_id != tok.eos_id
    assert tok.special_ids == frozenset(ids)
    assert all(0 <= i < tok.vocab_size for i in ids)


@pytest.mark.parametrize("special", SPECIAL_TOKENS)
def test_special_tokens_are_single_ids(tok: RetailTokenizer, special: str) -> None:
    expected = {PAD: tok.pad_id, EOS: tok.eos_id, USER: tok.user_id, ASSISTANT: tok.assistant_id}[special]
    assert tok.special_id(special) == expected
    assert tok.decode([expected]) == special


@pytest.mark.parametrize("special", SPECIAL_TOKENS)
@pytest.mark.parametrize("where", ["{s}", "Thanks!{s}Bye", "a {s}{s} b", "<{s}>", "<|{s}|>"])
def test_special_token_text_is_never_a_special_id(tok: RetailTokenizer, special: str, where: str) -> None:
    text = where.format(s=special)
    ids = tok.encode(text)
    assert not set(ids) & tok.special_ids  # user text stays characters
    assert tok.decode(ids) == text
    assert tok.encode_batch([text, "plain"]) == [ids, tok.encode("plain")]


def test_special_id_refuses_ordinary_text(tok: RetailTokenizer) -> None:
    with pytest.raises(ValueError, match="not a special token"):
        tok.special_id("hello")


def test_ordinary_text_never_produces_special_ids(tok: RetailTokenizer) -> None:
    text = " ".join(LINES) + " <|endoftext |> <| pad|> endoftext"
    assert not set(tok.encode(text)) & tok.special_ids


def test_training_is_deterministic() -> None:
    a, b = train_tokenizer(LINES, VOCAB), train_tokenizer(LINES, VOCAB)
    assert a.to_str() == b.to_str()


def test_too_small_vocab_is_an_error() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(LINES, 100)


def test_save_load_round_trip(tok: RetailTokenizer, tmp_path: Path) -> None:
    path = tok.save(tmp_path / "sub" / "tokenizer.json")
    assert path == tmp_path / "sub" / "tokenizer.json"
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left
    loaded = RetailTokenizer.load(path)
    assert loaded.vocab_size == tok.vocab_size
    assert (loaded.pad_id, loaded.eos_id, loaded.user_id, loaded.assistant_id) == (
        tok.pad_id,
        tok.eos_id,
        tok.user_id,
        tok.assistant_id,
    )
    for text in ROUND_TRIP:
        assert loaded.encode(text) == tok.encode(text)
        assert loaded.decode(loaded.encode(text)) == text
    assert RetailTokenizer.from_str(tok.to_str()).encode(LINES[0]) == tok.encode(LINES[0])


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(TokenizerError, match="nope.json"):
        RetailTokenizer.load(path)
    with pytest.raises(TokenizerError, match="no such"):
        RetailTokenizer.load(tmp_path)  # a directory is not a tokenizer file


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"version": "1.0"}', b"\xff\xfe\x00garbage"])
def test_load_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(TokenizerError) as err:
        RetailTokenizer.load(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "\n" not in msg


def test_load_tokenizer_without_special_tokens(tmp_path: Path) -> None:
    plain = Tokenizer(models.BPE())
    path = tmp_path / "plain.json"
    path.write_text(plain.to_str(), encoding="utf-8")
    with pytest.raises(TokenizerError, match="special"):
        RetailTokenizer.load(path)


def test_saved_file_is_plain_json(tok: RetailTokenizer, tmp_path: Path) -> None:
    data = json.loads(tok.save(tmp_path / "t.json").read_text(encoding="utf-8"))
    assert {t["content"] for t in data["added_tokens"]} >= set(SPECIAL_TOKENS)


def test_split_digits_gives_one_token_per_digit() -> None:
    tok = train_tokenizer(LINES + ["order #A1234 for $23.99 on 2024-05-01"] * 20, VOCAB, split_digits=True)
    pieces = [tok.decode([i]) for i in tok.encode("order #T1187 for $89.25")]
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert "".join(c for p in digits for c in p if c.isdigit()) == "118789" + "25"
    assert all(sum(c.isdigit() for c in p) == 1 for p in digits)
    for text in ROUND_TRIP:
        assert tok.decode(tok.encode(text)) == text
    assert RetailTokenizer.from_str(tok.to_str()).encode("A1234") == tok.encode("A1234")  # saved with it


def test_punctuation_ids_are_the_tokens_without_letters_or_digits(tok: RetailTokenizer) -> None:
    punct = tok.punctuation_ids
    ids = tok.encode(" order A1234, thanks! (ok)")
    assert {i for i in ids if i in punct} == {i for i in ids if not any(c.isalnum() for c in tok.decode([i]))}
    assert {i for i in ids if i in punct} and tok.encode(",")[0] in punct and tok.encode("1")[0] not in punct
    assert not punct & tok.special_ids


def test_value_piece_ids_are_pieces_of_names_and_numbers(tok: RetailTokenizer) -> None:
    pieces = tok.value_piece_ids
    for text in ("X", "7", "ield"):
        ids = tok.encode(text)
        assert all(i in pieces for i in ids), text
    for text in (",", ".", " ", "!"):
        assert tok.encode(text)[0] not in pieces, text
    # a space may come first only before a capital or a digit: a name or a number begins
    for i in pieces:
        text = tok.decode([i])
        assert text.isalnum() or (text[0] == " " and text[1:].isalnum() and (text[1].isupper() or text[1].isdigit()))
    assert not pieces & tok.special_ids


def test_inner_piece_ids_continue_a_word(tok: RetailTokenizer) -> None:
    inner = tok.inner_piece_ids
    assert inner <= tok.value_piece_ids
    assert all(tok.decode([i]).isalnum() for i in inner)
    assert tok.encode("7")[0] in inner and tok.encode(" 7")[0] not in inner


def test_frame_ids_are_line_breaks_and_special_tokens(tok: RetailTokenizer) -> None:
    frame = tok.frame_ids
    assert tok.special_ids <= frame
    assert all("\n" in tok.decode([i]) for i in frame - tok.special_ids)
    assert tok.encode("\n")[0] in frame and tok.encode("A")[0] not in frame
