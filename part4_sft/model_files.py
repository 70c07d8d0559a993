"""Any model file the project writes, loaded ready to generate: weights, tokenizer, prompt scheme.

``load_any(path)`` accepts

- a part-3 pretrained checkpoint (``checkpoints/pretrain/model.pt``): the base speaks its corpus's
  own ``dialogue`` format (``Customer: ...\\nAgent:``), the format the evaluation gives it too;
- ``part4_sft.sft``'s ``sft_model.pt`` (or its output directory): the scheme it was tuned in;
- an experiment run's ``model.pt`` (full fine-tuning), ``adapter.pt`` (LoRA adapters alone, applied
  to the run's base and merged) or ``state.pt`` (its latest resumable checkpoint, adapters
  merged), or the run's directory;
- a LoRA adapter file anywhere, with ``base=`` naming the checkpoint it adapts.

Where the scheme and the base a model was tuned from are recorded (in the checkpoint, in an
``evaluation.json`` beside it, or in the run's ``config.json``), they come with it: the chat's
``--compare`` needs the base. Anything else fails with one line naming the file
(``CheckpointError``), never a traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from part3_pretrain.checkpoint import CheckpointError, build_model, load_checkpoint
from part3_pretrain.model import GPT, GPTConfig
from part3_pretrain.name_grounding import ReplyWords
from part3_pretrain.tokenizer import RetailTokenizer

from .experiment.grid import Adapter, GridError
from .lora import ADAPTER_FORMAT, LoRAConfig, apply_lora, merged_state_dict
from .prompts import SCHEMES

BASE_SCHEME = "dialogue"  # a pretrained base's own format (sft.BASELINE_SCHEME)
# The file a directory stands for, in order: an SFT output, an experiment run, a pretraining run.
DIRECTORY_FILES = ("sft_model.pt", "model.pt", "adapter.pt", "state.pt")


@dataclass
class LoadedModel:
    """A model ready for generation and what is known about how it was made."""

    model: GPT
    tokenizer: RetailTokenizer
    scheme: str  # the prompt scheme it was tuned in (the base's own format for a base)
    path: Path
    kind: str  # "pretrained", "sft", "experiment run" or "lora adapter"
    base_path: Path | None  # the checkpoint it was tuned from, where recorded
    retrieve: int = 0  # fine-tuned with --retrieve K: its prompts held K retrieved training exchanges
    reply_words: ReplyWords | None = None  # its training replies' own capitalised words (name grounding), where stored


def resolve_file(path: str | os.PathLike) -> Path:
    """``path`` itself, or the model file inside a directory the project wrote."""
    path = Path(path)
    if path.is_dir():
        for name in DIRECTORY_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no model file in this directory (looked for {', '.join(DIRECTORY_FILES)})")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    return path


def _json_beside(path: Path, name: str) -> dict:
    """``name`` (a JSON object) in the directory of ``path``, or {} where absent or unreadable."""
    try:
        doc = json.loads((path.parent / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _run_config(path: Path, ckpt: dict) -> dict:
    """The experiment run's config: stored in its checkpoint, else its directory's config.json."""
    run = ckpt.get("run_config")
    return run if isinstance(run, dict) else _json_beside(path, "config.json")


def _recorded_base(path: Path, ckpt: dict, run: dict) -> Path | None:
    """The checkpoint this model was tuned from, as recorded by whatever wrote it."""
    for value in (
        ckpt.get("base_checkpoint"),
        _json_beside(path, "evaluation.json").get("pretrained_checkpoint"),
        run.get("base_path"),
    ):
        if isinstance(value, str) and value:
            return Path(value)
    return None


def _scheme(ckpt: dict, run: dict) -> str | None:
    knobs = run.get("knobs") if isinstance(run.get("knobs"), dict) else {}
    scheme = ckpt.get("prompt_scheme") or knobs.get("prompt")
    return scheme if scheme in SCHEMES else None


def _lora_of(run: dict) -> LoRAConfig | None:
    """The run's LoRA config where its adapter is LoRA (experiment runs record it in their knobs)."""
    adapter = (run.get("knobs") or {}).get("adapter") if isinstance(run.get("knobs"), dict) else None
    if adapter is None:
        return None
    try:
        parsed = Adapter.parse(adapter)  # the grid knows how a run's adapter is written and applied
    except GridError as e:
        raise CheckpointError(f"bad adapter in the run config: {e}") from None
    return parsed.lora_config() if parsed.method == "lora" else None


def _plain(model: GPT) -> GPT:
    """The plain model equal to ``model`` with its LoRA updates merged into the weights."""
    plain = GPT(model.config)
    plain.load_state_dict(merged_state_dict(model), strict=True)
    return plain


def _with_merged_lora(ckpt: dict, lora: LoRAConfig, path: Path) -> tuple[GPT, RetailTokenizer]:
    """A checkpoint whose weights include LoRA layers (a LoRA run's state.pt), merged."""
    try:
        model = GPT(GPTConfig.from_dict(ckpt["model_config"]))
        tok = RetailTokenizer.from_str(ckpt["tokenizer"])
        apply_lora(model, lora)
        model.load_state_dict(ckpt["model"], strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: weights do not fit the run's LoRA config ({str(e).splitlines()[0]})") from None
    return _plain(model), tok


def _load_checkpoint_file(path: Path, ckpt: dict) -> LoadedModel:
    run = _run_config(path, ckpt)
    has_lora = any(k.endswith(("lora_A", "lora_B")) for k in ckpt.get("model", {}))
    if has_lora:
        lora = _lora_of(run)
        if lora is None:
            raise CheckpointError(f"{path}: holds LoRA weights but no run config says how they were applied")
        model, tok = _with_merged_lora(ckpt, lora, path)
    else:
        model, tok = build_model(ckpt, path)
    scheme = _scheme(ckpt, run)
    tuned = scheme is not None
    kind = "sft" if "prompt_scheme" in ckpt else "experiment run" if tuned else "pretrained"
    base = _recorded_base(path, ckpt, run) if tuned else None
    retrieve = (ckpt.get("sft_config") or {}).get("retrieve") or 0
    words = ckpt.get("reply_words")
    names = ReplyWords.from_dict(words) if isinstance(words, dict) else None
    return LoadedModel(model, tok, scheme or BASE_SCHEME, path, kind, base, int(retrieve), names)


def _load_adapter_file(path: Path, doc: dict, base: Path | None) -> LoadedModel:
    run = _json_beside(path, "config.json")
    base = base or _recorded_base(path, {}, run)
    if base is None:
        raise CheckpointError(f"{path}: a LoRA adapter needs the checkpoint it adapts: pass --base PATH")
    try:
        lora = LoRAConfig.from_dict(doc["lora_config"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad LoRA config in the adapter file ({e})") from None
    model, tok = build_model(load_checkpoint(base), base)
    apply_lora(model, lora)
    state = model.state_dict()
    adapter = doc.get("adapter", {})
    unknown = sorted(k for k in adapter if k not in state)
    if not adapter or unknown:
        raise CheckpointError(f"{path}: adapter tensors do not fit the base {base} ({unknown[:2] or 'none'})")
    try:
        model.load_state_dict({**state, **adapter}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: adapter does not fit the base {base} ({str(e).splitlines()[0]})") from None
    return LoadedModel(_plain(model), tok, _scheme({}, run) or "chat", path, "lora adapter", base)


def _read(path: Path) -> dict:
    """The file as a dict, loaded with weights_only=True (one-line errors)."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or one holding Python objects: load_checkpoint says which
        return load_checkpoint(path)
    if isinstance(doc, dict) and doc.get("format") == ADAPTER_FORMAT:
        return doc
    return load_checkpoint(path)


def load_any(path: str | os.PathLike, base: str | os.PathLike | None = None) -> LoadedModel:
    """The model in ``path`` (a file or a run directory), in eval mode on the CPU."""
    file = resolve_file(path)
    doc = _read(file)
    if doc.get("format") == ADAPTER_FORMAT:
        loaded = _load_adapter_file(file, doc, Path(base) if base is not None else None)
    else:
        loaded = _load_checkpoint_file(file, doc)
    loaded.model.eval()
    return loaded
