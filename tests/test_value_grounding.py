"""Tests for part3_pretrain.value_grounding (order ids and amounts held to the message at decoding time)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from part3_pretrain.generate import generate
from part3_pretrain.tokenizer import RetailTokenizer, train_tokenizer
from part3_pretrain.value_grounding import (
    BareCodes,
    CodeVocab,
    GroundedValues,
    ValueGrounding,
    allowed_next,
    amount_candidates,
    code_like,
    id_candidates,
    just_ended,
    prompt_values,
    quoted,
)

V = 32
PAD, EOS, MARK, DOLLAR, POUND = 0, 1, 5, 6, 7
STOP = frozenset({10, 11, 12, 13, 20, 21, 22})  # the mock's word pieces (digits, letters)


def test_id_candidates_reads_ids_of_every_shape() -> None:
    text = "hi, order QX-77120 (and #k4821, 2024-118830, ORD-55821, A1234, 4410-K, 88231) pls"
    assert id_candidates(text) == ["QX-77120", "k4821", "2024-118830", "ORD-55821", "A1234", "4410-K", "88231"]
    more = "W2391884; BX7-2291! 77-31290? ZX3310-B, #jx-2210 and 55-80213."  # the other shapes in use
    assert id_candidates(more) == ["W2391884", "BX7-2291", "77-31290", "ZX3310-B", "jx-2210", "55-80213"]
    assert id_candidates("order 88231 and again 88231") == ["88231"]  # each once


def test_id_candidates_skips_amounts_dates_times_and_short_numbers() -> None:
    text = "paid $1,249.00 and €118.40 on 19/09/2025 at 12:30, 1,200 points, Oct 23, order 10442."
    assert id_candidates(text) == ["10442"]  # a full stop after an id is not a decimal point
    assert id_candidates("the 23rd, 200 points, 49 dollars, code SAVE25") == []
    assert id_candidates("order 8823", min_digits=5) == []


def test_amount_candidates_by_currency_sign() -> None:
    text = "paid $1,249.00 (not $58.40), then £ 189 and €118.40 twice: €118.40; 49 dollars, 685.95 AUD"
    assert amount_candidates(text) == {"$": ["1,249.00", "58.40"], "£": ["189"], "€": ["118.40"]}
    assert prompt_values("order A1234 for $5.00") == {"#": ["A1234"], "$": ["5.00"]}
    assert prompt_values("hello") == {"#": []}


def test_allowed_next_follows_the_values_after_the_last_mark() -> None:
    ids = [[10, 11, 12], [10, 13]]
    assert allowed_next([7, 8], [], ids) is None  # no mark: free
    assert allowed_next([7, MARK], [1], ids) == [10]
    assert allowed_next([7, MARK, 10], [1], ids) == [11, 13]  # the two ids part here
    assert allowed_next([7, MARK, 10, 11], [1], ids) == [12]
    assert allowed_next([7, MARK, 10, 13], [1], ids) is None  # an id is complete: free again
    assert allowed_next([7, MARK, 10, 13, 4, MARK], [1, 5], ids) == [10]  # the last mark counts
    assert allowed_next([7, MARK, 9], [1], ids) is None  # nothing fits (cannot happen under the rule)


def test_quoted_and_just_ended_need_the_mark_and_the_whole_value() -> None:
    assert quoted([7, MARK, 10, 11, 4], [1], [10, 11])
    assert not quoted([7, 10, 11, 4], [], [10, 11])  # the value without the mark
    assert not quoted([7, MARK, 10], [1], [10, 11])  # begun, not finished
    assert just_ended([7, MARK, 10, 11], [1], [[10, 11]])
    assert not just_ended([7, MARK, 10, 11, 4], [1], [[10, 11]])
    assert not just_ended([7, 10, 11], [], [[10, 11]])


def _apply(rows: list[dict[str, list[list[int]]]], logits: torch.Tensor, replies, done) -> torch.Tensor:
    """One step of a fresh grounding of ``rows`` (as ``generate`` starts one per batch)."""
    return GroundedValues({MARK: "#", DOLLAR: "$", POUND: "£"}, STOP, rows).apply(logits, replies, done)


def test_grounded_values_hold_each_kind_to_its_own_values() -> None:
    logits = torch.arange(2 * V, dtype=torch.float32).reshape(2, V)
    rows = [{"#": [[10, 11]], "$": [[20, 21]]}, {"#": []}]
    out = _apply(rows, logits, [[7, MARK], [7]], [False, False])
    assert torch.isfinite(out[0]).tolist() == [i == 10 for i in range(V)]  # only the id's first piece
    assert out[0, 10] == logits[0, 10]  # its logit kept
    assert torch.isfinite(_apply(rows, logits, [[7, DOLLAR], [7]], [False, True])[0]).nonzero().flatten().tolist() == [
        20
    ]
    # row 1 holds no value: no mark of any kind; row 0 holds no pound amount: no pound sign
    assert out[1, [MARK, DOLLAR, POUND]].isinf().all() and torch.isfinite(out[1, :MARK]).all()
    assert out[0, 10] > float("-inf")
    free = _apply(rows, logits, [[7], [7]], [False, False])
    assert free[0, POUND] == float("-inf") and free[0, MARK] == logits[0, MARK]
    every_kind = [{"#": [[10, 11]], "$": [[20, 21]], "£": [[22]]}]
    assert torch.equal(_apply(every_kind, logits[:1], [[7, 20]], [False]), logits[:1])  # nothing to hold: unchanged


def test_a_value_ends_where_the_message_ends_it_and_is_quoted_once() -> None:
    logits = torch.zeros(1, V)
    rows = [{"#": [[10, 11], [12, 13]], "$": [[20]], "£": [[21]]}]
    ended = _apply(rows, logits, [[MARK, 10, 11]], [False])
    assert ended[0, sorted(STOP)].isinf().all() and ended[0, 4] == 0  # no run-on ("W2391777" + "7")
    after_first = _apply(rows, logits, [[MARK, 10, 11, 4, MARK]], [False])
    assert torch.isfinite(after_first[0]).nonzero().flatten().tolist() == [12]  # the one not quoted yet
    both = _apply(rows, logits, [[MARK, 10, 11, 4, MARK, 12, 13, 4]], [False])
    assert both[0, MARK] == float("-inf")  # each quoted once: no third mark
    # every continuation banned upstream (a repeat ban): the value still comes first
    banned = torch.zeros(1, V)
    banned[0, [10, 12]] = float("-inf")
    assert torch.isfinite(_apply(rows, banned, [[7, MARK]], [False])[0]).nonzero().flatten().tolist() == [10, 12]


class WrongValueModel(nn.Module):
    """Mock LM without a cache: writes a mark first, then prefers the pieces 20, 21, 22 (a value of
    its own), then EOS. Prompts (4 tokens) hold the id 10 11 12 or none."""

    def __init__(self, mark: int = MARK) -> None:
        super().__init__()
        self.mark = mark
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        logits = torch.zeros(B, T, V)
        for b in range(B):
            n = int(attention_mask[b].sum()) - 4
            wanted = [self.mark, 20, 21, 22][n] if n < 4 else EOS
            logits[b, -1, wanted] = 5.0
            logits[b, -1, 3] = 4.0  # the next best word, where the mark is banned
            logits[b, -1, 10:13] = 1.0
        return logits


def _grounding(prompt_values: dict[tuple[int, ...], dict[str, list[list[int]]]]) -> ValueGrounding:
    """A grounding whose "tokenizer" maps a whole prompt to its values' token sequences."""
    g = ValueGrounding({MARK: "#", DOLLAR: "$"}, STOP, encode=lambda s: [], decode=lambda ids: "")
    object.__setattr__(g, "prompt_values", lambda prompt: prompt_values[tuple(prompt)])
    return g


def test_generate_grounds_values_and_bans_the_mark_where_the_prompt_has_none() -> None:
    with_id, without = [2, 10, 11, 12], [2, 3, 4, 8]
    ground = _grounding({tuple(with_id): {"#": [[10, 11, 12]]}, tuple(without): {"#": []}})
    kw = dict(eos_id=EOS, pad_id=PAD, use_cache=False, temperature=0.0, max_new_tokens=6)
    model = WrongValueModel()
    assert generate(model, [with_id], **kw)[0].tokens == [MARK, 20, 21, 22]  # the model alone invents
    assert generate(model, [with_id], ground=ground, **kw)[0].tokens == [MARK, 10, 11, 12]
    got = generate(model, [with_id, without], ground=ground, **kw)
    assert [r.tokens for r in got] == [[MARK, 10, 11, 12], [3, 20, 21, 22]]  # no mark where no id
    # an amount the message does not hold: the currency sign is banned too
    assert generate(WrongValueModel(DOLLAR), [with_id], ground=ground, **kw)[0].tokens[0] == 3
    # sampling is held the same way: wherever a sampled reply writes the mark, the id follows
    sampled = [generate(model, [with_id], ground=ground, **{**kw, "temperature": 1.0, "seed": s})[0] for s in range(8)]
    marked = [r.tokens[r.tokens.index(MARK) + 1 :][:3] for r in sampled if MARK in r.tokens]
    assert marked and all(m == [10, 11, 12][: len(m)] for m in marked)


@pytest.fixture(scope="module")
def tok() -> RetailTokenizer:
    lines = [
        "Customer: where is order QX-77120? I paid $58.40, not £12.00.",
        "Agent: Your order #QX-77120 is on its way; the $58.40 refund is done.",
    ]
    return train_tokenizer(lines * 20, 400, split_digits=True)


def test_for_tokenizer_reads_the_prompt_and_encodes_values_as_replies_write_them(tok: RetailTokenizer) -> None:
    g = ValueGrounding.for_tokenizer(tok)
    assert set(g.marks.values()) >= {"#", "$"} and g.marks == tok.value_marks
    assert all(tok.decode([m]).strip() == kind for m, kind in g.marks.items())
    assert g.stop == tok.word_continuation_ids and tok.encode("7")[0] in g.stop and tok.encode(" the")[0] not in g.stop
    prompt = tok.encode("Customer: where is order QX-77120? I paid $58.40\nAgent:")
    reply = tok.encode("Your order #QX-77120 is on its way; the $58.40 refund")
    values = g.prompt_values(prompt)
    for kind in ("#", "$"):
        (seq,) = values[kind]
        at = next(i for i, t in enumerate(reply) if g.marks.get(t) == kind)
        assert reply[at + 1 : at + 1 + len(seq)] == seq  # what the reply writes after the mark


def test_code_like_reads_codes_not_counts_ranges_or_ordinals() -> None:
    for word in ("77120", "2026", "EASTER2026", "A12", "X-7", "RMA-5", "QX-7", "k4821", "JIJO2"):
        assert code_like(word), word
    for word in ("24", "123", "5-7", "24-48", "30-day", "1-year", "23rd", "2nd", "QX-", "Oct", ""):
        assert not code_like(word), word


def _bare(tok: RetailTokenizer, message: str, reply: str) -> tuple[set[str], list[str] | None]:
    """(the digits banned, the pieces allowed or None) after ``reply`` to ``message``."""
    codes = BareCodes(CodeVocab(tok.piece_texts), [f"Customer: {message}\nAgent:"])
    banned, allowed = codes.rule(0, tok.encode(reply))
    return {tok.decode([i]) for i in banned}, None if allowed is None else [tok.decode([i]) for i in allowed]


def test_bare_codes_hold_unmarked_codes_to_the_message(tok: RetailTokenizer) -> None:
    digits = set("0123456789")
    message = "where is order QX-77120? I paid $58.40"
    assert _bare(tok, message, "held up at X-") == (digits, None)  # the id's tail: no digit may start it
    assert _bare(tok, message, "the code JIJO") == (digits, None)  # letters then digits: a code
    assert _bare(tok, message, "your order QX-") == (digits - {"7"}, None)  # as the message has it
    assert _bare(tok, message, "your order QX-7") == (set(), ["7"])  # begun: it must be finished
    assert _bare(tok, message, "your order QX-77120") == (digits, None)  # complete: no run-on digit
    assert _bare(tok, message, "within 2") == (set(), None)  # short numbers are free
    assert _bare(tok, message, "within 24 hours, 5-") == (set(), None)  # a range
    assert _bare(tok, message, "order 771") == (digits, None)  # a fourth digit would make a code it lacks
    assert _bare(tok, "order 88231 please", "order 882") == (set(), ["3"])  # after "order": an id, finished
    # after "order", "order number" or "order no." any number is an id (as the job metrics read it)
    assert _bare(tok, message, "your order number ") == (digits - {"5", "4"}, None)  # only "58", "40" begin so
    assert _bare(tok, message, "your order 3") == (digits, None)
    assert _bare(tok, message, "within 3") == (set(), None)  # not after "order": a short number is free


def test_bare_codes_finish_a_code_begun_as_the_message_has_it(tok: RetailTokenizer) -> None:
    codes = BareCodes(CodeVocab(tok.piece_texts), ["Customer: where is order QX-77120?\nAgent:"])
    reply = tok.encode("Your order QX-77")
    banned, allowed = codes.rule(0, reply)
    assert banned == [] and allowed and all("QX-77" + tok.decode([i]) in "QX-77120" for i in allowed)
    # the same object read on one token at a time agrees with a fresh read
    step = BareCodes(CodeVocab(tok.piece_texts), ["Customer: where is order QX-77120?\nAgent:"])
    for n in range(1, len(reply) + 1):
        got = step.rule(0, reply[:n])
    assert got == (banned, allowed)
