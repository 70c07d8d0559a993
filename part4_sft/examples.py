"""SFT examples: tokenise with masks, audit the labels, batch.

One example is ``prompt(context) + response + EOS``. Inputs and labels are aligned (label t is
the token after input t), and a label is -100 wherever the next token belongs to the prompt, and
on padding, so only the response and its EOS are learned. A conversation (a row with "turns") is
one example too: every assistant turn and its EOS are learned, the system message and user turns
are masked (``Example.spans``: the trained replies' label positions); a conversation too long for
the context loses whole oldest turns, never part of a reply. ``audit_labels`` re-derives that
from the token ids, independently of the builder, and fails on any violation before training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from part3_pretrain.model import IGNORE_INDEX
from part3_pretrain.tokenizer import RetailTokenizer

from .prompts import PromptScheme


class LabelAuditError(ValueError):
    """Masked labels that would train the wrong tokens (context, PAD) or never train EOS."""


Span = tuple[int, int]  # [start, end) of the label positions of one trained reply (its EOS last)
Chunk = tuple[str, list[int]]  # (role, ids) of one message of a conversation


@dataclass
class Example:
    input_ids: list[int]  # prompt + response + EOS, minus the last token
    labels: list[int]  # aligned targets: -100 on the prompt part
    prompt_len: int  # number of tokens before the first trained reply (after any truncation)
    context_truncated: bool = False  # the prompt lost tokens, or (conversations) turns or its system message
    spans: tuple[Span, ...] = ()  # the trained replies' label positions; () = the one reply after the prompt
    turns_dropped: int = 0  # messages of a conversation dropped to fit the context

    def __post_init__(self) -> None:
        if not self.spans:
            self.spans = ((self.prompt_len - 1, len(self.labels)),)


def build_example(
    tok: RetailTokenizer, scheme: PromptScheme, context: str, response: str, max_len: int
) -> Example | None:
    """The masked example for one pair, or None when the response + EOS alone exceeds ``max_len``.

    A too-long prompt loses tokens from its left (the oldest context); the response is never cut,
    because a cut response would teach the model to stop without EOS.
    """
    prompt_ids = scheme.encode_prompt(tok, context)
    target_ids = tok.encode(scheme.response(response)) + [tok.eos_id]
    budget = max_len + 1 - len(target_ids)  # ids = inputs + one final target
    if budget < 1:
        return None
    truncated = len(prompt_ids) > budget
    prompt_ids = prompt_ids[-budget:]
    ids = prompt_ids + target_ids
    labels = [IGNORE_INDEX] * (len(prompt_ids) - 1) + target_ids
    return Example(ids[:-1], labels, len(prompt_ids), truncated)


def fit_conversation(chunks: Sequence[Chunk], budget: int) -> tuple[list[Chunk], int, bool] | None:
    """A conversation's chunks cut to at most ``budget`` tokens: whole oldest exchanges (a user
    turn and its reply) are dropped first, then the system message, then the oldest tokens of the
    last user turn, which keeps at least one. Everything from the last user turn on (the final
    reply, if any) is never cut: None when it does not fit. Returns (chunks, messages dropped,
    whether anything was cut)."""
    system = list(chunks[:1]) if chunks and chunks[0][0] == "system" else []
    turns = list(chunks[len(system) :])
    last_user = max(i for i, (role, _) in enumerate(turns) if role == "user")
    dropped = 0

    def total() -> int:
        return sum(len(ids) for _, ids in system + turns)

    while total() > budget and last_user >= 2:
        turns, last_user, dropped = turns[2:], last_user - 2, dropped + 2
    if total() > budget and system:
        system, dropped = [], dropped + 1
    excess = total() - budget
    if excess <= 0:
        return system + turns, dropped, dropped > 0
    role, first = turns[0]
    if len(first) <= excess:
        return None
    return [(role, first[excess:]), *turns[1:]], dropped, True


@dataclass
class Fitted:
    """A conversation with retrieved exchanges fitted to a budget (``fit_with_retrieved``)."""

    chunks: list[Chunk]  # what is kept, in order: system message, retrieved exchanges, own turns
    retrieved: range  # the positions in ``chunks`` of the retrieved exchanges kept
    dropped: int  # the row's OWN messages dropped (retrieved exchanges dropped are not counted)
    truncated: bool  # the row's own messages lost a message or tokens


def _total(chunks: Sequence[Chunk]) -> int:
    return sum(len(ids) for _, ids in chunks)


def fit_with_retrieved(own: Sequence[Chunk], retrieved: Sequence[Chunk], budget: int) -> Fitted | None:
    """``fit_conversation`` of a row's own chunks with ``retrieved`` exchanges (``retrieval.py``)
    placed after its system message and before its first turn: the retrieved exchanges are the
    oldest, so they go first, whole, before anything of the row's own. None when the last
    exchange alone cannot fit."""
    system = list(own[:1]) if own and own[0][0] == "system" else []
    everything = system + list(retrieved) + list(own[len(system) :])
    fitted = fit_conversation(everything, budget)
    if fitted is None:
        return None
    chunks, dropped, _ = fitted
    gone = min(dropped, len(retrieved))
    system_kept = int(bool(system) and chunks[0][0] == "system")
    uncut = chunks[:system_kept] + everything[len(everything) - len(chunks) + system_kept :]
    cut = _total(chunks) < _total(uncut)  # the oldest tokens of the last user turn went
    kept = range(system_kept, system_kept + len(retrieved) - gone)
    return Fitted(chunks, kept, dropped - gone, dropped > gone or cut)


def own_turns(row: Mapping, reply_key: str = "response") -> list[dict]:
    """A row's own messages: its "turns", or its context and ``reply_key`` (empty when absent) as
    one exchange."""
    if row.get("turns"):
        return list(row["turns"])
    return [{"role": "user", "content": row["context"]}, {"role": "assistant", "content": row.get(reply_key, "")}]


def build_conversation_example(
    tok: RetailTokenizer,
    scheme: PromptScheme,
    turns: Sequence[dict],
    max_len: int,
    final_only: bool = False,
    retrieved: Sequence[dict] = (),
) -> Example | None:
    """The masked example for a conversation: every assistant turn and its EOS trained (with
    ``final_only``, the last one only), everything else masked, ``retrieved`` exchanges (before
    its first turn) included. Too long for ``max_len``: retrieved exchanges, then whole oldest
    turns go first (``fit_with_retrieved``); None when the last exchange alone cannot fit."""
    extra = scheme.encode_conversation(tok, retrieved) if retrieved else []
    fitted = fit_with_retrieved(scheme.encode_conversation(tok, turns), extra, max_len + 1)  # inputs + 1 target
    if fitted is None:
        return None
    chunks = fitted.chunks
    ids: list[int] = []
    spans: list[Span] = []
    for i, (role, chunk) in enumerate(chunks):
        own_reply = role == "assistant" and i not in fitted.retrieved
        if own_reply and (not final_only or i == len(chunks) - 1):
            spans.append((len(ids) - 1, len(ids) - 1 + len(chunk)))
        ids += chunk
    labels = [IGNORE_INDEX] * (len(ids) - 1)
    for start, end in spans:
        labels[start:end] = ids[start + 1 : end + 1]
    return Example(ids[:-1], labels, spans[0][0] + 1, fitted.truncated, tuple(spans), fitted.dropped)


def build_examples(
    tok: RetailTokenizer, scheme: PromptScheme, pairs: Sequence[dict], max_len: int, final_only: bool = False
) -> tuple[list[Example], dict]:
    """Examples for ``pairs`` (dicts with context/response; conversations also with "turns"; rows
    with "retrieved" exchanges put them before their own turns) and counts of what was dropped or
    cut. ``final_only``: train only a conversation's last reply (the reference that evaluation
    scores)."""
    examples, too_long = [], 0
    for p in pairs:
        if p.get("turns") or p.get("retrieved"):
            ex = build_conversation_example(tok, scheme, own_turns(p), max_len, final_only, p.get("retrieved") or ())
        else:
            ex = build_example(tok, scheme, p["context"], p["response"], max_len)
        if ex is None:
            too_long += 1
        else:
            examples.append(ex)
    counts = {
        "pairs": len(pairs),
        "examples": len(examples),
        "dropped_response_too_long": too_long,
        "context_truncated": sum(e.context_truncated for e in examples),
        "turns_dropped": sum(e.turns_dropped for e in examples),
    }
    return examples, counts


def prompt_ids(tok: RetailTokenizer, scheme: PromptScheme, row: Mapping | str, max_len: int) -> tuple[list[int], bool]:
    """The generation prompt of a row (or a bare context) in at most ``max_len`` tokens, and whether
    the row's own text was cut: a pair's prompt loses its oldest tokens, a conversation (its
    "turns") is rendered up to its final reply, whole oldest turns dropped first, and a row's
    "retrieved" exchanges come before its own turns and go first, as in training."""
    if not isinstance(row, Mapping) or not (row.get("turns") or row.get("retrieved")):
        ids = scheme.encode_prompt(tok, row["context"] if isinstance(row, Mapping) else row)
        return ids[-max_len:], len(ids) > max_len
    extra = scheme.encode_conversation(tok, row.get("retrieved") or [])
    fitted = fit_with_retrieved(scheme.encode_conversation(tok, own_turns(row)[:-1]), extra, max_len)
    if fitted is None:  # not reachable for max_len >= 1: the last user turn keeps a token
        raise ValueError(f"no prompt fits in {max_len} tokens")
    return [t for _, ids in fitted.chunks for t in ids], fitted.truncated


def _span_problems(i: int, ex: Example, eos_id: int) -> list[str]:
    """Spans that are out of order or out of range, or whose labels are not exactly the next
    input tokens ending with EOS."""
    problems = []
    previous_end = 0
    for k, (start, end) in enumerate(ex.spans):
        if not previous_end <= start < end <= len(ex.labels):
            problems.append(f"example {i}: span {k} {(start, end)} is out of order or out of range")
            break
        previous_end = end
        expected = ex.input_ids[start + 1 : end + 1] + ([eos_id] if end == len(ex.input_ids) else [])
        if ex.labels[start:end] != expected or ex.labels[end - 1] != eos_id:
            problems.append(f"example {i}: labels of reply {k} are not exactly the reply + EOS")
    return problems


def _outside_spans(ex: Example) -> list[int]:
    """The labels outside the example's spans (all must be -100)."""
    inside = set()
    for start, end in ex.spans:
        inside.update(range(start, end))
    return [t for j, t in enumerate(ex.labels) if j not in inside]


def audit_labels(examples: Sequence[Example], tok: RetailTokenizer) -> dict:
    """Check every example's labels from the ids alone; raise LabelAuditError on any violation.

    Rules: each example has trainable tokens and ends with a trained EOS; no label falls outside
    its spans (the prompt, a user turn, a system message); every label of a span is the next
    input token and the span ends with EOS (each reply is trained exactly, with its stop); PAD is
    never a label; no special id (EOS, PAD, a role token) is a label anywhere but a span's final
    EOS, so text in a response never trains a stop. A pair's one span starts at its prompt's end.
    """
    problems: list[str] = []
    n = dict.fromkeys(("targets", "eos", "spans", "context", "pad", "special"), 0)
    for i, ex in enumerate(examples):
        targets = [t for t in ex.labels if t != IGNORE_INDEX]
        n["targets"] += len(targets)
        if not targets:
            problems.append(f"example {i}: no trainable tokens")
            continue
        n["spans"] += len(ex.spans)
        n["eos"] += sum(ex.labels[end - 1] == tok.eos_id for _, end in ex.spans if 0 < end <= len(ex.labels))
        n["context"] += sum(t != IGNORE_INDEX for t in _outside_spans(ex))
        n["pad"] += sum(t == tok.pad_id for t in targets)
        ends = {end - 1 for _, end in ex.spans}
        n["special"] += sum(
            t in tok.special_ids for j, t in enumerate(ex.labels) if t != IGNORE_INDEX and j not in ends
        )
        problems += _span_problems(i, ex, tok.eos_id)
        if ex.labels[-1] != tok.eos_id:
            problems.append(f"example {i}: does not end with a trained EOS")
    if n["context"]:
        problems.append(f"{n['context']} context tokens would be trained")
    if n["pad"]:
        problems.append(f"{n['pad']} PAD tokens would be trained")
    if n["special"]:
        problems.append(f"{n['special']} special tokens would be trained before the final EOS")
    counts = {
        "examples": len(examples),
        "trainable_tokens": n["targets"],
        "eos_trained": n["eos"],
        "replies_trained": n["spans"],
        "context_tokens_trained": n["context"],
        "pad_tokens_trained": n["pad"],
        "special_tokens_inside_targets": n["special"],
        "violations": len(problems),
    }
    if problems:
        raise LabelAuditError(f"label audit failed ({len(problems)} problems): " + "; ".join(problems[:5]))
    return counts


PAD_MULTIPLE = 16  # batch lengths are rounded up to this (see ``collate``)


def collate(examples: Sequence[Example], pad_id: int, max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of THIS batch; labels are padded with -100, never PAD.

    The length is rounded up to a multiple of PAD_MULTIPLE (capped at ``max_len``): with a new
    length every step, oneDNN caches a bf16 kernel per shape and memory grows without bound
    (measured 1.6 GB after 300 steps at batch 1, vs 0.5 GB with rounding).
    Right padding needs no attention mask for training: with causal attention, real tokens
    never see the padding that follows them, so the fast unmasked attention path is exact.
    """
    longest = max(len(e.input_ids) for e in examples)
    T = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    T = max(longest, min(T, max_len)) if max_len is not None else T
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    return {"input_ids": ids, "labels": labels}


class SFTBatches:
    """Epochs over examples in a seeded order per epoch; resumable; rank-sharded under DDP.

    A single process keeps the ragged last batch of an epoch (every example is seen once per
    epoch); under DDP the ragged remainder is dropped so every rank gets a full batch.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        pad_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_len: int | None = None,
    ) -> None:
        if len(examples) < batch_size * world_size:
            raise ValueError(f"{len(examples)} examples are fewer than one batch ({batch_size * world_size})")
        self.examples, self.batch, self.pad_id = list(examples), batch_size, pad_id
        self.seed, self.rank, self.world, self.max_len = seed, rank, world_size, max_len
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    @property
    def steps_per_epoch(self) -> int:
        n, g = len(self.examples), self.batch * self.world
        return -(-n // g) if self.world == 1 else n // g

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.examples), generator=g).tolist()

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.index >= self.steps_per_epoch * self.batch * self.world:
            self.epoch, self.index = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        start = self.index + self.rank * self.batch
        idx = self._order[start : start + self.batch]
        self.index += self.batch * self.world
        return collate([self.examples[i] for i in idx], self.pad_id, self.max_len)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._permutation(self.epoch)


def fixed_batches(
    examples: Sequence[Example], batch_size: int, pad_id: int, max_len: int | None = None
) -> list[dict[str, torch.Tensor]]:
    """Examples in order, batched once: a fixed evaluation set for loss and token accuracy."""
    return [collate(examples[i : i + batch_size], pad_id, max_len) for i in range(0, len(examples), batch_size)]


def mean_step_tokens(examples: Sequence[Example], batch_size: int) -> int:
    """Tokens of an average training step: ``batch_size`` rows of the mean example length. What
    ``--dtype auto`` weighs on a CPU (``trainer.AUTO_BF16_MIN_TOKENS``): the examples, not the
    context, decide how large the products of a step are (a 640-token context whose examples
    average 200 tokens runs 200-token steps)."""
    if not examples:
        return 0
    return round(batch_size * sum(len(e.input_ids) for e in examples) / len(examples))
