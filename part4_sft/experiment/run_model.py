"""The model of a run, built one way: fresh from its base, warm-started from a clone's parent, or
the architecture a checkpoint of the run is resumed into."""

from __future__ import annotations

from pathlib import Path

import torch

from part3_pretrain.checkpoint import CheckpointError, build_model, load_checkpoint
from part3_pretrain.model import GPT

from ..lora import apply_lora, merged_state_dict
from .runs import RunConfig
from .store import load_run_config
from .workspace import Workspace


def build_run_model(run: RunConfig, exp_dir: Path, ws: Workspace, *, resume: bool = False) -> GPT:
    """The model of ``run`` (whose directory is ``exp_dir / run.name``):

    - ``resume``: the architecture the run's checkpoint fits, its base plus its adapters; the
      trainer loads the weights (and the RNG) from the checkpoint;
    - a fresh run: a fresh copy of its base, then LoRA adapters when it uses them, seeded by the
      run's seed;
    - a clone (``run.parent``): the parent's latest weights (final when it finished). A clone
      whose adapter has the parent's shape continues the parent's adapters (its state equals the
      parent's); otherwise it starts from the parent's merged weights plus fresh adapters, which
      are zero at init, so its first forward pass equals the parent's last.
    """
    ckpt, _ = ws.base(run.base_path)
    model, _ = build_model(ckpt, run.base_path)
    adapter = run.knobs.adapter
    if resume:
        return _with_adapter(model, run)
    torch.manual_seed(run.knobs.seed)
    if run.parent is None:
        return _with_adapter(model, run)
    parent_model, parent = _parent_model(exp_dir, run.parent, ws)
    if adapter.method == "lora" and parent.knobs.adapter == adapter:
        model = _with_adapter(model, run)
        model.load_state_dict(parent_model.state_dict(), strict=True)
        return model
    model.load_state_dict(merged_state_dict(parent_model), strict=True)
    return _with_adapter(model, run)


def _with_adapter(model: GPT, run: RunConfig) -> GPT:
    """``model`` with the run's LoRA adapters applied (full fine-tuning: unchanged)."""
    if run.knobs.adapter.method == "lora":
        apply_lora(model, run.knobs.adapter.lora_config())
    return model


def _parent_model(exp_dir: Path, name: str, ws: Workspace) -> tuple[GPT, RunConfig]:
    """The parent run's model with its latest checkpoint's weights, and its config."""
    parent = load_run_config(exp_dir / name)
    state_path = exp_dir / name / "state.pt"
    if not state_path.is_file():
        raise CheckpointError(f"run {parent.name} has no weights yet ({state_path} is missing): train it first")
    model = build_run_model(parent, exp_dir, ws, resume=True)
    model.load_state_dict(load_checkpoint(state_path)["model"], strict=True)
    return model, parent
