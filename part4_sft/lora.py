"""Hand-written LoRA (low-rank adaptation) for the part3 ``GPT``: wrapper layer, apply, merge, save.

A ``LoRALinear`` wraps an existing ``nn.Linear`` (kept, frozen, as ``.base``) and adds a trainable
low-rank update ``delta W = (B @ A) * alpha / r`` with ``A: (r, in)`` initialised like
``nn.Linear`` and ``B: (out, r)`` zeros, so a freshly wrapped model computes exactly what the
base model computed. ``apply_lora`` swaps the matching linears of a model for wrappers and
freezes everything else; only ``lora_A`` / ``lora_B`` train.

Target patterns match a module's qualified name the way peft does: the exact name, a suffix
after a dot (``"c_proj"`` matches both ``attn.c_proj`` and ``mlp.c_proj``), or an ``fnmatch``
glob on the full name (``"transformer.h.1.*.c_fc"``). The tied ``lm_head`` is never wrapped.

Adapters are saved alone (a few KiB, never the base weights) as a self-describing dict of plain
data and tensors, loadable with ``torch.load(weights_only=True)``. ``merged_state_dict`` folds
the adapters into plain ``GPT`` parameter names, so a LoRA-tuned model can also be written as an
ordinary full checkpoint.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from part3_pretrain.fileio import save_atomic

ADAPTER_FORMAT = "retail-sft/lora-v1"
NEVER_WRAP = ("lm_head",)  # tied to wte: wrapping it would adapt the input embedding too


@dataclass
class LoRAConfig:
    """Where and how large the adapters are."""

    r: int = 8  # rank of the update
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter's input only (the base path never sees it)
    targets: tuple[str, ...] = ("c_attn",)  # module-name patterns: exact, ".suffix" or fnmatch glob

    def problems(self) -> list[str]:
        """Human-readable problems with this config (empty when valid)."""
        out = []
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            out.append(f"r must be an integer >= 1 (got {self.r!r})")
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            out.append(f"alpha must be > 0 (got {self.alpha!r})")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1) (got {self.dropout!r})")
        if (
            isinstance(self.targets, str)
            or not isinstance(self.targets, (tuple, list))
            or not self.targets
            or not all(isinstance(t, str) and t for t in self.targets)
        ):
            out.append(f"targets must be a non-empty tuple of non-empty names (got {self.targets!r})")
        return out

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict:
        return {"r": self.r, "alpha": float(self.alpha), "dropout": float(self.dropout), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> LoRAConfig:
        if not isinstance(d, dict):
            raise ValueError(f"LoRA config must be a dict (got {type(d).__name__})")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LoRA config keys: {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("targets"), list):
            d["targets"] = tuple(d["targets"])
        cfg = cls(**d)
        _check(cfg)
        return cfg


def _check(cfg: LoRAConfig) -> None:
    problems = cfg.problems()
    if problems:
        raise ValueError("invalid LoRAConfig: " + "; ".join(problems))


class LoRALinear(nn.Module):
    """``base(x) + dropout(x) @ A.T @ B.T * alpha / r`` around a frozen ``nn.Linear``."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear (got {type(base).__name__})")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear.reset_parameters
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The low-rank update (out, in) that merging adds to ``base.weight``."""
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, r) @ (r, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:
            return y
        h = F.linear(self.lora_dropout(x), self.lora_A)  # (..., r)
        return y + F.linear(h, self.lora_B) * self.scaling  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight``; forward then skips the adapter path."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of ``base.weight`` (up to float rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


def _matches(name: str, targets: tuple[str, ...] | list[str]) -> bool:
    return any(name == t or name.endswith("." + t) or fnmatch.fnmatchcase(name, t) for t in targets)


def _lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _plain_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Wrappable linears: not lm_head, not already inside a LoRALinear."""
    inside = {n + ".base" for n in _lora_layers(model)}
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n not in inside and n.split(".")[-1] not in NEVER_WRAP
    }


def _target_linears(model: nn.Module, cfg: LoRAConfig) -> dict[str, nn.Linear]:
    """The linears ``cfg.targets`` select; ValueError naming the choices if there are none."""
    linears = _plain_linears(model)
    chosen = {n: m for n, m in linears.items() if _matches(n, cfg.targets)}
    if not chosen:
        suffixes = sorted({n.split(".")[-1] for n in linears})
        raise ValueError(f"LoRA targets {list(cfg.targets)} match no Linear module; available suffixes: {suffixes}")
    return chosen


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Wrap the target linears of ``model`` in place and freeze all other parameters.

    Returns the qualified names of the wrapped modules. Raises ValueError for an invalid config,
    a model that already has LoRA layers, or targets that match nothing.
    """
    _check(cfg)
    if _lora_layers(model):
        raise ValueError("model already has LoRA layers; apply_lora must be called once")
    chosen = _target_linears(model, cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, linear in chosen.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapper = LoRALinear(linear, cfg.r, cfg.alpha, cfg.dropout)
        wrapper.train(linear.training)  # a new module starts in train mode; keep the model's mode
        setattr(parent, child, wrapper)
    return list(chosen)


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Adapter parameters only: ``{"transformer.h.0.attn.c_attn.lora_A": param, ...}``."""
    out = {}
    for name, layer in _lora_layers(model).items():
        out[f"{name}.lora_A"] = layer.lora_A
        out[f"{name}.lora_B"] = layer.lora_B
    return out


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights are counted once."""
    params = list(model.parameters())  # nn.Module.parameters() yields a shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def merge_lora(model: nn.Module) -> None:
    for layer in _lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in _lora_layers(model).values():
        layer.unmerge()


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the equivalent plain model: base names, updates merged in.

    ``...c_attn.base.weight`` becomes ``...c_attn.weight`` (+ delta unless already merged),
    adapters are dropped. The model itself is not changed.
    """
    layers = _lora_layers(model)
    out = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            owner, _, leaf = key.rpartition(".")
            if owner in layers and leaf in ("lora_A", "lora_B"):
                continue
            prefix, _, tail = owner.rpartition(".")
            if tail == "base" and prefix in layers:
                layer = layers[prefix]
                if leaf == "weight" and not layer.merged:
                    value = value + layer.delta_weight().detach()
                key = f"{prefix}.{leaf}"
            out[key] = value
    return out


def adapter_state(model: nn.Module, cfg: LoRAConfig) -> dict:
    """Self-describing adapter dict: format tag, config as plain data, adapter tensors."""
    adapter = {n: p.detach().clone() for n, p in lora_parameters(model).items()}
    if not adapter:
        raise ValueError("model has no LoRA layers to save")
    return {"format": ADAPTER_FORMAT, "lora_config": cfg.to_dict(), "adapter": adapter}


def save_adapter(model: nn.Module, cfg: LoRAConfig, path: str | os.PathLike) -> Path:
    """Write only the adapters (and their config) to ``path``, atomically."""
    return save_atomic(adapter_state(model, cfg), path)
