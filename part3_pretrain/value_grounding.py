"""Order ids and amounts grounded in the message at decoding time: a reply states them only as the
message has them.

An agent who quotes an order number or an amount the customer never gave, or gives back
"QX-77120" as "Qi-77120" and "£189.00" as "$189.00", is wrong in the way that costs most. A small
model does both: it has learned that a reply says "order #" and then an id, "a refund of $" and
then an amount. Where it cannot read the message's value it writes one it has seen, starts the
right one with the wrong piece, or runs on past its end ("W2391777" -> "W23917777"); the copy
blend (``prompt_copy``) mends a value only once the reply has begun to restate it.

``ValueGrounding`` is a constraint on the decoder, applied after the model, the copy blend and the
repeat bans. A value in a reply follows a mark (``RetailTokenizer.value_marks``): "#" before an
order id, a currency sign ("$", " £", ...) before an amount. After the reply writes a mark, the
next tokens may only spell one of the values of that kind the prompt holds (``prompt_values``)
that the reply has not quoted yet, token by token, and once one is complete the next token may
not run on into the same word (``RetailTokenizer.word_continuation_ids``). The model still
chooses which value, and whether to write a mark at all. Where the prompt holds no value of a
mark's kind, or the reply has quoted each once, the mark is banned: the reply cannot quote an id
or an amount the customer never gave, an amount in another currency, or a value twice (a second
"#" was where a reply went wrong: "order #U5171 ordered on order #U5-5171"). Nothing else in the
reply is touched.

Which words are ids is decided from the text (``id_candidates``): a run of letters, digits and
inner hyphens with at least four digits that is not part of an amount ("$1,249.00", "€118.40"),
a date ("24/01/2026") or a time. Promo codes with digits ("EASTER2026") count too: a reply that
writes "#" before one quotes what the customer wrote, which is not inventing. Amounts are the
numbers written right after a currency sign (``amount_candidates``).

A code can also come without a mark: "your order QX-77120", "the code EASTER2026". Where a
reply does that, ``BareCodes`` holds it to the message too. A word of the reply that reads as a
code (``code_like``: four digits in a row, letters and digits in one piece, digits after a
lettered piece, as in "X-7") must begin as a word of the message does, checked at each digit
the reply writes: "held up at Mop X-77120" (the id's tail) and "the code JIJO2026" (for
EASTER2026) stop at their first digit. Once such a code is begun as the message has it, the
reply finishes it ("QX-771" is not left short). Short numbers ("24 hours", "2 to 3 days"),
ranges ("5-7"), ordinals ("23rd") and "30-day" are not codes; the 500 best-rated generated
replies and the hand-written references hold no code that their message does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .name_grounding import GroundedNames, NameVocab, ReplyWords, prefixes_of
from .tokenizer import CURRENCY_SIGNS, ID_MARK, RetailTokenizer

MIN_DIGITS = 4  # "A1234", "k4821", "88231", "jx-2210"; not "200 points", "$58.40", "Oct 23"
ID_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
AMOUNT_RE = re.compile(f"([{re.escape(CURRENCY_SIGNS)}])" + r" ?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)")
AMOUNT_OR_DATE_BEFORE = frozenset(CURRENCY_SIGNS + ",./:")  # "$1249", "1,200", "19/09/2025", "12:30"


def id_candidates(text: str, min_digits: int = MIN_DIGITS) -> list[str]:
    """The words of ``text`` that read as an order id, in order, each once: letters, digits and
    inner hyphens with at least ``min_digits`` digits, not part of an amount, a date or a time
    (no currency sign, "/", ":", "." or "," just before it, no "/" or ":" just after it, no
    decimal or thousands separator followed by a digit after it)."""
    out: list[str] = []
    for m in ID_WORD_RE.finditer(text):
        word = m.group()
        if sum(c.isdigit() for c in word) < min_digits or word in out:
            continue
        before = text[m.start() - 1] if m.start() > 0 else ""
        after = text[m.end() : m.end() + 2]
        if before in AMOUNT_OR_DATE_BEFORE or after[:1] in ("/", ":"):
            continue
        if after[:1] in (".", ",") and after[1:2].isdigit():
            continue
        out.append(word)
    return out


def amount_candidates(text: str) -> dict[str, list[str]]:
    """The amounts of ``text`` by currency sign, in order, each once: the number written right
    after "$", "£", "€" or "¥" ("$1,249.00" -> {"$": ["1,249.00"]}; "49 dollars" is not one)."""
    out: dict[str, list[str]] = {}
    for sign, number in AMOUNT_RE.findall(text):
        if number not in out.setdefault(sign, []):
            out[sign].append(number)
    return out


def prompt_values(text: str) -> dict[str, list[str]]:
    """Every value of ``text`` a reply may quote after a mark: {"#": ids, "$": amounts, ...}."""
    return {ID_MARK: id_candidates(text), **amount_candidates(text)}


ORDINAL_RE = re.compile(r"\d+(?:st|nd|rd|th)")
# words that name what follows as an order's id, as the job metrics read them ("order number 30")
ORDER_BEFORE_RE = re.compile(r"\border\s+(?:number\s+|no\.?\s+|id\s+)?#?\s*$", re.IGNORECASE)
ORDER_CONTEXT = 24  # characters before a word that are read for those words
WORD_TAIL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*$")  # the word a text ends in, hyphen kept ("QX-")


def code_like(word: str) -> bool:
    """Whether ``word`` (letters, digits, hyphens) reads as a code: a piece with at least
    MIN_DIGITS digits ("77120", "2026"), a piece of letters and digits that is not an ordinal
    ("EASTER2026", "A12"; not "23rd"), or digits in a piece after a lettered one ("X-7", "RMA-5";
    not "30-day", "5-7")."""
    lettered = False
    for piece in word.split("-"):
        digits = sum(c.isdigit() for c in piece)
        letters = any(c.isalpha() for c in piece)
        if digits >= MIN_DIGITS or (digits and (letters or lettered) and not ORDINAL_RE.fullmatch(piece)):
            return True
        lettered = lettered or letters
    return False


def quoted(reply: Sequence[int], at: Sequence[int], seq: Sequence[int]) -> bool:
    """Whether ``reply`` holds the value ``seq`` (token ids) right after one of its marks at ``at``."""
    return any(list(reply[i + 1 : i + 1 + len(seq)]) == list(seq) for i in at)


def allowed_next(reply: Sequence[int], at: Sequence[int], values: Sequence[Sequence[int]]) -> list[int] | None:
    """What the next token of ``reply`` may be under the grounding: the next token of every value
    in ``values`` (token sequences) that the tokens after the reply's last mark (``at``: where its
    marks of this kind are) begin, sorted; None when the reply is free (no mark yet, a value
    already complete after it, or none of ``values`` fits)."""
    if not at:
        return None
    after = list(reply[at[-1] + 1 :])
    fitting = [seq for seq in values if list(seq[: len(after)]) == after]
    if not fitting or any(len(seq) <= len(after) for seq in fitting):
        return None
    return sorted({seq[len(after)] for seq in fitting})


def just_ended(reply: Sequence[int], at: Sequence[int], values: Sequence[Sequence[int]]) -> bool:
    """Whether the tokens after the reply's last mark (``at``) are exactly one of ``values``."""
    return bool(at) and any(list(reply[at[-1] + 1 :]) == list(seq) for seq in values)


class CodeVocab:
    """What ``BareCodes`` needs of a tokenizer's pieces (``pieces``: id -> text), read once."""

    def __init__(self, pieces: Mapping[int, str]) -> None:
        self.pieces = pieces
        digits = [(i, t) for i, t in pieces.items() if any(c.isdigit() for c in t)]
        self.single = [(i, t) for i, t in digits if len(t) == 1]  # "7": it extends the word before it
        self.other = [(i, t) for i, t in digits if len(t) > 1]  # " 2024", "7."
        self.word_pieces: dict[str, list[int]] = {}
        for i, t in pieces.items():
            if t and WORD_TAIL_RE.fullmatch(t):
                self.word_pieces.setdefault(t, []).append(i)


class BareCodes:
    """Codes written without a mark, held to one batch's messages (module docstring).

    ``vocab``: the tokenizer's pieces as the rule reads them; ``texts``: each row's prompt as text.
    Each row's reply is read one token at a time into the word it ends in (``tail``)."""

    def __init__(self, vocab: CodeVocab, texts: Sequence[str]) -> None:
        self.pieces, self.single, self.other = vocab.pieces, vocab.single, vocab.other
        self.word_pieces = vocab.word_pieces
        self.words = [set(ID_WORD_RE.findall(t)) for t in texts]
        self.prefixes = [prefixes_of(words) for words in self.words]
        self.tail = [""] * len(texts)
        self.read = [0] * len(texts)
        self.before = [""] * len(texts)  # the end of the text before the open word
        self.named = [False] * len(texts)  # whether the open word follows "order", "order number", ...

    def _advance(self, b: int, reply: Sequence[int]) -> str:
        """The word row ``b``'s reply ends in, read on from where the last call stopped."""
        if len(reply) < self.read[b]:  # not the reply seen before (a new decoding): read it anew
            self.read[b], self.tail[b], self.named[b] = 0, "", False
        for t in reply[self.read[b] :]:
            piece = self.pieces.get(t, " ")
            if piece in self.word_pieces and self.tail[b]:
                self.tail[b] += piece  # the common case: the word goes on
            else:
                text = self.tail[b] + piece
                m = WORD_TAIL_RE.search(text)
                self.tail[b] = m.group() if m else ""
                if not m or m.start() > 0:  # a new word (or none) is open: what stands before it?
                    self.before[b] = (self.before[b] + text[: m.start() if m else len(text)])[-ORDER_CONTEXT:]
                    self.named[b] = bool(ORDER_BEFORE_RE.search(self.before[b]))
        self.read[b] = len(reply)
        return self.tail[b]

    def _fits(self, b: int, text: str) -> bool:
        """Whether every code in ``text`` begins as a word of row ``b``'s message does."""
        return all(w in self.prefixes[b] for w in ID_WORD_RE.findall(text) if code_like(w))

    def rule(self, b: int, reply: Sequence[int]) -> tuple[list[int], list[int] | None]:
        """(banned ids, allowed ids or None) for the next token of row ``b``'s ``reply``."""
        word = self._advance(b, reply)
        words, prefixes = self.words[b], self.prefixes[b]
        named = self.named[b]  # after "order (number)": any number is an id
        is_code = code_like(word) or (named and any(c.isdigit() for c in word))
        if word and word not in words and word in prefixes and is_code:
            ahead = {m[len(word) :] for m in words if m.startswith(word) and len(m) > len(word)}
            allowed = {i for rest in ahead for k in range(1, len(rest) + 1) for i in self.word_pieces.get(rest[:k], ())}
            return [], sorted(allowed) or None  # a code begun as the message has it: finish it
        banned = [i for i, t in self.other if not self._fits(b, word + t)]
        if named or code_like(word + "0"):  # any digit after this word makes a code: the message must have it
            banned += [i for i, t in self.single if word + t not in prefixes]
        return banned, None


class GroundedValues:
    """The grounding of one batch of prompts (``ValueGrounding.start``): each row's values as token
    sequences by kind, the marks of each kind and what may not follow a finished value.

    ``apply`` is called once per decoding step with the replies so far, each one token longer than
    at the step before (or finished): the marks a reply has written are found once, as they come,
    and a row whose reply has written none costs one masked fill shared by the batch."""

    def __init__(
        self,
        marks: Mapping[int, str],
        stop: Collection[int],
        rows: list[dict[str, list[list[int]]]],
        codes: BareCodes | None = None,
        names: Callable[[int], GroundedNames] | None = None,
    ) -> None:
        self.codes = codes  # codes written without a mark; None: not held
        self.make_names = names  # the name rule for a vocabulary size; None: names not held
        self.names: GroundedNames | None = None
        self.kinds: dict[str, list[int]] = {}
        for token, kind in marks.items():
            self.kinds.setdefault(kind, []).append(token)
        self.marks = dict(marks)
        self.stop = sorted(stop)
        self.rows = rows
        self.read = [0] * len(rows)  # how much of each reply has been scanned for marks
        self.written: list[list[int]] = [[] for _ in rows]  # where each reply wrote a mark
        self.never: torch.Tensor | None = None  # (B, V) the marks of kinds a row's prompt holds none of
        self.any_never = False

    def _never(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        mask = torch.zeros(len(self.rows), vocab_size, dtype=torch.bool, device=device)
        for b, values in enumerate(self.rows):
            for kind, kind_marks in self.kinds.items():
                if not values.get(kind):
                    mask[b, [t for t in kind_marks if t < vocab_size]] = True
        return mask

    def _row(self, reply: list[int], b: int) -> tuple[list[int], list[int] | None]:
        """(banned ids, allowed ids or None) for the next token of row ``b``, whose reply has marks."""
        banned: list[int] = []
        allowed = None
        for kind, kind_marks in self.kinds.items():
            seqs = self.rows[b].get(kind, [])
            at = [i for i in self.written[b] if self.marks[reply[i]] == kind]
            if not seqs or not at:
                continue  # no such value (banned by ``never``), or no such mark yet: free
            if just_ended(reply, at, seqs):
                banned += self.stop  # a value ends where the message's ends ("W2391777" + "7")
            left = [seq for seq in seqs if not quoted(reply, at, seq)]
            allowed = allowed_next(reply, at, left) or allowed
            if not left:  # each quoted once: no further mark of this kind
                banned += kind_marks
        return banned, allowed

    def apply(self, logits: torch.Tensor, replies: list[list[int]], done: Sequence[bool]) -> torch.Tensor:
        """``logits`` (B, V) with every unfinished row held to its grounding: inside a value only the
        tokens that continue one of the row's values of that kind not yet quoted (their logits
        kept, the rest -inf), no run-on after a finished value, and a mark banned where no value of
        its kind is left; then, outside a value, codes without a mark (``BareCodes``) and names
        (``GroundedNames``). A copy where anything changes."""
        if self.never is None:
            self.never = self._never(logits.size(-1), logits.device)
            self.any_never = bool(self.never.any())
            self.names = None if self.make_names is None else self.make_names(logits.size(-1))
        out = logits.float().masked_fill(self.never, float("-inf")) if self.any_never else None
        marks, read, written = self.marks, self.read, self.written
        bans: dict[int, list[int]] = {}  # banned ids by row (no run-on, spent marks, codes), filled in at the end
        masks: dict[int, torch.Tensor] = {}  # the name rule's bans by row, likewise
        for b, reply in enumerate(replies):
            n = len(reply)
            if n != read[b]:
                if n < read[b]:  # not the reply seen before (a new decoding): read it anew
                    read[b], written[b] = 0, []
                for i in range(read[b], n):
                    if reply[i] in marks:
                        written[b].append(i)
                read[b] = n
            if done[b] or not (written[b] or self.codes or self.names):
                continue
            banned, allowed = self._row(reply, b) if written[b] else ([], None)
            if allowed is None and self.codes is not None:
                more, allowed = self.codes.rule(b, reply)
                banned += more
            mask = None
            if allowed is None and self.names is not None:
                allowed, mask = self.names.rule(b, reply)
            if allowed is not None:
                out = logits.float().clone() if out is None else out
                kept = out[b, allowed].clone()
                if not bool(torch.isfinite(kept).any()):  # every continuation banned upstream
                    kept = torch.zeros_like(kept)  # the value still comes first: an even choice
                out[b] = float("-inf")
                out[b, allowed] = kept
                continue
            if banned:
                bans[b] = banned
            if mask is not None:
                masks[b] = mask
        return self._ban(logits if out is None else out, bans, masks)

    @staticmethod
    def _ban(out: torch.Tensor, bans: dict[int, list[int]], masks: dict[int, torch.Tensor]) -> torch.Tensor:
        """``out`` with each row's banned ids (``bans``: row -> ids; ``masks``: row -> (V,) bool)
        set to -inf, in one batched fill; a row left with no token at all keeps what it had (the
        bans give way)."""
        if not bans and not masks:
            return out
        full = torch.zeros(out.shape, dtype=torch.bool, device=out.device)
        if masks:
            full[list(masks)] = torch.stack(list(masks.values())).to(out.device)
        if bans:  # flat lists of ints: torch reads them far faster than a list of pairs
            rows = torch.tensor([b for b, ids in bans.items() for _ in ids], dtype=torch.long)
            cols = torch.tensor([i for ids in bans.values() for i in ids], dtype=torch.long)
            full[rows.to(out.device), cols.to(out.device)] = True
        masked = out.float().masked_fill(full, float("-inf"))
        empty = ~torch.isfinite(masked).any(-1)
        return torch.where(empty[:, None], out.float(), masked) if bool(empty.any()) else masked


@dataclass(frozen=True)
class ValueGrounding:
    """The grounding's settings, as ``generate`` takes them: ``marks`` token id -> the kind of value
    it marks ("#" for ids, a currency sign for amounts), ``stop`` the tokens that would run on
    into a finished value's word, ``encode`` text to token ids (a value is encoded alone, with
    no space before it, as it follows the mark), ``decode`` token ids to text (to read a prompt's
    values)."""

    marks: Mapping[int, str]
    stop: frozenset[int]
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    pieces: Mapping[int, str] | None = None  # each token's text: codes without a mark held too (BareCodes)
    names: ReplyWords | None = None  # capitalised words replies may write of their own; None: names free
    codes: bool = True  # hold codes written without a mark (BareCodes), where ``pieces`` is given
    _vocabs: dict = field(default_factory=dict, compare=False, repr=False)  # CodeVocab, NameVocab by size: read once

    @classmethod
    def for_tokenizer(
        cls, tok: RetailTokenizer, names: ReplyWords | None = None, values: bool = True
    ) -> ValueGrounding:
        """The grounding as every generation path uses it, with the tokenizer's marks; ``names``
        (``name_grounding.reply_words`` of the model's training replies) holds names too;
        ``values=False`` leaves ids, amounts and codes free (names only)."""
        marks = tok.value_marks if values else {}
        return cls(marks, tok.word_continuation_ids, tok.encode, tok.decode, tok.piece_texts, names, values)

    def _code_vocab(self) -> CodeVocab:
        if "codes" not in self._vocabs:
            self._vocabs["codes"] = CodeVocab(self.pieces or {})
        return self._vocabs["codes"]

    def _name_vocab(self, vocab_size: int) -> NameVocab:
        if vocab_size not in self._vocabs:
            self._vocabs[vocab_size] = NameVocab(self.pieces or {}, vocab_size)
        return self._vocabs[vocab_size]

    def prompt_values(self, prompt: Sequence[int]) -> dict[str, list[list[int]]]:
        """The values a prompt holds by kind, each as the token sequence a reply writes after its mark."""
        found = prompt_values(self.decode(list(prompt)))
        return {kind: [self.encode(v) for v in values] for kind, values in found.items()}

    def start(self, prompts: Sequence[Sequence[int]]) -> GroundedValues:
        """The grounding of one batch of prompts."""
        texts = [self.decode(list(p)) for p in prompts] if self.pieces is not None else []
        codes = BareCodes(self._code_vocab(), texts) if self.pieces is not None and self.codes else None
        names = None
        if self.pieces is not None and self.names is not None:
            known = self.names
            names = lambda v: GroundedNames(self._name_vocab(v), texts, known)  # noqa: E731
        return GroundedValues(self.marks, self.stop, [self.prompt_values(p) for p in prompts], codes, names)
