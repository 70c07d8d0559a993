"""LM head and cross-entropy in one pass over row chunks, never holding the full logits.

``model.lm_loss(logits, targets)`` is the reference: it needs the (N, V) logits in memory, then a
log-softmax of the same size, then the same size again for its gradient. At the default
pretraining batch that is 2,048 x 4,096 fp32, 32 MiB each, and most of a CPU step's
non-matmul time.

``linear_cross_entropy(hidden, weight, targets)`` gives the same summed loss (and gradients)
from the final hidden states. It walks over chunks of rows, about a million logits each on the
CPU. Each chunk is multiplied out, turned into its loss, and, when a gradient is wanted, into
``softmax - one_hot`` and the two gradient products, all while it is still in cache. The
gradients are kept for ``backward``, which only scales them by the incoming gradient. This is
the trick of Liger Kernel's fused linear cross-entropy. Rows whose target is ``IGNORE_INDEX``
are dropped before any product, so SFT pays for the LM head on response tokens only.

Without grad mode (evaluation) only the loss is computed. The head runs in **fp32 under autocast
too** (``HEAD_DTYPE``): its products, logits, softmax and gradients. With bf16 logits (the
autocast dtype, as before) every bf16-pretrained base was weaker than the fp32 one; keeping the
head in fp32 raised the SFT validation rubric pass of three bf16 seeds by +1.5, +13.5 and +14.5
points and cut inventing by 2.0, 8.5 and 5.5 (README, "The LM head under bf16"), for about 10%
of a bf16 pretraining step on an AVX-512 BF16 Xeon.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import cpu_gemm

IGNORE_INDEX = -100  # the one label value that is never a target (context, padding); model.py re-exports it
# Logits per chunk. On the CPU 4 MiB of fp32, about a core's L2 (256 rows at vocab 4,096: measured
# fastest against 512-2,048 rows). On a GPU, caches don't set the size; kernel launches per chunk
# do, so chunks are 16x larger (64 MiB), which still bounds memory.
CPU_CHUNK_ELEMENTS = 1 << 20
GPU_CHUNK_ELEMENTS = 1 << 24
# A short last chunk is zero-padded to a multiple of this many rows. In SFT the number of target
# rows differs in every batch, and oneDNN (bf16, or fp32 via cpu_gemm) keeps a compiled kernel
# per shape it meets; buckets of 32 rows bound that to a handful of shapes per chunk size.
ROW_BUCKET = 32
# The head's products, whatever autocast says (module docstring: bf16 logits cost the model).
HEAD_DTYPE = torch.float32


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    with_accuracy: bool = False,
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, skipping IGNORE_INDEX.

    hidden: (..., C) final hidden states; weight: (V, C) the LM head; targets: (...) token ids.
    Returns ``(loss_sum, n_correct)``. ``loss_sum`` is an fp32 scalar that backpropagates into
    ``hidden`` and ``weight``. ``n_correct`` is the number of targets that are the argmax of
    their logits (a long scalar), or None unless ``with_accuracy``.
    """
    h = hidden.reshape(-1, hidden.size(-1))  # (N, C)
    t = targets.reshape(-1)  # (N,)
    if h.size(0) != t.size(0):
        raise ValueError(f"hidden has {h.size(0)} positions but targets has {t.size(0)}")
    valid = t != IGNORE_INDEX
    if not bool(valid.all()):
        keep = valid.nonzero().squeeze(1)
        h, t = h.index_select(0, keep), t.index_select(0, keep)
    per_chunk = CPU_CHUNK_ELEMENTS if h.device.type == "cpu" else GPU_CHUNK_ELEMENTS
    rows = chunk_rows or max(1, per_chunk // weight.size(0))
    wants_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    if wants_grad:  # training: oneDNN for fp32 products where it applies (see cpu_gemm)
        onednn = cpu_gemm.onednn_applies(h, weight)
        loss, correct = _LinearCrossEntropy.apply(h, weight, t, rows, with_accuracy, onednn)
    else:
        loss, correct, _, _ = _chunked(h, weight, t, rows, with_accuracy, False, False, False)
    return loss, (correct if with_accuracy else None)


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss and both gradients in the forward pass; backward scales the stored gradients."""

    @staticmethod
    def forward(ctx, h, weight, t, rows, with_accuracy, onednn):
        loss, correct, grad_h, grad_w = _chunked(
            h, weight, t, rows, with_accuracy, h.requires_grad, weight.requires_grad, onednn
        )
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        grad_h, grad_w = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_loss.to(g.dtype)  # noqa: E731
        return scale(grad_h), scale(grad_w), None, None, None, None


def _chunked(
    h: torch.Tensor,
    weight: torch.Tensor,
    t: torch.Tensor,
    rows: int,
    with_accuracy: bool,
    want_grad_h: bool,
    want_grad_w: bool,
    onednn: bool,
):
    """(loss_sum, n_correct, grad_h, grad_w) of the summed loss, chunk by chunk of rows."""
    dtype = HEAD_DTYPE
    loss = torch.zeros((), device=h.device, dtype=torch.float32)
    correct = torch.zeros((), device=h.device, dtype=torch.long)
    grad_h = torch.empty_like(h) if want_grad_h else None
    grad_w = torch.zeros_like(weight) if want_grad_w and h.size(0) == 0 else None
    with torch.autocast(h.device.type, enabled=False):
        hc_all, w = h.to(dtype), weight.to(dtype)
        for start in range(0, h.size(0), rows):
            hc, tc = hc_all[start : start + rows], t[start : start + rows]  # (n, C), (n,)
            n = tc.numel()
            hc = F.pad(hc, (0, 0, 0, -n % ROW_BUCKET))  # (n + pad, C): zero rows, sliced off below
            logp = torch.log_softmax(cpu_gemm.matmul_nt(hc, w, onednn).float(), dim=-1)  # (n + pad, V)
            loss -= logp[:n].gather(1, tc[:, None]).sum()
            if with_accuracy:
                correct += (logp[:n].argmax(-1) == tc).sum()
            if not (want_grad_h or want_grad_w):
                continue
            # d loss / d logits = softmax - one_hot(target), built in place; padding rows: 0
            probs = logp.exp_()
            probs[:n].scatter_add_(1, tc[:, None], probs.new_full((n, 1), -1.0))
            probs[n:] = 0.0
            g = probs.to(dtype)
            if want_grad_h:
                grad_h[start : start + rows] = cpu_gemm.matmul_nn(g, w, onednn)[:n]  # (n, C)
            if want_grad_w:
                part = cpu_gemm.matmul_tn(g, hc, onednn)  # (V, C), possibly a transposed view
                # accumulate in the layout the product comes in; one copy at the end at most
                grad_w = part.to(weight.dtype, copy=True) if grad_w is None else grad_w.add_(part)
    if grad_w is not None:
        grad_w = grad_w.contiguous()
    return loss, correct, grad_h, grad_w
