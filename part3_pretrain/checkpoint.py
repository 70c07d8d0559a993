"""Checkpoints that describe themselves: tensors plus plain data, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (model config as a
dict, the tokenizer as its JSON string, step, optimizer and RNG state, data position, metrics),
so it loads with ``torch.load(weights_only=True)``: no pickled Python objects, no code execution.
Saves go through ``fileio.save_atomic`` (temp file, fsync, ``os.replace``): an interrupted save
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .model import GPT, GPTConfig
from .tokenizer import RetailTokenizer

FORMAT = "retail-sft/checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model/tokenizer."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict safely (``weights_only=True``), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's message goes on to suggest weights_only=False: never
        raise CheckpointError(
            f"{path}: refused: it holds Python objects that a weights-only load does not "
            f"run (not a retail-sft checkpoint, or tampered with)"
        ) from None
    except Exception as e:  # corrupt zip, truncated file, ...
        raise CheckpointError(
            f"{path}: cannot load checkpoint: the file is corrupt or truncated ({type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a retail-sft checkpoint (format {FORMAT!r} expected)")
    return ckpt


def model_checkpoint(model: GPT, tokenizer: RetailTokenizer, **extra: Any) -> dict:
    """The self-describing dict for ``model`` (unwrapped, uncompiled) plus ``extra`` plain data."""
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "tokenizer": tokenizer.to_str(),
        **extra,
    }


def build_model(ckpt: dict, path: str | os.PathLike = "checkpoint") -> tuple[GPT, RetailTokenizer]:
    """Rebuild the model from the saved config, load weights strictly, check the tokenizer fits."""
    try:
        config = GPTConfig.from_dict(ckpt["model_config"])
        tokenizer = RetailTokenizer.from_str(ckpt["tokenizer"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad model config or tokenizer ({e})") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model expects vocab_size={config.vocab_size}"
        )
    model = GPT(config)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the config ({str(e).splitlines()[0]})") from None
    bad = non_finite_tensors(ckpt["model"])
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensors hold NaN or inf (e.g. {bad[0]}): the run that "
            f"wrote it diverged; train it again with a lower --lr"
        )
    return model, tokenizer


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold NaN or inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[GPT, RetailTokenizer, dict]:
    """Checkpoint file -> (model, tokenizer, raw checkpoint dict)."""
    ckpt = load_checkpoint(path, map_location)
    model, tokenizer = build_model(ckpt, path)
    return model, tokenizer, ckpt
