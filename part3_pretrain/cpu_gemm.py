"""fp32 matrix products on the CPU through oneDNN, for the model's linear layers and LM head.

Why: PyTorch sends a CPU fp32 ``F.linear``/``torch.mm`` to MKL's sgemm. On AMD CPUs, like the
2-core EPYC we develop on, MKL uses its AVX2 code path. oneDNN ships in every x86 PyTorch build
and has AVX-512 fp32 kernels: at the model's shapes it runs about 2x MKL's speed
(``bench/bench_pretrain.py`` measures both). The arithmetic is the same IEEE fp32, with no
bf16/tf32 down-conversion. Only the order of the sums differs, so results agree with
``F.linear`` to fp32 rounding.

The oneDNN path is used only where it is measured faster and where it applies:
- a CPU where MKL does not use AVX-512 although the CPU has it: an AVX-512 CPU that is not
  Intel's (``onednn_preferred``). Measured at the default model's shapes: 2x MKL on a 2-core
  AMD EPYC with AVX-512, but 6% slower than MKL on an AVX2-only AMD Zen 3 and 11-13% slower on an
  AVX-512 Intel Xeon (``bench/README.md``), where MKL has its own AVX-512 kernels;
- the CPU, fp32 input and weight;
- no CPU autocast (under bf16 autocast ``F.linear`` already goes to oneDNN's bf16 kernels);
- not under ``torch.compile`` (Inductor picks its own kernels);
- only when this build of torch has the op;
- only for training, i.e. when autograd records the product. oneDNN keeps a compiled kernel of
  about 2.5 MB for every distinct shape it has seen. Training shapes are few: fixed windows in
  pretraining, and lengths rounded to 16 in SFT. Inference shapes are not: every prompt batch
  has its own length. 240 prompt lengths grew the process by 3 GB on oneDNN and by 0.25 GB on
  MKL, so inference stays on torch.
Everything else is plain ``F.linear`` / ``torch.mm``. ``torch_gemm()`` turns the oneDNN path off
for a block and ``onednn_gemm()`` on (where oneDNN exists), whatever the CPU; the benchmark and
the tests use them to compare the two kernels.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_enabled: list[bool | None] = [None]  # None: the CPU rule decides; True / False: forced on / off


@functools.cache
def onednn_available() -> bool:
    """True when this torch build can run oneDNN's fp32 linear on plain (strided) CPU tensors."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        x, w = torch.ones(2, 3), torch.ones(4, 3)
        return torch.equal(_onednn_linear(x, w, None), torch.full((2, 4), 3.0))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def _cpu_vendor() -> str:
    """``vendor_id`` of /proc/cpuinfo ("GenuineIntel", "AuthenticAMD", ...), else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@functools.cache
def onednn_preferred() -> bool:
    """Whether oneDNN's fp32 kernels beat torch's default GEMM on this CPU (module docstring)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability.startswith("AVX512") and _cpu_vendor() != "GenuineIntel"


@contextlib.contextmanager
def _forced(value: bool) -> Iterator[None]:
    before = _enabled[0]
    _enabled[0] = value
    try:
        yield
    finally:
        _enabled[0] = before


def torch_gemm() -> contextlib.AbstractContextManager:
    """Within this block every product goes through plain ``F.linear`` / ``torch.mm``."""
    return _forced(False)


def onednn_gemm() -> contextlib.AbstractContextManager:
    """Within this block training products use oneDNN wherever it exists, whatever the CPU."""
    return _forced(True)


def onednn_applies(*tensors: torch.Tensor) -> bool:
    """Whether oneDNN's fp32 kernel may run a product of these tensors here and now.

    Callers decide whether they are training (see the module docstring); ``linear`` and
    ``fused_loss`` pass the answer down as the ``onednn`` flag of the helpers below.
    """
    wanted = onednn_preferred() if _enabled[0] is None else _enabled[0]
    return (
        wanted
        and torch.backends.mkldnn.enabled
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and all(t.numel() > 0 for t in tensors)
        and onednn_available()
    )


def _onednn_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


# The three products of a linear layer, without autograd. ``onednn`` says which kernel runs
# (decided by the caller with ``onednn_applies`` and whether it is training).


def matmul_nt(a: torch.Tensor, b: torch.Tensor, onednn: bool) -> torch.Tensor:
    """``a @ b.T`` for a (..., K) and b (N, K)."""
    return _onednn_linear(a, b, None) if onednn else a @ b.t()


def matmul_nn(a: torch.Tensor, b: torch.Tensor, onednn: bool) -> torch.Tensor:
    """``a @ b`` for a (..., K) and b (K, N)."""
    return _onednn_linear(a, b.t(), None) if onednn else a @ b


def matmul_tn(g: torch.Tensor, x: torch.Tensor, onednn: bool) -> torch.Tensor:
    """``g.T @ x`` for g (M, N) and x (M, K): the (N, K) weight gradient of a linear layer.

    May come back as a transposed view of a contiguous (K, N) result (copy it only if needed).
    """
    if not onednn:
        return g.t() @ x
    # oneDNN is fastest here when the operand with fewer columns is the one it streams
    # (measured 1.3-2.5x between the two orders at the model's shapes).
    if g.size(1) <= x.size(1):
        return _onednn_linear(g.t(), x.t(), None)
    return _onednn_linear(x.t(), g.t(), None).t()


class _OneDNNLinear(torch.autograd.Function):
    """``x @ W.T + b`` with all three products of forward and backward in oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        g2 = grad.reshape(-1, grad.size(-1))  # (M, out)
        if ctx.needs_input_grad[0]:
            grad_x = matmul_nn(grad, weight, onednn=True)  # (..., in)
        if ctx.needs_input_grad[1]:
            grad_w = matmul_tn(g2, x.reshape(-1, x.size(-1)), onednn=True)  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose CPU fp32 training products (forward and backward) run in oneDNN."""
    training = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    # a shape mismatch goes to F.linear too: torch words that error best
    if not training or x.size(-1) != weight.size(-1) or not onednn_applies(x, weight):
        return F.linear(x, weight, bias)
    return _OneDNNLinear.apply(x, weight, bias)
