"""Capitalised words grounded at decoding time: a reply writes a name only as the message or the
model's own training replies have it.

A small model that cannot read a name writes one that looks like it: "Bufield Velvet Cushion" for
the Mayfield Velvet Cushion, "Hi Hiik," for no name at all, a carrier that does not exist ("held
up at a Gimos Parcel sorting facility"). Such words are capitalised, and an agent's own
capitalised words are few: the ones its replies begin sentences with ("Thanks", "I've", "Please")
and the abbreviations of the trade ("VAT", "PDF").

``NameGrounding`` holds every capitalised word of a reply (a run of letters, apostrophes and
hyphens that begins with a capital) to two sources, token by token:
- the words of the prompt, as written there (a customer's "Rafael", "Mayfield", "GLS");
- ``known``: the capitalised words the model's training replies write that their own message does
  not hold (``reply_words``), stored with the model so that the chat holds them too. Those the
  replies write only to begin a sentence ("Thanks", "Please", "My") may only begin one: in the
  middle of a sentence, where a reply that cannot read a name reaches for any capitalised word
  ("held up at a My", "delayed on the Gift range"), only the message's words and the replies' own
  inner ones ("I've", "VAT") are left.

A capitalised word may begin only as one of these words begins; once begun, it may only go on as
one of them does and end where one of them ends. Lower-case words, digits and punctuation are
never touched, and neither are words the model runs on into from a lower-case start. It is one
of the decoder's grounding rules (``value_grounding.ValueGrounding``), which applies it after the
ids and amounts: inside a value, the value decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

NAME_TAIL_RE = re.compile(r"[A-Za-z][A-Za-z'-]*$")  # the word a text ends in ("Rafael", "I'", "Llewellyn-")
NAME_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")
WORD_CHARS_RE = re.compile(r"[A-Za-z'-]*")
SPACE_CAPITAL_RE = re.compile(r"\s+([A-Z][A-Za-z'-]*)")  # " Mayfield", " Bu": a piece that begins a capitalised word
CAPITAL_RE = re.compile(r"[A-Z][A-Za-z'-]*")  # "T", "Bu": one that begins it where no word is open
CONTINUE_RE = re.compile(r"[A-Za-z'-]+")  # "hank", "field", "'ve", "-Hart": one that goes on with a word


SPEAKER_RE = re.compile(r"^[ \t]*[A-Za-z]+:", re.MULTILINE)  # a prompt's frame: "Customer:", "Agent:"


def prompt_words(prompt: str) -> set[str]:
    """The words of a prompt a reply may write, its speaker labels ("Customer:") aside."""
    return words_of(SPEAKER_RE.sub(" ", prompt))


def words_of(text: str) -> set[str]:
    """The words of ``text`` as a reply may write them: each run of letters, apostrophes and hyphens,
    and its parts before an apostrophe or a hyphen ("Llewellyn-Hart's" -> "Llewellyn-Hart's",
    "Llewellyn-Hart", "Llewellyn")."""
    out: set[str] = set()
    for word in NAME_WORD_RE.findall(text):
        word = word.rstrip("'-")
        out.add(word)
        for i, c in enumerate(word):
            if c in "'-":
                out.add(word[:i])
    out.discard("")
    return out


SENTENCE_START_RE = re.compile(r"(?:[.!?]\s*|\n\s*)$")  # what comes before a sentence's first word
TAIL_CHARS = 64  # how much of a reply's end the rule reads (a longer word is not a name)
MAX_NAME_QUOTES = 2  # times a reply may write one of the message's names (the 500 best replies: at most 2)


@dataclass(frozen=True)
class ReplyWords:
    """The capitalised words replies write of their own (``reply_words``): ``initial`` only to begin
    a sentence, ``inner`` (also) inside one."""

    initial: frozenset[str] = frozenset()
    inner: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, list[str]]:
        return {"initial": sorted(self.initial), "inner": sorted(self.inner)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Iterable[str]]) -> ReplyWords:
        return cls(frozenset(d.get("initial", ())), frozenset(d.get("inner", ())))


def reply_words(pairs: Iterable[tuple[str, str]]) -> ReplyWords:
    """The capitalised words that replies write of their own: in a (message, reply) pair's reply,
    not in its message, split by where the replies write them. What ``NameGrounding`` allows
    beside a prompt's words."""
    initial: set[str] = set()
    inner: set[str] = set()
    for message, reply in pairs:
        own = words_of(message)
        for m in NAME_WORD_RE.finditer(reply):
            if not m.group()[0].isupper():
                continue
            at_start = _sentence_start(reply[: m.start()])
            new = {w for w in words_of(m.group()) if w not in own}
            (initial if at_start else inner).update(new)
    return ReplyWords(frozenset(initial - inner), frozenset(inner))


class NameVocab:
    """What the rule needs of a tokenizer's pieces (``pieces``: id -> text), read once."""

    def __init__(self, pieces: Mapping[int, str], vocab_size: int) -> None:
        self.pieces = dict(pieces)
        self.vocab_size = vocab_size
        # the pieces that begin a capitalised word by the word they begin: with a space first
        # (" Mayfield", after a word) and without (where no word is open, "T" of "Thanks")
        self.space_capitals: dict[str, list[int]] = {}
        self.capitals: dict[str, list[int]] = {}
        self.continuers = torch.zeros(vocab_size, dtype=torch.bool)  # no space first: goes on with a word
        self.word_pieces: dict[str, list[int]] = {}
        for i, text in self.pieces.items():
            if i >= vocab_size:
                continue
            if m := SPACE_CAPITAL_RE.fullmatch(text):
                self.space_capitals.setdefault(m.group(1), []).append(i)
            if CAPITAL_RE.fullmatch(text):
                self.capitals.setdefault(text, []).append(i)
            if CONTINUE_RE.fullmatch(text):
                self.continuers[i] = True
                self.word_pieces.setdefault(text, []).append(i)
        self.all_space_capitals = _mask(vocab_size, self.space_capitals)
        self.all_capitals = _mask(vocab_size, self.capitals) | self.all_space_capitals

    def allowed_starts(self, prefixes: set[str], space_only: bool) -> list[int]:
        """The pieces that begin a capitalised word as one of ``prefixes`` does."""
        groups = (self.space_capitals,) if space_only else (self.space_capitals, self.capitals)
        return [i for g in groups for p in prefixes for i in g.get(p, ())]


def _mask(vocab_size: int, groups: Mapping[str, list[int]]) -> torch.Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[[i for ids in groups.values() for i in ids]] = True
    return mask


class GroundedNames:
    """The name rule for one batch of prompts: each row's allowed words, inside a sentence and at
    its start, and each reply read one token at a time."""

    def __init__(self, vocab: NameVocab, texts: Sequence[str], known: ReplyWords) -> None:
        self.vocab = vocab
        self.message = [prompt_words(t) for t in texts]
        # by "at a sentence's start"; a word replies only begin sentences with ("My", "Please") does only
        # that, even where the message has it
        inner = [(w - known.initial) | known.inner for w in self.message]
        self.words = {False: inner, True: [w | known.initial for w in inner]}
        self.prefixes = {k: [prefixes_of(w) for w in rows] for k, rows in self.words.items()}
        self.own = known.initial | known.inner
        self.quoted: list[dict[str, int]] = [{} for _ in texts]  # how often each message word was written
        self.text = [""] * len(texts)
        self.read = [0] * len(texts)
        self.capital = [False] * len(texts)  # whether the reply ended in a capitalised word at the last call
        n, v = len(texts), vocab.vocab_size
        # a capitalised word that no allowed one begins as: after a word (with a space) and where
        # none is open (with or without one), at a sentence's start or inside one
        self.new_word_ban = {k: torch.zeros(n, v, dtype=torch.bool) for k in (False, True)}
        self.open_ban = {k: torch.zeros(n, v, dtype=torch.bool) for k in (False, True)}
        self._bans(range(n))

    def _bans(self, rows: Iterable[int]) -> None:
        """The masks of the capitalised words no allowed one begins as, for ``rows``, from their
        words now: every capitalised start banned, then the allowed ones let through, in one
        indexed write per mask."""
        rows = list(rows)
        for start, prefixes in self.prefixes.items():
            for ban, space_only, every in (
                (self.new_word_ban[start], True, self.vocab.all_space_capitals),
                (self.open_ban[start], False, self.vocab.all_capitals),
            ):
                ban[rows] = every
                starts = [self.vocab.allowed_starts(prefixes[b], space_only) for b in rows]
                if any(starts):  # flat lists of ints: torch reads them far faster than a list of pairs
                    at = torch.tensor([b for b, ids in zip(rows, starts, strict=True) for _ in ids], dtype=torch.long)
                    ban[at, torch.tensor([i for ids in starts for i in ids], dtype=torch.long)] = False

    def _count(self, b: int, old_len: int) -> None:
        """Count the message's capitalised words that the text read since ``old_len`` completed; one
        written MAX_NAME_QUOTES times may not be written again (a reply that keeps reaching for a
        name loops: "on the Giorgio is Giorgio can ...")."""
        text, lo = self.text[b], max(0, old_len - TAIL_CHARS)
        spent = []
        for m in NAME_WORD_RE.finditer(text, lo):
            end, word = m.end(), m.group().rstrip("'-")
            if not old_len <= end < len(text) or not word[0].isupper():
                continue
            if word in self.message[b] and word not in self.own:
                self.quoted[b][word] = self.quoted[b].get(word, 0) + 1
                if self.quoted[b][word] == MAX_NAME_QUOTES:
                    spent.append(word)
        if spent:
            for rows in self.words.values():
                rows[b] = rows[b] - set(spent)
            for start in self.prefixes:
                self.prefixes[start][b] = prefixes_of(self.words[start][b])
            self._bans([b])

    def _advance(self, b: int, reply: Sequence[int]) -> str:
        """Row ``b``'s reply as text, read on from where the last call stopped."""
        if len(reply) < self.read[b]:  # not the reply seen before (a new decoding): read it anew
            self.read[b], self.text[b], self.capital[b] = 0, "", False
        pieces = self.vocab.pieces
        old_len = len(self.text[b])
        new = "".join(pieces.get(t, " ") for t in reply[self.read[b] :])
        self.text[b] += new
        self.read[b] = len(reply)
        if (self.capital[b] or new != new.lower()) and not WORD_CHARS_RE.fullmatch(new):  # a name may have ended
            self._count(b, old_len)
        return self.text[b]

    def _ahead(self, words: set[str], word: str) -> set[int]:
        """The pieces that take ``word`` on towards one of ``words``."""
        rests = {w[len(word) :] for w in words if len(w) > len(word) and w.startswith(word)}
        pieces = self.vocab.word_pieces
        return {i for rest in rests for k in range(1, len(rest) + 1) for i in pieces.get(rest[:k], ())}

    def rule(self, b: int, reply: Sequence[int]) -> tuple[list[int] | None, torch.Tensor | None]:
        """(allowed ids or None, banned ids as a (V,) mask or None) for the next token of row ``b``."""
        text = self._advance(b, reply)
        m = NAME_TAIL_RE.search(text[-TAIL_CHARS:])
        word = m.group() if m else ""
        self.capital[b] = word[:1].isupper()
        if not word:  # no word open: a capitalised one may begin only as an allowed one does
            return None, self.open_ban[_sentence_start(text)][b]
        start = _sentence_start(text[: len(text) - len(word)])
        after = _sentence_start(text)  # where a word after this one would stand
        if not word[0].isupper() or word not in self.prefixes[start][b]:
            return None, self.new_word_ban[after][b]  # a lower-case word (or one begun before the rule): free
        words = self.words[start][b]
        ahead = self._ahead(words, word)
        if word.rstrip("'-") not in words:
            return (sorted(ahead) or None), None  # begun as an allowed word: it goes on as one
        if word.rstrip("'-") not in self.message[b]:  # a reply's own word goes on only to another ("I" -> "I've"), not
            ahead = self._ahead(words - self.message[b], word)  # into a name of the message ("Hi" -> "Hiking")
        banned = self.vocab.continuers.clone()  # complete: it ends here, or goes on to a longer one
        if ahead:
            banned[sorted(ahead)] = False
        return None, banned | self.new_word_ban[after][b]


def _sentence_start(text: str) -> bool:
    """Whether a word after ``text`` (a reply so far) begins a sentence."""
    return not text.strip() or bool(SENTENCE_START_RE.search(text[-TAIL_CHARS:]))


def prefixes_of(words: set[str]) -> set[str]:
    """Every prefix of every word ("QX", "QX-", "QX-7", ...), for checking a word begun."""
    return {w[:k] for w in words for k in range(1, len(w) + 1)}
