"""Model FLOPs: the compute budget of a job, counted the same way everywhere (PaLM's formula).

Training costs ``6 * N_matmul + 12 * L * C * T`` FLOPs per token: ``N_matmul`` counts the weights
that take part in matmuls (per block 12 * C^2: qkv 3C^2, attention projection C^2, MLP 8C^2; plus
the LM head V * C, tied to the embedding whose lookup costs nothing), the second term is
attention (QK^T and AV, forward and backward) over the full T x T square. Biases, norms and the
position table are left out. A forward pass alone is a third of that: ``2 * N_matmul + 4 * L * C * T``.
Tokens are counted as processed, padding included: it is compute spent.
"""

from __future__ import annotations

from .model import GPTConfig

FORMULA = "6 * (n_layer*12*n_embd^2 + vocab*n_embd) + 12 * n_layer * n_embd * block_size per training token"


def flops_per_token(cfg: GPTConfig) -> dict:
    """Training FLOPs per token, with the parts of the sum."""
    L, C, T, V = cfg.n_layer, cfg.n_embd, cfg.block_size, cfg.vocab_size
    n_matmul = L * 12 * C * C + V * C
    dense, attention = 6 * n_matmul, 12 * L * C * T
    return {
        "n_matmul_params": n_matmul,
        "dense": dense,
        "attention": attention,
        "total": dense + attention,
        "formula": FORMULA,
    }


def training_flops(cfg: GPTConfig, tokens: int) -> float:
    return float(tokens) * flops_per_token(cfg)["total"]


def forward_flops(cfg: GPTConfig, tokens: int) -> float:
    """FLOPs of forward passes over ``tokens`` tokens (generation with a KV cache, scoring)."""
    return float(tokens) * flops_per_token(cfg)["total"] / 3
