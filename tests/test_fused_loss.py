"""Tests for part3_pretrain.fused_loss: the chunked LM head + cross-entropy equals the reference
``lm_loss`` on full logits (loss, gradients, accuracy), for every chunking, with ignored targets,
frozen weights, no grad, autocast, and through ``GPT.forward(targets=...)``."""

from __future__ import annotations

import pytest
import torch

from part3_pretrain import cpu_gemm
from part3_pretrain.fused_loss import linear_cross_entropy
from part3_pretrain.model import GPT, IGNORE_INDEX, GPTConfig, lm_loss

N, C, V = 37, 16, 53


def _case(seed=0, n_ignored=5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, C, generator=g, requires_grad=True)
    w = (torch.randn(V, C, generator=g) * 0.5).requires_grad_()
    t = torch.randint(0, V, (N,), generator=g)
    t[torch.randperm(N, generator=g)[:n_ignored]] = IGNORE_INDEX
    return h, w, t


def _reference(h, w, t):
    logits = h @ w.t()
    loss = lm_loss(logits, t, reduction="sum")
    valid = t != IGNORE_INDEX
    return loss, int(((logits.argmax(-1) == t) & valid).sum())


@pytest.mark.parametrize("chunk_rows", [1, 8, 36, 37, 1000])  # 37 - 5 ignored = 32 rows kept
@pytest.mark.parametrize("onednn", [True, False])
def test_loss_grads_and_accuracy_equal_the_reference(chunk_rows, onednn):
    h, w, t = _case()
    ref_loss, ref_correct = _reference(h, w, t)
    ref_gh, ref_gw = torch.autograd.grad(ref_loss, (h, w))
    ctx = cpu_gemm.torch_gemm() if not onednn else cpu_gemm.onednn_gemm()
    with ctx:
        loss, correct = linear_cross_entropy(h, w, t, with_accuracy=True, chunk_rows=chunk_rows)
        gh, gw = torch.autograd.grad(loss, (h, w))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert int(correct) == ref_correct
    torch.testing.assert_close(gh, ref_gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, ref_gw, rtol=1e-5, atol=1e-6)
    assert gh[t == IGNORE_INDEX].abs().max() == 0  # ignored rows get no gradient at all


def test_backward_scales_with_the_incoming_gradient():
    h, w, t = _case(seed=1)
    loss, _ = linear_cross_entropy(h, w, t)
    gh1, gw1 = torch.autograd.grad(loss, (h, w), retain_graph=True)
    gh3, gw3 = torch.autograd.grad(loss * 3.0, (h, w))
    torch.testing.assert_close(gh3, 3 * gh1)
    torch.testing.assert_close(gw3, 3 * gw1)


def test_no_grad_gives_the_loss_only_and_accuracy_is_opt_in():
    h, w, t = _case(seed=2)
    with torch.no_grad():
        loss, correct = linear_cross_entropy(h, w, t)
        ref, _ = _reference(h, w, t)
    assert loss.grad_fn is None and correct is None
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


def test_frozen_weight_gets_no_gradient_and_all_ignored_is_zero():
    h, w, t = _case(seed=3)
    w.requires_grad_(False)
    loss, _ = linear_cross_entropy(h, w, t)
    loss.backward()
    assert w.grad is None and h.grad is not None
    h.grad = None
    empty, correct = linear_cross_entropy(h, w, torch.full((N,), IGNORE_INDEX), with_accuracy=True)
    empty.backward()
    assert float(empty.detach()) == 0.0 and int(correct) == 0 and h.grad.abs().max() == 0


def test_shape_mismatch_is_a_clear_error():
    h, w, t = _case()
    with pytest.raises(ValueError, match="36 positions but targets has 37"):
        linear_cross_entropy(h[:36], w, t)


def test_bf16_autocast_keeps_the_head_in_fp32():
    """Under bf16 autocast the head's logits, loss and gradients are the fp32 ones (bf16 logits
    made every bf16-pretrained base weaker; README), not bf16-rounded."""
    h, w, t = _case(seed=4, n_ignored=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = linear_cross_entropy(h, w, t, chunk_rows=8)
        bf16_logits = h @ w.t()
    assert bf16_logits.dtype == torch.bfloat16  # what the head would use if it followed autocast
    gh, gw = torch.autograd.grad(loss, (h, w))
    fp32_loss, _ = linear_cross_entropy(h, w, t, chunk_rows=8)
    rh, rw = torch.autograd.grad(fp32_loss, (h, w))
    assert gh.dtype == h.dtype and gw.dtype == w.dtype
    assert torch.equal(loss, fp32_loss) and torch.equal(gh, rh) and torch.equal(gw, rw)
    rounded = lm_loss(bf16_logits, t, reduction="sum")
    assert not torch.equal(loss, rounded)  # the bf16 path really differs at this size


def test_gpt_forward_with_targets_equals_lm_loss_on_its_logits():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=C))
    idx = torch.randint(0, V, (3, 16))
    targets = torch.randint(0, V, (3, 16))
    targets[0, :5] = IGNORE_INDEX
    out = model(idx, targets=targets, with_accuracy=True)
    out.loss_sum.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits = model(idx)
    ref = lm_loss(logits, targets, reduction="sum")
    ref.backward()
    torch.testing.assert_close(out.loss_sum, ref, rtol=1e-5, atol=1e-5)
    assert int(out.n_correct) == int(((logits.argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum())
    for n, p in model.named_parameters():
        torch.testing.assert_close(fused[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)
    assert model(idx, targets=targets).n_correct is None
