"""What the runs of one process share: execution settings, base models (pretrained when missing),
data and examples.

The ``Workspace`` holds the process's ``ExecConfig`` and caches base checkpoints by path, the
data by data settings and the tokenised examples by (base, prompt scheme, training data); each
is loaded once and shared by every run that needs it. ``prepare_bases`` gets the bases a grid
uses, pretraining a missing default one the way ``python -m part4_sft.sft`` does
(``part4_sft.base_model.ensure_base``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from part3_pretrain.checkpoint import build_model
from part3_pretrain.configs import ExecConfig
from part3_pretrain.tokenizer import RetailTokenizer

from ..base_model import ensure_base
from ..examples import audit_labels, build_examples, fixed_batches
from ..prompts import get_scheme
from ..sft import load_baseline
from ..splits import DatasetSplits, check_disjoint, load_splits
from .grid import BASES
from .runs import RunConfig, RunSettings


@dataclass
class ExperimentData:
    """The experiment's data: part 4's splits (train = the high-quality pairs) and, for the
    ``data=all`` ablation, all generated pairs, checked disjoint from val/test in the same way."""

    # The experiment scores ``splits.test`` only, deliberately: ``test_unseen`` and
    # ``test_handwritten`` (``splits.OTHER_TEST_SETS``) are reported by ``python -m part4_sft.sft``
    # alone, so a grid's runs stay comparable with each other and cost one test set each.

    splits: DatasetSplits
    dataset_path: Path
    _all: list[dict] | None = None

    @classmethod
    def load(cls, settings: RunSettings) -> ExperimentData:
        return cls(load_splits(settings.dataset), Path(settings.dataset.dataset_path))

    def train_pairs(self, data: str) -> list[dict]:
        if data == "hq":
            return self.splits.train
        if self._all is None:
            pairs = json.loads(self.dataset_path.read_text(encoding="utf-8"))
            check_disjoint(pairs, self.splits.test, "test", check_heldout_values=True)
            check_disjoint(pairs, self.splits.val, "validation", check_heldout_values=False)
            self._all = pairs
        return self._all


class Workspace:
    """Per process: the execution settings, and caches of base checkpoints, data per data
    settings and tokenised examples."""

    def __init__(self, execution: ExecConfig | None = None, **changes) -> None:
        """``execution`` (default: ``ExecConfig()``) with any of its fields changed by keyword,
        e.g. ``Workspace(progress=False)``."""
        self.execution = replace(execution or ExecConfig(), **changes)
        self._bases: dict[str, tuple[dict, RetailTokenizer]] = {}
        self._data: dict[tuple, ExperimentData] = {}
        self._examples: dict[tuple, tuple] = {}

    def base(self, path: str) -> tuple[dict, RetailTokenizer]:
        """(checkpoint dict, tokenizer) of a base model, refusing a leaky pretraining corpus."""
        if path not in self._bases:
            _, tok, ckpt = load_baseline(Path(path))
            self._bases[path] = (ckpt, tok)
        return self._bases[path]

    def data(self, settings: RunSettings) -> ExperimentData:
        key = settings.data_key()
        if key not in self._data:
            self._data[key] = ExperimentData.load(settings)
        return self._data[key]

    def examples(self, run: RunConfig) -> tuple[list, list, list, dict]:
        """(train examples, validation batches, test rows, counts) for the run's base/prompt/data."""
        key = (run.base_path, run.knobs.prompt, run.knobs.data, run.settings.data_key())
        if key not in self._examples:
            ckpt, tok = self.base(run.base_path)
            data = self.data(run.settings)
            block = ckpt["model_config"]["block_size"]
            scheme = get_scheme(run.knobs.prompt)
            train, counts = build_examples(tok, scheme, data.train_pairs(run.knobs.data), block)
            counts["audit"] = audit_labels(train, tok)
            val_pairs = [{"context": r["context"], "response": r["reference"]} for r in data.splits.val]
            val, _ = build_examples(tok, scheme, val_pairs, block)
            self._examples[key] = (train, fixed_batches(val, 32, tok.pad_id, block), data.splits.test, counts)
        return self._examples[key]


def prepare_bases(runs: Sequence[RunConfig], ws: Workspace) -> dict:
    """Pretrain missing default bases (part 3, in a child process, on the workspace's device and
    dtype), then describe every base the runs use: ``{base name: {"path", "pretrained_now",
    "pretrain_seconds", "parameters", "n_layer", "n_embd"}}``."""
    ex, out = ws.execution, {}
    for run in runs:
        name = run.knobs.base
        if name in out:
            continue
        spec = BASES[name]
        announce = f"base {name!r}: no checkpoint at {run.base_path}; pretraining it with part 3 ({spec.description})"
        info = ensure_base(
            run.base_path, spec.path, spec.pretrain, ex.device, ex.dtype, ex.progress, announce, ex.threads
        )
        ckpt, _ = ws.base(run.base_path)
        model, _ = build_model(ckpt, run.base_path)
        info.update(parameters=model.num_params(), n_layer=model.config.n_layer, n_embd=model.config.n_embd)
        secs = info["pretrain_seconds"]
        print(
            f"base {name}: {run.base_path} ({info['parameters']:,} parameters, {model.config.n_layer} layers; "
            f"{'pretrained now' if info['pretrained_now'] else 'reused'}, part-3 pretraining "
            f"{f'{secs:.0f} s' if secs is not None else 'time unknown'})",
            flush=True,
        )
        out[name] = info
    return out
