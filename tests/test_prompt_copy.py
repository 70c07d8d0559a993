"""Tests for part3_pretrain.prompt_copy (the copy blend of decoding) and its use in generate."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from part3_pretrain.generate import generate
from part3_pretrain.prompt_copy import (
    NO_TOKEN,
    CopyBlend,
    copy_distribution,
    match_lengths,
    mix_copy,
    recent_tokens,
    row_mix,
    vocab_mask,
)

V = 32
PAD, EOS = 0, 1


def _src(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts (B, L) and their mask, as generate builds them."""
    L = max(len(r) for r in rows)
    src = torch.full((len(rows), L), PAD)
    valid = torch.zeros((len(rows), L), dtype=torch.bool)
    for b, r in enumerate(rows):
        src[b, L - len(r) :] = torch.tensor(r)
        valid[b, L - len(r) :] = True
    return src, valid


def test_recent_tokens_right_aligned() -> None:
    out = recent_tokens([[5, 6, 7], [], [9]], 2)
    assert out.tolist() == [[6, 7], [NO_TOKEN, NO_TOKEN], [NO_TOKEN, 9]]


def test_match_lengths_counts_the_run_ending_at_each_position() -> None:
    # "M ay fi el d V el ve t": the reply's "fi el" ends at the first "el" (run 2), its "el" alone
    # also ends at the second "el" (run 1)
    src, valid = _src([[10, 11, 12, 13, 14, 15, 13, 16, 17]])
    length = match_lengths(src, valid, recent_tokens([[12, 13]], 8))
    assert length.tolist() == [[0, 0, 0, 2, 0, 0, 1, 0, 0]]


def test_the_longest_run_decides_what_is_copied() -> None:
    """The "Mayfielvet" error: after "M ay fi el" the copy is "d", not the "ve" of "Velvet"."""
    src, valid = _src([[10, 11, 12, 13, 14, 15, 13, 16, 17]])
    p, has, _ = copy_distribution(src, valid, recent_tokens([[10, 11, 12, 13]], 8), V)
    assert has.tolist() == [True]
    assert p[0, 14].item() == 1.0 and p.sum().item() == pytest.approx(1.0)


def test_equal_runs_share_the_mass() -> None:
    src, valid = _src([[20, 21, 9, 20, 22]])
    p, has, _ = copy_distribution(src, valid, recent_tokens([[20]], 8), V)
    assert has.tolist() == [True]
    assert p[0, 21].item() == pytest.approx(0.5) and p[0, 22].item() == pytest.approx(0.5)


def test_no_run_no_copy_and_padding_never_matches() -> None:
    src, valid = _src([[20, 21, 22], [5, 6]])  # row 1 is padded with PAD = 0 on the left
    p, has, _ = copy_distribution(src, valid, recent_tokens([[30], [PAD]], 8), V)
    assert has.tolist() == [False, False]
    assert p.abs().sum().item() == 0


def test_lone_tokens_and_min_match() -> None:
    src, valid = _src([[20, 21, 22, 23]])
    lone = vocab_mask([20], V)
    # a run of one counts only for a token in ``lone``
    assert copy_distribution(src, valid, recent_tokens([[20]], 8), V, lone=lone)[1].tolist() == [True]
    assert copy_distribution(src, valid, recent_tokens([[21]], 8), V, lone=lone)[1].tolist() == [False]
    # a run of two counts whatever its tokens
    p, has, _ = copy_distribution(src, valid, recent_tokens([[21, 22]], 8), V, lone=lone)
    assert has.tolist() == [True] and p[0, 23].item() == 1.0
    assert copy_distribution(src, valid, recent_tokens([[20]], 8), V, min_match=2)[1].tolist() == [False]
    with pytest.raises(ValueError, match="min_match"):
        copy_distribution(src, valid, recent_tokens([[20]], 8), V, min_match=0)


def test_never_copies_the_frame_or_past_the_prompt() -> None:
    src, valid = _src([[20, 21, 3, 4]])  # 3: a line break of the frame
    never = vocab_mask([3], V)
    assert copy_distribution(src, valid, recent_tokens([[21]], 8), V, never=never)[1].tolist() == [False]
    assert copy_distribution(src, valid, recent_tokens([[21]], 8), V)[1].tolist() == [True]
    # the prompt's last token has nothing after it
    assert copy_distribution(src, valid, recent_tokens([[3, 4]], 8), V)[1].tolist() == [False]


def test_row_mix_grows_with_the_run_inside_a_word() -> None:
    p_copy = torch.zeros(3, V)
    p_copy[0, 7] = p_copy[1, 7] = 1.0
    p_copy[2, 8] = 1.0  # 8 begins a new word
    shares = row_mix(0.2, p_copy, torch.tensor([1, 3, 3]), vocab_mask([7], V))
    assert shares.tolist() == pytest.approx([0.2, 1 - 0.8**3, 0.2])
    assert row_mix(0.2, p_copy, torch.tensor([1, 3, 3]), None).tolist() == pytest.approx([0.2] * 3)
    # a large share over a long run stays below 1 in float32, so mix_copy accepts it
    high = row_mix(0.95, p_copy, torch.tensor([8, 8, 8]), vocab_mask([7], V))
    assert float(high.max()) < 1.0
    assert torch.isfinite(mix_copy(torch.randn(3, V), p_copy, torch.tensor([True] * 3), high)[:, 7]).all()


def test_mix_copy_blends_probabilities_on_rows_with_a_copy() -> None:
    logits = torch.randn(2, V)
    p_copy = torch.zeros(2, V)
    p_copy[:, 7] = 1.0
    out = mix_copy(logits, p_copy, torch.tensor([True, False]), 0.2)
    want = 0.8 * torch.softmax(logits[0], -1) + 0.2 * p_copy[0]
    assert torch.allclose(out[0].exp(), want, atol=1e-6)
    assert torch.equal(out[1], logits[1])  # no copy: unchanged
    per_row = mix_copy(logits, p_copy, torch.tensor([True, True]), torch.tensor([0.2, 0.5]))
    assert torch.allclose(per_row[1].exp(), 0.5 * torch.softmax(logits[1], -1) + 0.5 * p_copy[1], atol=1e-6)
    assert torch.equal(mix_copy(logits, p_copy, torch.tensor([True, True]), 0.0), logits)
    with pytest.raises(ValueError, match="copy mix"):
        mix_copy(logits, p_copy, torch.tensor([True, True]), 1.0)


class TornModel(nn.Module):
    """Mock LM without a cache. First token: 20 (a piece of the prompt). Then torn: 3 scores 2.0,
    21 (what follows 20 in the prompt) 1.6; after 21, or any third token, EOS."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        logits = torch.zeros(B, T, V)
        for b in range(B):
            real = idx[b][attention_mask[b].bool()].tolist()
            n = len(real) - 4  # every prompt below has 4 tokens
            if n == 0:
                logits[b, -1, 20] = 8.0
            elif n == 1:
                logits[b, -1, 3], logits[b, -1, 21] = 2.0, 1.6
            else:
                logits[b, -1, EOS] = 8.0
        return logits


def test_generate_copy_mix_mends_a_torn_choice() -> None:
    prompt = [[9, 20, 21, 22]]
    kw = dict(eos_id=EOS, pad_id=PAD, use_cache=False, temperature=0.0, max_new_tokens=5)
    assert generate(TornModel(), prompt, **kw)[0].tokens == [20, 3]  # the model alone
    assert generate(TornModel(), prompt, copy=CopyBlend(0.2), **kw)[0].tokens == [20, 21]
    assert generate(TornModel(), prompt, copy=CopyBlend(0.0), **kw)[0].tokens == [20, 3]
    # a lone 20 that may not start a copy, or a 21 never copied: the model's choice stands
    assert generate(TornModel(), prompt, copy=CopyBlend(0.2, lone=[22]), **kw)[0].tokens == [20, 3]
    assert generate(TornModel(), prompt, copy=CopyBlend(0.2, never=[21]), **kw)[0].tokens == [20, 3]
    with pytest.raises(ValueError, match="copy mix"):
        CopyBlend(1.0)
    with pytest.raises(ValueError, match="min_match"):
        CopyBlend(0.2, min_match=0)
