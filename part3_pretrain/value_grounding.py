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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import torch

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


class GroundedValues:
    """The grounding of one batch of prompts (``ValueGrounding.start``): each row's values as token
    sequences by kind, the marks of each kind and what may not follow a finished value.

    ``apply`` is called once per decoding step with the replies so far, each one token longer than
    at the step before (or finished): the marks a reply has written are found once, as they come,
    and a row whose reply has written none costs one masked fill shared by the batch."""

    def __init__(self, marks: Mapping[int, str], stop: Collection[int], rows: list[dict[str, list[list[int]]]]) -> None:
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
        its kind is left. A copy where anything changes."""
        if self.never is None:
            self.never = self._never(logits.size(-1), logits.device)
            self.any_never = bool(self.never.any())
        out = logits.float().masked_fill(self.never, float("-inf")) if self.any_never else None
        marks, read, written = self.marks, self.read, self.written
        for b, reply in enumerate(replies):
            n = len(reply)
            if n != read[b]:
                if n < read[b]:  # not the reply seen before (a new decoding): read it anew
                    read[b], written[b] = 0, []
                for i in range(read[b], n):
                    if reply[i] in marks:
                        written[b].append(i)
                read[b] = n
            if done[b] or not written[b]:
                continue
            banned, allowed = self._row(reply, b)
            if not banned and allowed is None:
                continue
            out = logits.float().clone() if out is None else out
            if allowed is not None:
                kept = out[b, allowed].clone()
                if not bool(torch.isfinite(kept).any()):  # every continuation banned upstream
                    kept = torch.zeros_like(kept)  # the value still comes first: an even choice
                out[b] = float("-inf")
                out[b, allowed] = kept
            elif len(set(banned)) < out.size(-1):
                out[b, banned] = float("-inf")
        return logits if out is None else out


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

    @classmethod
    def for_tokenizer(cls, tok: RetailTokenizer) -> ValueGrounding:
        """The grounding as every generation path uses it, with the tokenizer's marks."""
        return cls(tok.value_marks, tok.word_continuation_ids, tok.encode, tok.decode)

    def prompt_values(self, prompt: Sequence[int]) -> dict[str, list[list[int]]]:
        """The values a prompt holds by kind, each as the token sequence a reply writes after its mark."""
        found = prompt_values(self.decode(list(prompt)))
        return {kind: [self.encode(v) for v in values] for kind, values in found.items()}

    def start(self, prompts: Sequence[Sequence[int]]) -> GroundedValues:
        """The grounding of one batch of prompts."""
        return GroundedValues(self.marks, self.stop, [self.prompt_values(p) for p in prompts])
