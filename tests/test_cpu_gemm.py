"""Tests for part3_pretrain.cpu_gemm: the oneDNN fp32 products equal torch's (values and
gradients, every layout the model and the fused loss use), are deterministic, and are taken
exactly where they apply (CPU fp32, no autocast, not switched off)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from part3_pretrain import cpu_gemm

needs_onednn = pytest.mark.skipif(not cpu_gemm.onednn_available(), reason="this torch build has no oneDNN fp32 linear")


@pytest.fixture(autouse=True)
def _onednn_on():
    """These tests are about the oneDNN path: take it wherever it exists, whatever the CPU's rule."""
    with cpu_gemm.onednn_gemm():
        yield


@pytest.mark.parametrize(
    "vendor, capability, preferred",
    [
        ("AuthenticAMD", "AVX512", True),
        ("AuthenticAMD", "AVX2", False),
        ("GenuineIntel", "AVX512", False),
        ("GenuineIntel", "AVX2", False),
    ],
)
def test_onednn_is_preferred_only_on_non_intel_avx512(monkeypatch, vendor, capability, preferred):
    cpu_gemm.onednn_preferred.cache_clear()
    monkeypatch.setattr(cpu_gemm, "_cpu_vendor", lambda: vendor)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    try:
        assert cpu_gemm.onednn_preferred() is preferred
    finally:
        cpu_gemm.onednn_preferred.cache_clear()


def test_the_rule_decides_outside_the_switches():
    cpu_gemm._enabled[0] = None  # as in a run: neither torch_gemm() nor onednn_gemm()
    try:
        x, w = torch.randn(4, 8), torch.randn(6, 8, requires_grad=True)
        assert cpu_gemm.onednn_applies(x, w) == (cpu_gemm.onednn_available() and cpu_gemm.onednn_preferred())
    finally:
        cpu_gemm._enabled[0] = True


def _inputs(shape_x, n_out, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape_x, generator=g, requires_grad=True)
    w = (torch.randn(n_out, shape_x[-1], generator=g) * 0.1).requires_grad_()
    b = torch.randn(n_out, generator=g).requires_grad_() if bias else None
    return x, w, b


def _grads(fn, x, w, b, seed=1):
    out = fn(x, w, b)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    params = [t for t in (x, w, b) if t is not None and t.requires_grad]
    return out, torch.autograd.grad(out, params, upstream)


@needs_onednn
@pytest.mark.parametrize(
    "shape_x,n_out,bias", [((37, 24), 40, True), ((3, 11, 24), 16, False), ((2, 5, 48), 200, True)]
)
def test_linear_matches_f_linear_values_and_grads(shape_x, n_out, bias):
    x, w, b = _inputs(shape_x, n_out, bias)
    ours, ours_g = _grads(cpu_gemm.linear, x, w, b)
    ref, ref_g = _grads(F.linear, x, w, b)
    assert "OneDNNLinear" in type(ours.grad_fn).__name__  # the oneDNN path really ran
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(ours_g, ref_g, strict=False):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_linear_takes_non_contiguous_input_and_frozen_weight():
    x, w, b = _inputs((24, 30), 16)
    xt = x.t()  # (30, 24) non-contiguous view
    w = torch.randn(16, 24)  # frozen
    with pytest.raises(RuntimeError, match="cannot be multiplied"):  # torch's own shape error
        cpu_gemm.linear(x, w, b)
    ours, (gx, gb) = _grads(cpu_gemm.linear, xt, w, b)
    ref, (rx, rb) = _grads(F.linear, xt, w, b)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, rb, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("n,k", [(8, 40), (40, 8)])  # both orders matmul_tn chooses between
def test_matmul_helpers_match_torch(n, k):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(50, n, generator=g), torch.randn(50, k, generator=g)
    w = torch.randn(k, n, generator=g)
    for onednn in (True, False):
        torch.testing.assert_close(cpu_gemm.matmul_tn(a, b, onednn), a.t() @ b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cpu_gemm.matmul_nt(a, w, onednn), a @ w.t(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cpu_gemm.matmul_nn(a, w.t(), onednn), a @ w.t(), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_linear_is_deterministic():
    x, w, b = _inputs((64, 48), 96)
    first, first_g = _grads(cpu_gemm.linear, x, w, b)
    again, again_g = _grads(cpu_gemm.linear, x, w, b)
    assert torch.equal(first, again)
    assert all(torch.equal(p, q) for p, q in zip(first_g, again_g, strict=False))


def test_onednn_path_is_taken_only_where_it_applies():
    x = torch.randn(4, 8)
    w = torch.randn(6, 8, requires_grad=True)
    assert cpu_gemm.onednn_applies(x, w) == cpu_gemm.onednn_available()
    assert not cpu_gemm.onednn_applies(x.double(), w.double())
    assert not cpu_gemm.onednn_applies(x.bfloat16(), w.bfloat16())
    assert not cpu_gemm.onednn_applies(x[:0], w)  # empty: plain torch
    onednn = cpu_gemm.onednn_available()
    assert ("OneDNN" in type(cpu_gemm.linear(x, w).grad_fn).__name__) == onednn  # training
    with torch.no_grad():  # inference: every prompt length would be a new oneDNN kernel
        assert torch.equal(cpu_gemm.linear(x, w), F.linear(x, w))
    assert "OneDNN" not in type(cpu_gemm.linear(x, w.detach()).grad_fn).__name__  # nothing to train
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not cpu_gemm.onednn_applies(x, w)
        assert cpu_gemm.linear(x, w).dtype == torch.bfloat16  # autocast's own bf16 linear
    with cpu_gemm.torch_gemm():
        assert not cpu_gemm.onednn_applies(x, w)
        assert torch.equal(cpu_gemm.linear(x, w), F.linear(x, w))


def test_torch_gemm_restores_the_switch_after_an_error():
    before = cpu_gemm._enabled[0]
    with pytest.raises(KeyError):
        with cpu_gemm.torch_gemm():
            raise KeyError("boom")
    assert cpu_gemm._enabled[0] == before
