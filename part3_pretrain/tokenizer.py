"""The tokenizer of every model here: byte-level BPE (HF ``tokenizers``) with reserved special tokens.

The special tokens are added at training time, so they own the first ids and are never split
or merged: PAD (``<|pad|>``), EOS (``<|endoftext|>``) and the two role markers of the chat prompt
(``<|user|>``, ``<|assistant|>``). PAD is never EOS. Byte-level pre-tokenisation with no
normaliser makes ``decode(encode(s)) == s`` for any Unicode string.

Text never turns into special ids: ``encode`` reads a literal ``<|endoftext|>`` in a customer
message or a corpus file as ordinary characters (a reply that quotes it must not teach EOS in
the middle). Only code that means a special token puts its id in: ``special_id`` (used by the
prompt templates) and the EOS appended after each training document or response.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .fileio import write_text_atomic

PAD = "<|pad|>"
EOS = "<|endoftext|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SPECIAL_TOKENS = (PAD, EOS, USER, ASSISTANT)
SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def _defuse(text: str) -> list[str]:
    """``text`` cut inside every special-token literal (after its first character), so that no
    piece contains one and the tokenizer's special-token matcher cannot fire on user text."""
    cuts = [m.start() + 1 for m in SPECIAL_RE.finditer(text)]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=False)]


class TokenizerError(ValueError):
    """A tokenizer file that is missing or lacks the special tokens this project needs."""


ID_MARK = "#"  # what a reply writes before an order id ("order #QX-77120")
CURRENCY_SIGNS = "$£€¥"  # what it writes before an amount


class RetailTokenizer:
    """Thin wrapper: ids as plain lists, special ids as attributes, JSON (de)serialisation."""

    def __init__(self, tok: Tokenizer) -> None:
        self._tok = tok
        ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks special tokens {missing}")
        self.pad_id, self.eos_id = ids[PAD], ids[EOS]
        self.user_id, self.assistant_id = ids[USER], ids[ASSISTANT]
        self.special_ids = frozenset(ids.values())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def special_id(self, token: str) -> int:
        """The id of one of SPECIAL_TOKENS (for templates that mean the token itself)."""
        if token not in SPECIAL_TOKENS:
            raise ValueError(f"{token!r} is not a special token; expected one of {SPECIAL_TOKENS}")
        return self._tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` as ordinary text: special-token literals in it stay characters."""
        if "<|" not in text:  # the fast path: no literal can be present
            return self._tok.encode(text, add_special_tokens=False).ids
        pieces = self._tok.encode_batch(_defuse(text), add_special_tokens=False)
        return [i for piece in pieces for i in piece.ids]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if not any("<|" in t for t in texts):
            return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
        return [self.encode(t) for t in texts]

    @functools.cached_property
    def _pieces(self) -> tuple[tuple[int, str], ...]:
        """Every ordinary token as (id, text), special tokens aside: what the id sets below read."""
        return tuple((i, self._tok.decode([i])) for i in range(self.vocab_size) if i not in self.special_ids)

    @functools.cached_property
    def piece_texts(self) -> dict[int, str]:
        """Every ordinary token's text by id (special tokens aside): what a reply's words are
        read from, one token at a time (``value_grounding.BareCodes``)."""
        return dict(self._pieces)

    @functools.cached_property
    def punctuation_ids(self) -> frozenset[int]:
        """Ids of the tokens with no letter or digit (",", " -", "!\n", a lone byte of a
        multi-byte character), special tokens aside: what the n-gram ban reads through
        (``generate.repeat_bans``)."""
        return frozenset(i for i, text in self._pieces if not any(c.isalnum() for c in text))

    @functools.cached_property
    def value_piece_ids(self) -> frozenset[int]:
        """Ids of the tokens that may be a piece of a value: letters and digits only, with no space
        before them ("X", "77", "ield") or one space before a capital or a digit (" H", " 2024"),
        as a name or a number begins. The copy blend may follow one of them on its own
        (``prompt_copy``); " the" or "." start nothing."""
        starts = {
            i
            for i, text in self._pieces
            if text[:1] == " " and text[1:].isalnum() and (text[1].isupper() or text[1].isdigit())
        }
        return self.inner_piece_ids | starts

    @functools.cached_property
    def inner_piece_ids(self) -> frozenset[int]:
        """Ids of the tokens made of letters and digits only, with no space before them ("X", "77",
        "ield"): what continues a word or an id, where the copy blend counts a longer run for more."""
        return frozenset(i for i, text in self._pieces if text.isalnum())

    @functools.cached_property
    def value_marks(self) -> dict[int, str]:
        """The tokens that mark a value in a reply, by the kind of value: "#" and " #" an order id
        ("order #QX-77120"), a currency sign with or without a space before it an amount ("$",
        " £"). What the value grounding (``value_grounding``) watches for."""
        signs = ID_MARK + CURRENCY_SIGNS
        return {i: text.strip() for i, text in self._pieces if len(text.strip()) == 1 and text.strip() in signs}

    @functools.cached_property
    def word_continuation_ids(self) -> frozenset[int]:
        """Ids of the tokens that run on into the word before them: a letter or digit, or a hyphen,
        with no space first ("7", "ES", "-"). After a value the value grounding has finished,
        none may follow ("W2391777" + "7")."""
        return frozenset(i for i, text in self._pieces if text[:1].isalnum() or text[:1] == "-")

    @functools.cached_property
    def frame_ids(self) -> frozenset[int]:
        """Ids of the prompt's frame, which the copy blend never copies: the special tokens and the
        tokens that hold a line break (the turn between "Customer:" and "Agent:")."""
        return self.special_ids | {i for i, text in self._pieces if "\n" in text}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def to_str(self) -> str:
        return self._tok.to_str()

    @classmethod
    def from_str(cls, s: str) -> RetailTokenizer:
        return cls(Tokenizer.from_str(s))

    def save(self, path: str | os.PathLike) -> Path:
        return write_text_atomic(self.to_str(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RetailTokenizer:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: no such tokenizer file")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise TokenizerError(f"{path}: cannot read tokenizer ({str(e).splitlines()[0]})") from None


def train_tokenizer(texts: Iterable[str], vocab_size: int, split_digits: bool = False) -> RetailTokenizer:
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) on ``texts``.

    ``split_digits``: every digit is its own token, so "T1187" and "T1188" differ in one token
    and a model copies an order number digit by digit, instead of meeting "1187" as one token
    it may never have seen.
    """
    n_min = 256 + len(SPECIAL_TOKENS)
    if vocab_size < n_min:
        raise ValueError(f"vocab_size must be >= {n_min} (256 bytes + special tokens), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return RetailTokenizer(tok)
