"""Copying from the prompt at decoding time: a pointer that needs no training.

A small model reads a value it has never seen ("Mayfield Velvet Cushion", "QX-77120") as a run of
short BPE pieces and copies it piece by piece with an induction head, which matches on the one
token before: after "Mayfi" + "el" it may continue with the "ve" that followed the "el" of
"Velvet" ("Mayfielvet"). The decoder can match on more than one token. ``copy_distribution`` finds
the longest run of the reply's last tokens that the prompt also holds and puts its mass on the
token(s) that followed that run in the prompt; ``mix_copy`` blends it into the model's next-token
distribution, ``(1 - mix) * p_model + mix * p_copy``, on the rows that have such a run.

A blend, not a rule: where the model is sure of another token (the reply goes on after the id
with " is on its way") it keeps it, since a copy weight ``mix`` < 0.5 beats a model probability
only where the model is torn. Inside a word the share grows with the run (``row_mix``): after
"Cedar ... C" + "ed" the "ar" of "Cedar" wins even where the model is sure of "us". Nothing is
copied before the reply has started a run that the prompt holds, so it completes values the reply
is restating and never brings in a new one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .tokenizer import RetailTokenizer

MAX_SHARE = 1 - 1e-6  # a grown share stays below 1: the model's own distribution always counts
NO_TOKEN = -1  # fills ``recent`` where the reply is shorter than the window; never a token id


def recent_tokens(replies: list[list[int]], window: int, device: torch.device | None = None) -> torch.Tensor:
    """The last ``window`` ids of each reply (B, window), right-aligned, ``NO_TOKEN`` before."""
    rows = [[NO_TOKEN] * (window - len(tail)) + tail for tail in (r[-window:] if window > 0 else [] for r in replies)]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(replies), window)


def vocab_mask(ids: Collection[int] | None, vocab_size: int, device: torch.device | None = None) -> torch.Tensor | None:
    """(V,) bool with ``ids`` set (ids outside the vocabulary ignored); None stays None."""
    if ids is None:
        return None
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    keep = sorted(int(i) for i in ids if 0 <= int(i) < vocab_size)
    if keep:
        mask[keep] = True
    return mask


def match_lengths(src: torch.Tensor, valid: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
    """For each prompt position j (B, L): how many of the reply's last tokens ``recent`` (B, K)
    end at j, i.e. the largest m <= K with src[j - m + 1 .. j] == the reply's last m tokens (0: none).
    Positions where ``valid`` is False (padding) never match."""
    K = recent.size(1)
    # padding and the positions before the prompt hold an id that nothing in ``recent`` equals
    src = torch.where(valid, src, torch.full_like(src, NO_TOKEN - 1))
    padded = torch.nn.functional.pad(src, (K - 1, 0), value=NO_TOKEN - 1)  # (B, K - 1 + L)
    windows = padded.unfold(1, K, 1)  # (B, L, K): the K prompt tokens ending at each j
    same = windows == recent.unsqueeze(1)  # (B, L, K)
    # the run counts matches back from the last token until the first mismatch
    return same.flip(-1).long().cumprod(dim=-1).sum(dim=-1)


def copy_distribution(
    src: torch.Tensor,
    valid: torch.Tensor,
    recent: torch.Tensor,
    vocab_size: int,
    min_match: int = 1,
    lone: torch.Tensor | None = None,
    never: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The copy distribution (B, V), which rows have one (B,) bool, and their run lengths (B,).

    For each row, the longest run m >= ``min_match`` of the reply's last tokens found in the prompt
    ``src`` (B, L; ``valid`` marks real tokens); every place it ends spreads equal mass on the
    prompt token after it (those places must have one). Rows without such a run get zeros.
    ``lone`` (V,) bool: the tokens a run of one may be (a piece inside a word: the "Q" of
    "#Q" continues with the "X" of "QX-77120", but a lone "." or " the" starts nothing); ``never``
    (V,) bool: tokens never copied (the prompt's frame). None: no such limit."""
    if min_match < 1:
        raise ValueError(f"min_match must be >= 1 (got {min_match})")
    length = match_lengths(src, valid, recent)  # (B, L)
    nxt = torch.zeros_like(src)
    nxt[:, :-1] = src[:, 1:]
    nxt_valid = torch.zeros_like(valid)
    nxt_valid[:, :-1] = valid[:, 1:]
    if never is not None:
        nxt_valid &= ~never[nxt.clamp(0, vocab_size - 1)]
    length = length * nxt_valid.long()  # a run at the prompt's end has nothing to copy
    if lone is not None:
        last = recent[:, -1]
        alone_ok = (last != NO_TOKEN) & lone[last.clamp(0, vocab_size - 1)]  # (B,)
        length = torch.where((length == 1) & ~alone_ok.unsqueeze(1), torch.zeros_like(length), length)
    best = length.max(dim=1).values  # (B,)
    has = best >= min_match
    chosen = (length == best.unsqueeze(1)) & has.unsqueeze(1)  # (B, L)
    p = torch.zeros(src.size(0), vocab_size, dtype=torch.float32, device=src.device)
    p.scatter_add_(1, nxt.clamp(0, vocab_size - 1), chosen.float())
    return p / p.sum(dim=1, keepdim=True).clamp_min(1.0), has, best


def row_mix(mix: float, p_copy: torch.Tensor, run: torch.Tensor, inner: torch.Tensor | None) -> torch.Tensor:
    """Each row's copy share (B,): ``mix``, or ``1 - (1 - mix) ** run`` where everything the row
    would copy is in ``inner`` (V,) bool (a piece that continues a word: the "d" of "Mayfiel|d"),
    so that a longer run inside a word counts for more, as several pieces of evidence would. At a
    word's end the share stays ``mix``: the reply goes its own way after the value."""
    flat = torch.full((p_copy.size(0),), float(mix), device=p_copy.device)
    if inner is None:
        return flat
    within = ((p_copy > 0) & ~inner.unsqueeze(0)).sum(dim=1) == 0  # (B,)
    grown = (1 - (1 - mix) ** run.clamp(min=1).float()).clamp(max=MAX_SHARE)  # 1 - 0.05^8 rounds to 1
    return torch.where(within, torch.maximum(grown, flat), flat)


def mix_copy(logits: torch.Tensor, p_copy: torch.Tensor, has: torch.Tensor, mix: float | torch.Tensor) -> torch.Tensor:
    """Log of ``(1 - mix) * softmax(logits) + mix * p_copy`` on the rows in ``has`` (B, V); the
    other rows' logits unchanged. ``mix``: one share, or one per row (B,), each in [0, 1). fp32,
    like the rest of the sampling maths."""
    if not isinstance(mix, torch.Tensor):  # per-row shares come from ``row_mix``, already in range
        if not 0 <= mix < 1:
            raise ValueError(f"copy mix must be in [0, 1) (got {mix})")
        if mix == 0:
            return logits.float()
    logits = logits.float()
    if not bool(has.any()):
        return logits
    shares = mix.unsqueeze(-1) if isinstance(mix, torch.Tensor) else mix
    blended = ((1 - shares) * torch.softmax(logits, dim=-1) + shares * p_copy).log()
    return torch.where(has.unsqueeze(1), blended, logits)


@dataclass(frozen=True)
class CopyBlend:
    """The copy blend's settings, as ``generate`` takes them: ``mix`` of the next token's
    probability, runs of at least ``min_match`` tokens among the reply's last ``window``, ``lone``
    the ids a run of one may be (None: any; the tokenizer's ``value_piece_ids``), ``never`` the ids
    never copied (its ``frame_ids``), ``inner`` the ids inside a word, where the share grows with
    the run (``row_mix``; None: it never grows; the tokenizer's ``inner_piece_ids``)."""

    mix: float
    min_match: int = 1
    lone: Collection[int] | None = None
    never: Collection[int] = frozenset()
    inner: Collection[int] | None = None
    window: int = 8

    @classmethod
    def for_tokenizer(cls, tok: RetailTokenizer, mix: float, min_match: int = 1) -> CopyBlend:
        """The blend as every generation path uses it: the tokenizer's value pieces may start a
        run, its frame is never copied, and the share grows inside words."""
        return cls(mix, min_match, tok.value_piece_ids, tok.frame_ids, tok.inner_piece_ids)

    def __post_init__(self) -> None:
        if not 0 <= self.mix < 1:
            raise ValueError(f"copy mix must be in [0, 1) (got {self.mix})")
        if self.min_match < 1 or self.window < self.min_match:
            raise ValueError(f"copy runs need 1 <= min_match <= window (got {self.min_match}, {self.window})")

    def masks(self, vocab_size: int, device: torch.device | None = None) -> tuple[torch.Tensor | None, ...]:
        """``lone``, ``never`` and ``inner`` as (V,) bool masks (None where not set): made once per
        generation call, not per token."""
        return tuple(vocab_mask(ids, vocab_size, device) for ids in (self.lone, self.never, self.inner))

    def apply(
        self,
        logits: torch.Tensor,
        src: torch.Tensor,
        valid: torch.Tensor,
        replies: list[list[int]],
        done: torch.Tensor,
        masks: tuple[torch.Tensor | None, ...] | None = None,
    ) -> torch.Tensor:
        """``logits`` (B, V) of the next token blended with the copy of ``src`` (B, L; ``valid``
        its real tokens) on the rows not ``done`` whose reply so far has a run there (``masks``:
        ``self.masks(V)``, made here when not given)."""
        if self.mix == 0:
            return logits
        V = logits.size(-1)
        lone, never, inner = masks if masks is not None else self.masks(V, src.device)
        recent = recent_tokens(replies, self.window, src.device)
        p_copy, has, run = copy_distribution(src, valid, recent, V, self.min_match, lone, never)
        return mix_copy(logits, p_copy, has & ~done, row_mix(self.mix, p_copy, run, inner))
