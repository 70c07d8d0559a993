"""The hand-written GPT-2-style decoder: config, modules and the one LM loss.

Layout and parameter names follow GPT-2 (learned positions, pre-LayerNorm blocks, tanh-GELU MLP,
tied input/output embeddings, ``transformer.h.N.attn.c_attn`` ...), so the model can be checked
against ``transformers.GPT2LMHeadModel`` weight for weight. One addition, on by default in
pretraining: smeared keys (``smear_keys``, a gate per head that mixes each key with its
predecessor's), which lets the model learn to copy the message's ids and names within the CPU
budget; with the gates fully open it is GPT-2 again, and the reference test checks both.
Attention goes through ``F.scaled_dot_product_attention``; linear layers are ``nn.Linear`` whose
CPU fp32 training products run in oneDNN where that is faster (``cpu_gemm``).
The forward pass takes an optional attention mask and
position ids (for left-padded batches) and an optional ``KVCache`` for incremental decoding.
Given ``targets`` it returns the summed loss through the fused LM head + cross-entropy
(``fused_loss``) instead of logits; ``lm_loss`` on the logits is the reference it is tested
against.

This file holds only ``nn.Module``s, the config dataclass and ``lm_loss``: no I/O, no tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cpu_gemm
from .fused_loss import IGNORE_INDEX, linear_cross_entropy


class LMLoss(NamedTuple):
    """What ``GPT.forward`` returns when given targets."""

    loss_sum: torch.Tensor  # fp32 scalar: cross-entropy summed over the target tokens
    n_correct: torch.Tensor | None  # targets equal to the argmax of their logits (with_accuracy)


@dataclass
class GPTConfig:
    """Shape of the decoder. ``dropout`` is applied to embeddings, attention and residual outputs."""

    vocab_size: int = 4096
    block_size: int = 256  # longest sequence (positions) the model can see
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = True
    layer_norm_epsilon: float = 1e-5
    smear_keys: bool = False  # each key mixes in the previous position's key (CausalSelfAttention._smear)
    smear_init: float = 0.0  # initial gate logit: 0 = an even mix; negative = mostly the predecessor's key

    def problems(self) -> list[str]:
        """Human-readable problems with this config (empty when valid)."""
        out = []
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.n_head >= 1 and self.n_embd % self.n_head:
            out.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1) (got {self.dropout})")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def gpt2_kwargs(self) -> dict:
        """The ``transformers.GPT2Config`` arguments of the same layout (dropout off, tied
        embeddings): the reference tests and the benchmark build their twin from it. With
        ``smear_keys`` the twin equals this model only when every gate is fully open."""
        return {
            "vocab_size": self.vocab_size,
            "n_positions": self.block_size,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "activation_function": "gelu_new",
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_word_embeddings": True,
        }

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


class KVCache:
    """Preallocated keys/values of every layer for incremental decoding.

    ``pos`` is the number of positions already stored; ``GPT.forward`` advances it once per call,
    after all layers have written their slice.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, dtype) -> None:
        if max_len > config.block_size:
            raise ValueError(f"KV cache length {max_len} exceeds block_size {config.block_size}")
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # smear_keys: each layer's key of the last stored position, before mixing (B, nh, 1, hs)
        self.last_k = torch.zeros(shape[:3] + (1, hs), device=device, dtype=dtype) if config.smear_keys else None
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's k, v (B, nh, T, hs) for ``layer``; return all keys/values so far."""
        end = self.pos + k.size(2)
        if end > self.k.size(3):
            raise ValueError(f"KV cache overflow: {end} positions > capacity {self.k.size(3)}")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows ``rows`` (indices into the current batch), in that order: a
        decoder drops the rows that have finished, so later steps compute only the others."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]
        if self.last_k is not None:
            self.last_k = self.last_k[:, rows]


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, init, state dict) whose CPU fp32 training products use oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_gemm.linear(x, self.weight, self.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused q, k, v
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.attn_dropout = config.dropout
        # smeared keys: a gate logit per head; sigmoid(0) = an even mix of a key and its predecessor's,
        # a negative start keys each position mostly by the token before it (an induction head's prior)
        self.smear = nn.Parameter(torch.full((config.n_head,), config.smear_init)) if config.smear_keys else None

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        prev_real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``prev_real``: whether each position's predecessor is a real token (``GPT._prev_real``);
        used by smeared keys only."""
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if self.smear is not None:
            k = self._smear(k, prev_real, kv_cache, layer)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, nh, past+T, hs)
        dropout = self.attn_dropout if self.training else 0.0
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:  # see ``attention``
            with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
                y = attention(q.float(), k.float(), v.float(), attn_mask, dropout)
        else:
            y = attention(q, k, v, attn_mask, dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _smear(self, k: torch.Tensor, prev_real: torch.Tensor, kv_cache: KVCache | None, layer: int) -> torch.Tensor:
        """Smeared keys (Olsson et al., 2022): ``k_t = g * k_t + (1 - g) * k_{t-1}``, g a learned
        sigmoid gate per head.

        A key then also says which token came just before it, so one attention layer can find
        "the token that followed the earlier occurrence of the current token" and copy it: an
        induction head, without the two-layer circuit that a small model takes far more tokens
        to form (README: the copy ablation). The predecessor of a first token, or of a token after
        padding, counts as zero (``prev_real``), so left-padded rows and incremental decoding (the
        cache keeps the last unmixed key) equal the plain forward pass.
        """
        B, nh, T, hs = k.shape
        cached = kv_cache is not None and kv_cache.pos > 0
        first = kv_cache.last_k[layer] if cached else k.new_zeros(B, nh, 1, hs)
        prev = torch.cat([first, k[:, :, :-1]], dim=2) * prev_real.to(k.dtype)
        if kv_cache is not None:  # after the cat: ``first`` is a view of this slot
            kv_cache.last_k[layer] = k[:, :, -1:]
        gate = torch.sigmoid(self.smear).to(k.dtype).view(1, nh, 1, 1)
        return gate * k + (1 - gate) * prev


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, dropout_p: float = 0.0
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with the model's masking.

    q: (B, nh, T, hs); k, v: (B, nh, S, hs) with S >= T (the last T keys are the queries' own
    positions); attn_mask as ``GPT._sdpa_mask`` or ``_document_layout`` builds it, or None for
    plain causal attention (SDPA then picks its fused kernels; one new token after a cache attends
    to everything before it, so no mask at all; several new tokens after a cache get the causal
    mask aligned to the end).

    Under CPU bf16 autocast the caller runs this in fp32, autocast off (q, k and v are small; the
    T x T scores are not). Measured in a bf16 pretraining step at the default shape: PyTorch's CPU
    flash kernel fed bf16 took 5.3 ms per layer forward and backward, two bf16 ``bmm``s around an
    fp32 softmax (the path before) 2.3 ms, the fp32 flash kernel on upcast inputs 1.9 ms; and the
    scores never round to bf16.
    """
    T, S = q.size(-2), k.size(-2)
    if attn_mask is None and 1 < T < S:
        attn_mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if attn_mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=T > 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's "gelu_new" is the tanh approximation; one fused kernel instead of seven. (The exact
        # GELU costs half as much on CPU, but with it two of two seeds lost the copy circuit on a
        # corpus where the tanh one lost one of three: README, "Tried and not shipped".)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        prev_real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, kv_cache, layer, prev_real)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        problems = config.problems()
        if problems:
            raise ValueError("invalid GPTConfig: " + "; ".join(problems))
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying, as GPT-2
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer) so the residual stream's
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once); optionally without the position table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        targets: torch.Tensor | None = None,
        with_accuracy: bool = False,
        doc_ids: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor | LMLoss:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); with ``targets``, an ``LMLoss``.

        attention_mask: (B, past+T) with 1 for real tokens and 0 for padding, covering the cached
            positions too. None means no padding anywhere.
        position_ids: (B, T); by default counted from the cache position, or, with a mask, from
            the first real token of each row (so left padding does not shift positions).
        targets: (B, T) next-token ids, IGNORE_INDEX where nothing is predicted. The loss is
            then computed chunk by chunk without materialising the logits (``fused_loss``);
            equal to ``lm_loss(logits, targets, "sum")``. ``with_accuracy`` also counts argmax hits.
        doc_ids: (B, T) which document of a packed training window each token belongs to
            (``data.document_ids``): attention then stays inside a document and positions count
            from each document's first token, as if every document were alone in its window.
        last_only: the logits of the last position only, (B, 1, vocab): all a decoder's prefill
            reads, without the LM head's product for every prompt token.
        """
        h = self.hidden_states(idx, attention_mask, position_ids, kv_cache, doc_ids)  # (B, T, C)
        if targets is None:
            return self.lm_head(h[:, -1:] if last_only else h)
        if torch.compiler.is_compiling():  # let Inductor fuse the plain path its own way
            with torch.autocast(h.device.type, enabled=False):  # the head in fp32, as fused_loss runs it
                logits = F.linear(h.float(), self.lm_head.weight.float())
            n_correct = None
            if with_accuracy:
                n_correct = ((logits.argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum()
            return LMLoss(lm_loss(logits, targets, reduction="sum"), n_correct)
        return LMLoss(*linear_cross_entropy(h, self.lm_head.weight, targets, with_accuracy))

    def hidden_states(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final LayerNorm's output (B, T, C): everything but the LM head (see ``forward``)."""
        B, T = idx.shape
        past = kv_cache.pos if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence length {past + T} exceeds block_size {self.config.block_size}")
        if doc_ids is not None:
            if attention_mask is not None or kv_cache is not None or position_ids is not None:
                raise ValueError("doc_ids (packed training windows) excludes attention_mask, position_ids and kv_cache")
            position_ids, attn_mask, prev_real = self._document_layout(doc_ids)
        else:
            if position_ids is None:
                position_ids = self._default_positions(B, T, past, attention_mask, idx.device)
            attn_mask = None if attention_mask is None else self._sdpa_mask(attention_mask, T, past)
            prev_real = self._prev_real(T, past, attention_mask, idx.device) if self.config.smear_keys else None
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(position_ids))
        for i, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, kv_cache, i, prev_real)
        if kv_cache is not None:
            kv_cache.pos = past + T
        return self.transformer.ln_f(x)

    @staticmethod
    def _document_layout(doc_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Positions, attention mask and smear predecessors of a window packed with documents:
        each token is at its index within its own document, attends causally to its own
        document only, and a document's first token has no predecessor (as at position 0)."""
        B, T = doc_ids.shape
        idx = torch.arange(T, device=doc_ids.device).expand(B, T)
        first = torch.ones_like(doc_ids, dtype=torch.bool)
        first[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
        start = torch.where(first, idx, torch.zeros_like(idx)).cummax(dim=1).values
        same = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
        mask = (same & torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()).unsqueeze(1)
        return idx - start, mask, (~first).view(B, 1, T, 1)

    @staticmethod
    def _prev_real(T: int, past: int, attention_mask: torch.Tensor | None, device) -> torch.Tensor:
        """(B or 1, 1, T, 1): whether the position before each of this call's is a real token."""
        if attention_mask is None:
            return (torch.arange(past, past + T, device=device) > 0).view(1, 1, T, 1)
        real = attention_mask.bool()  # (B, past+T)
        before = torch.cat([torch.zeros_like(real[:, :1]), real[:, :-1]], dim=1)[:, past:]
        return before.view(real.size(0), 1, T, 1)

    @staticmethod
    def _default_positions(B: int, T: int, past: int, attention_mask: torch.Tensor | None, device) -> torch.Tensor:
        if attention_mask is None:
            return torch.arange(past, past + T, device=device).unsqueeze(0).expand(B, T)
        pos = attention_mask.long().cumsum(-1) - 1  # (B, past+T): index among real tokens
        return pos[:, past:].clamp(min=0)

    @staticmethod
    def _sdpa_mask(attention_mask: torch.Tensor, T: int, past: int) -> torch.Tensor:
        """Boolean (B, 1, T, past+T) mask: causal AND key is a real token.

        Every query may always see itself, so a padding query never has an all-masked row
        (which would give NaN); its output is never used.
        """
        S = past + T
        device = attention_mask.device
        q_idx = torch.arange(past, S, device=device).unsqueeze(1)  # (T, 1)
        k_idx = torch.arange(S, device=device).unsqueeze(0)  # (1, S)
        causal = k_idx <= q_idx  # (T, S)
        keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        return (causal & keys) | (k_idx == q_idx)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of aligned logits (B, T, V) against targets (B, T), skipping IGNORE_INDEX.

    ``reduction="sum"`` lets a trainer divide by the number of target tokens of a whole
    accumulated step rather than averaging per micro-batch.
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
    )
