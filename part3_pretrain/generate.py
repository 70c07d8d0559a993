"""Sampling from the GPT for batched prompts: temperature, top-k, top-p, a stop token.

``sample_next`` turns one step of logits into token ids; ``generate`` left-pads prompts in chunks,
prefills once and decodes token by token, with the ``KVCache`` (default) or by recomputing the
whole masked sequence every step (the reference path, also usable with a mock model that has no
cache). PAD is always banned, EOS finishes a row and is not part of its tokens, and each prompt's own
``torch.Generator``, seeded from the call's seed and the prompt's index, makes the samples
reproducible and independent of the batch size.

Two options serve every caller (evaluation, the experiment mode, the chat): ``no_repeat_ngram``
(n > 0) bans, per row, any token that would repeat an n-gram the reply already holds, unless the
prompt holds that n-gram too (copying an order id from the message, twice if need be, is the
job), and ``on_token(row, id)`` is called for each token as it is generated, which is how the
chat streams a reply from this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .model import KVCache
from .prompt_copy import CopyBlend
from .value_grounding import GroundedValues, ValueGrounding


@dataclass
class GenerationResult:
    """What one prompt produced."""

    tokens: list[int]  # generated ids, EOS excluded
    stopped_by_eos: bool  # False: hit max_new_tokens (or the model's block_size)


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """Raise ValueError for sampling settings outside their ranges."""
    problems = []
    if not temperature >= 0:  # also rejects NaN
        problems.append(f"temperature must be >= 0 (got {temperature})")
    if top_k < 0:
        problems.append(f"top_k must be >= 0 (got {top_k})")
    if not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1] (got {top_p})")
    if problems:
        raise ValueError("; ".join(problems))


def _ban(logits: torch.Tensor, banned_ids: Sequence[int]) -> torch.Tensor:
    """Copy of logits (B, V) with the banned columns set to -inf."""
    V = logits.size(-1)
    banned = sorted(set(int(i) for i in banned_ids))
    if any(not 0 <= i < V for i in banned):
        raise ValueError(f"banned ids {banned} outside the vocabulary [0, {V})")
    if len(banned) == V:
        raise ValueError("every token id is banned")
    out = logits.float().clone()  # float32: sampling maths is cheap and low precision hurts it
    if banned:
        out[:, banned] = float("-inf")
    return out


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th are kept too)."""
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability sums to >= p (at least one)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # (B, V) mass of the more likely tokens
    drop = before >= p
    drop[:, 0] = False  # the most likely token always survives
    drop = drop.scatter(-1, order, drop)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    banned_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V).

    Banned ids get -inf first. ``temperature == 0`` is greedy (argmax); otherwise the logits are
    divided by the temperature, filtered by top-k (0 = off) and top-p (1 = off) and sampled
    (``_draw``) with ``uniform``, one number in [0, 1) per row (B,) drawn by the caller, or else
    with numbers from ``generator``.
    """
    check_sampling(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    logits = _ban(logits, banned_ids)  # (B, V)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k > 0:
        logits = _top_k(logits, top_k)
    if top_p < 1.0:
        logits = _top_p(logits, top_p)
    return _draw(torch.softmax(logits, dim=-1), generator, uniform)


def _draw(probs: torch.Tensor, generator: torch.Generator | None, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """One id per row of ``probs`` (B, V), by inverse CDF: one uniform number per row, found in
    the row's cumulative sum (float64). An id of probability 0 (banned, filtered) is never drawn:
    the search takes the first id whose cumulative sum exceeds the number, and a zero adds
    nothing. ``torch.multinomial`` draws the same distribution but took 4 ms per call for 64
    rows of 2,048 ids on the CPU (it makes random numbers per id); this takes 0.1 ms."""
    cdf = probs.double().cumsum(dim=-1)  # (B, V)
    if uniform is None:
        u = torch.rand(probs.size(0), 1, generator=generator, device=probs.device, dtype=torch.float64)
    else:
        u = uniform.to(device=probs.device, dtype=torch.float64).view(-1, 1)
    ids = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)  # (B, 1)
    return ids.clamp_(max=probs.size(-1) - 1).squeeze(-1)  # (B,)


def ngrams(tokens: Sequence[int], n: int) -> set[tuple[int, ...]]:
    """Every n-gram of ``tokens`` (empty when n < 1)."""
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)} if n >= 1 else set()


def allowed_repeats(prompt: Sequence[int], n: int, skip: Collection[int] = frozenset()) -> set[tuple[int, ...]]:
    """What a reply may repeat because the message holds it (``repeat_bans``' ``allowed``): the
    prompt's n-grams, and its three back-to-back copies of shorter k-grams ("000" in "A1000"),
    counted without the ``skip`` tokens as ``repeat_bans`` counts them."""
    if n < 1:
        return set()
    words = [t for t in prompt if t not in skip]
    return ngrams(words, n).union(*(ngrams(words, 3 * k) for k in range(1, n)))


def repeat_bans(
    tokens: Sequence[int], n: int, allowed: set[tuple[int, ...]] = frozenset(), skip: Collection[int] = frozenset()
) -> list[int]:
    """Tokens that would complete an n-gram already in ``tokens``, or a third back-to-back copy of a
    shorter k-gram ("still still still", "ab ab ab": repeats too short for the n-gram rule). None
    when n < 1; never what ``allowed`` holds (``allowed_repeats``: a reply may restate an order id
    twice, or the "000" of one).

    With n = 3 and tokens ``a b c a b``, ``c`` is banned: ``a b c`` would occur twice. With n = 4
    and ``a b a b a``, ``b`` is banned: ``a b`` would occur three times in a row. Tokens in ``skip``
    (punctuation: ``RetailTokenizer.punctuation_ids``) are left out of every n-gram and never
    banned, so "the order number, and the order number and" repeats a 4-gram too.
    """
    if n < 1:
        return []
    t = tuple(x for x in tokens if x not in skip)
    L = len(t)
    grams = set()  # what the next token would complete
    if L >= n:
        tail = t[L - n + 1 :]
        grams = {t[i : i + n] for i in range(L - n + 1) if t[i : i + n - 1] == tail}
    for k in range(1, n):
        if L < 3 * k - 1:
            break
        first = t[L - 3 * k + 1 : L - 2 * k + 1]
        if first == t[L - 2 * k + 1 : L - k + 1] and first[: k - 1] == t[L - k + 1 :]:
            grams.add(first * 3)
    return sorted({g[-1] for g in grams if g not in allowed})


def _ban_repeats(
    logits: torch.Tensor,
    tokens: list[list[int]],
    finished: list[bool],
    n: int,
    allowed: list[set],
    skip: Collection[int] = frozenset(),
) -> torch.Tensor:
    """Logits (B, V) with each unfinished row's repeat bans at -inf (a row keeps at least one token)."""
    if n < 1:
        return logits
    out = None
    for b, (row, done) in enumerate(zip(tokens, finished, strict=True)):
        banned = [] if done else repeat_bans(row, n, allowed[b], skip)
        if banned and len(banned) < logits.size(-1):
            out = logits.float().clone() if out is None else out
            out[b, banned] = float("-inf")
    return logits if out is None else out


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids (B, L) left-padded to the longest prompt and the mask (B, L), 1 = real token."""
    L = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), L), dtype=torch.long)
    for b, p in enumerate(prompts):
        idx[b, L - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[b, L - len(p) :] = 1
    return idx.to(device), mask.to(device)


def _block_size(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "block_size", None)


def _check_prompts(prompts: Sequence[Sequence[int]], block_size: int | None) -> None:
    """Every prompt must be non-empty and leave room for at least one new token."""
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty")
        if block_size is not None and len(p) > block_size - 1:
            raise ValueError(f"prompt {i} has length {len(p)} > block_size - 1 = {block_size - 1}")


def _check_counts(max_new_tokens: int, batch_size: int, no_repeat_ngram: int) -> None:
    """Raise ValueError for a count below its least value."""
    for name, value, least in (
        ("max_new_tokens", max_new_tokens, 0),
        ("batch_size", batch_size, 1),
        ("no_repeat_ngram", no_repeat_ngram, 0),
    ):
        if value < least:
            raise ValueError(f"{name} must be >= {least} (got {value})")


@dataclass
class _Sampling:
    """Per-call settings shared by every chunk."""

    eos_id: int
    pad_id: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    use_cache: bool
    seed: int  # each row's random numbers come from it and the row's index in the call (``row_uniforms``)
    no_repeat_ngram: int = 0
    repeat_skip: Collection[int] = frozenset()
    on_token: Callable[[int, int], None] | None = None
    offset: int = 0  # index of the chunk's first prompt in the call, for on_token
    copy: CopyBlend | None = None
    copy_masks: tuple | None = None  # CopyBlend.masks, made at the first token
    ground: ValueGrounding | None = None


def _next_logits(
    logits: torch.Tensor,
    prompts: tuple[torch.Tensor, torch.Tensor],
    tokens: list[list[int]],
    finished: torch.Tensor,
    allowed: list[set],
    s: _Sampling,
    grounded: GroundedValues | None = None,
) -> torch.Tensor:
    """The last position's logits (B, V) with the prompt-copy blend, the repeat bans and the value
    grounding applied, in that order."""
    last = logits[:, -1]
    if s.copy is not None:
        if s.copy_masks is None:
            s.copy_masks = s.copy.masks(last.size(-1), last.device)
        last = s.copy.apply(last, *prompts, tokens, finished, s.copy_masks)
    done = finished.tolist()
    last = _ban_repeats(last, tokens, done, s.no_repeat_ngram, allowed, s.repeat_skip)
    return last if grounded is None else grounded.apply(last, tokens, done)


def _keep(tokens: list[list[int]], nxt: torch.Tensor, finished: torch.Tensor, s: _Sampling) -> None:
    """Append each unfinished row's new token (not EOS) to its reply and show it to ``on_token``."""
    for b, (t, done) in enumerate(zip(nxt.tolist(), finished.tolist(), strict=False)):
        if not done and t != s.eos_id:
            tokens[b].append(t)
            if s.on_token is not None:
                s.on_token(s.offset + b, t)


def row_uniforms(seed: int, rows: Sequence[int], steps: int) -> torch.Tensor:
    """(len(rows), steps) numbers in [0, 1) (float64): row r's from its own generator, seeded by
    ``seed`` and r alone. A sampled reply then depends on its prompt, its index in the call and
    the seed, never on which other prompts share its batch (``--eval-batch-size``, the chunking,
    when other rows finish)."""
    out = torch.empty(len(rows), max(steps, 0), dtype=torch.float64)
    for i, r in enumerate(rows):
        g = torch.Generator().manual_seed(_row_seed(seed, r))
        out[i] = torch.rand(max(steps, 0), generator=g, dtype=torch.float64)
    return out


def _row_seed(seed: int, row: int) -> int:
    """A 32-bit seed for ``row`` under ``seed`` (the CPU generator keeps 32 bits of a seed):
    SplitMix64's finaliser of the pair, so that near seeds and rows give unrelated streams."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + row * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & 0xFFFFFFFF


def _drop_finished(cache: KVCache, live: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """The rows to run from here: ``live`` less its finished rows once they are an eighth of it
    (at least one), their keys and values dropped from ``cache``; else ``live`` as it is.

    A finished row's tokens are PAD and change nothing, but every step would still compute them
    and read their cached keys; a chunk's replies end at very different lengths. Copying the
    cache costs about what one step's attention reads, so it is done in steps of an eighth."""
    done = finished[live]
    n_done = int(done.sum())
    if n_done == 0 or n_done < len(live) / 8:
        return live
    keep = (~done).nonzero().squeeze(1)
    cache.keep(keep)
    return live[keep]


def _widen(logits: torch.Tensor, live: torch.Tensor, batch: int) -> torch.Tensor:
    """The logits of the ``live`` rows (n, T, V) placed in a (batch, T, V) tensor, zeros elsewhere
    (finished rows, whose next token is never kept)."""
    if len(live) == batch:
        return logits
    out = logits.new_zeros((batch,) + tuple(logits.shape[1:]))
    out[live] = logits
    return out


class _Forward:
    """The model's side of decoding one chunk (B rows, prompts of L tokens, ``steps`` new ones):
    the prefill, then one call per new token, with the ``KVCache`` (from which finished rows are
    dropped, ``_drop_finished``) or by recomputing the whole sequence."""

    def __init__(self, model: nn.Module, idx: torch.Tensor, steps: int, use_cache: bool) -> None:
        self.model, self.idx = model, idx
        B, L = idx.shape
        self.live = torch.arange(B, device=idx.device)  # the rows the model still runs, in the cache's order
        dtype = next(model.parameters()).dtype
        self.cache = KVCache(model.config, B, L + steps, idx.device, dtype) if use_cache else None

    def prefill(self, mask: torch.Tensor) -> torch.Tensor:
        """The logits after the prompts: (B, 1, V) with the cache, (B, L, V) without."""
        if self.cache is None:
            return self.model(self.idx, attention_mask=mask)
        return self.model(self.idx, attention_mask=mask, kv_cache=self.cache, last_only=True)

    def step(self, fed: torch.Tensor, mask: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
        """The logits after the new tokens ``fed`` (B, 1); ``mask``: every position so far."""
        if self.cache is None:
            self.idx = torch.cat([self.idx, fed], dim=1)  # (B, L + step + 1)
            return self.model(self.idx, attention_mask=mask)  # (B, L + step + 1, V)
        self.live = _drop_finished(self.cache, self.live, finished)
        out = self.model(fed[self.live], attention_mask=mask[self.live], kv_cache=self.cache)
        return _widen(out, self.live, self.idx.size(0))  # (B, 1, V)


def _generate_chunk(
    model: nn.Module, prompts: Sequence[Sequence[int]], s: _Sampling, device: torch.device
) -> list[GenerationResult]:
    """Decode one left-padded chunk until every row has EOS or the token budget is spent.

    The budget is shared by the chunk: the padded length plus new tokens stays within block_size.
    """
    idx, mask = _left_pad(prompts, s.pad_id, device)  # (B, L) each
    source = (idx, mask.bool())  # what the copy blend copies from
    B, L = idx.shape
    block_size = _block_size(model)
    steps = s.max_new_tokens if block_size is None else min(s.max_new_tokens, block_size - L)
    tokens: list[list[int]] = [[] for _ in range(B)]
    # what the message says may be said again
    allowed = [allowed_repeats(p, s.no_repeat_ngram, s.repeat_skip) for p in prompts]
    grounded = None if s.ground is None else s.ground.start(prompts)  # the ids and amounts each prompt holds
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    if steps <= 0:
        return [GenerationResult(t, False) for t in tokens]
    # every row's numbers for the whole budget, whatever this chunk's share of it: the same per row in any chunking
    uniforms = row_uniforms(s.seed, range(s.offset, s.offset + B), s.max_new_tokens) if s.temperature > 0 else None
    forward = _Forward(model, idx, steps, s.use_cache)
    logits = forward.prefill(mask)
    for step in range(steps):
        nxt = sample_next(
            _next_logits(logits, source, tokens, finished, allowed, s, grounded),
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            banned_ids=(s.pad_id,),
            uniform=None if uniforms is None else uniforms[:, step],
        )  # (B,)
        _keep(tokens, nxt, finished, s)
        finished |= nxt == s.eos_id
        if bool(finished.all()) or step == steps - 1:
            break
        # Finished rows get PAD with mask 0: they no longer influence anything.
        fed = torch.where(finished, torch.full_like(nxt, s.pad_id), nxt).unsqueeze(1)  # (B, 1)
        mask = torch.cat([mask, (~finished).long().unsqueeze(1)], dim=1)  # (B, L + step + 1)
        logits = forward.step(fed, mask, finished)
    done = finished.tolist()
    return [GenerationResult(t, bool(d)) for t, d in zip(tokens, done, strict=False)]


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    use_cache: bool = True,
    batch_size: int = 32,
    no_repeat_ngram: int = 0,
    repeat_skip: Collection[int] = frozenset(),
    on_token: Callable[[int, int], None] | None = None,
    copy: CopyBlend | None = None,
    ground: ValueGrounding | None = None,
) -> list[GenerationResult]:
    """Continue each prompt (token ids) until EOS, ``max_new_tokens`` or the model's block size.

    Prompts go in chunks of ``batch_size``, in order, left-padded per chunk, the model in eval mode
    (its mode restored after). Each prompt samples with its own random numbers, from ``seed`` and
    its index in the call (``row_uniforms``): equal arguments, equal samples, whatever
    ``batch_size``. ``no_repeat_ngram`` > 0 bans repeating an n-gram of the reply (``repeat_bans``;
    ``repeat_skip``: token ids it reads through, the tokenizer's ``punctuation_ids``);
    ``on_token(prompt_index, token_id)`` sees each kept token as it is generated (never EOS).
    ``copy`` blends a copy of the prompt into each next token (``prompt_copy.CopyBlend``);
    ``ground`` holds the ids and amounts a reply writes after a mark ("#", "$") to those its prompt
    holds (``value_grounding.ValueGrounding``)."""
    check_sampling(temperature, top_k, top_p)
    _check_counts(max_new_tokens, batch_size, no_repeat_ngram)
    if eos_id == pad_id:
        raise ValueError(f"eos_id and pad_id must differ (both {eos_id})")
    _check_prompts(prompts, _block_size(model))
    if len(prompts) == 0:
        return []
    device = next(model.parameters()).device
    s = _Sampling(eos_id, pad_id, max_new_tokens, temperature, top_k, top_p, use_cache, seed, no_repeat_ngram)
    s.repeat_skip, s.on_token, s.copy, s.ground = frozenset(repeat_skip), on_token, copy, ground
    was_training = model.training
    model.eval()
    try:
        results: list[GenerationResult] = []
        for start in range(0, len(prompts), batch_size):
            s.offset = start
            results += _generate_chunk(model, prompts[start : start + batch_size], s, device)
        return results
    finally:
        model.train(was_training)
