"""What a run is: its knobs, the settings the runs of an experiment share, its base and parent.

A ``RunConfig`` is a run's identity: it is stored in the run's config.json when the run is
registered, and a later invocation that resolves the same run name to another ``RunConfig`` is
refused (``store.check_registration``), because the run's results would then come from two
different configurations.

How a process executes runs (device, autocast dtype, generation batch size, progress bars, CPU
threads) is not part of that identity: it is an ``ExecSettings``, carried by the process's
``workspace.Workspace``, so an experiment may be continued, or rerun, on another device or with
another batch size. (Floating-point results depend on the device and dtype, so runs compare
exactly only under the same ones; experiment.json records the last ones used.)
"""

from __future__ import annotations

from dataclasses import dataclass

from part3_pretrain.cli import below, compose, flat_dict, option, part
from part3_pretrain.configs import OptimConfig

from ..configs import DataConfig, EvalConfig
from .grid import Knobs

# the synthetic data's reply budget: the experiment's default (its runs' stored identity, as
# before "auto" existed), and what "auto" resolves to here (the experiment uses generated data only)
AUTO_NEW_TOKENS = 90

# settings that decide the data every run of an experiment sees
DATA_FIELDS = ("dataset_path", "n_pairs", "n_high_quality", "n_val", "n_test", "data_seed")
# execution settings that older versions stored in a run's settings: ignored when read back
LEGACY_EXEC_KEYS = ("device", "dtype", "eval_batch_size")
# options of the shared parts that the experiment does not have: the LR and the number of epochs
# are knobs of each run, warmup is a ratio of its steps; replies are greedy; the data is generated
OPTIM_OMIT = ("lr", "warmup_steps", "decay_fraction", "beta1", "beta2", "grad_accum")
EVAL_OMIT = ("temperature", "top_k", "top_p")
DATA_OMIT = ("data", "test_data", "context_field", "response_field", "quality_field", "min_quality")
DATA_OMIT += ("test_fraction", "val_fraction", "train_set", "drop_test_overlap")


@dataclass
class RunSettings:
    """What the runs of an experiment share (the knobs are what differs): part of every run's identity."""

    optim: OptimConfig = part(
        OptimConfig(beta2=0.999, batch_size=16),
        omit=OPTIM_OMIT,
        help={
            "batch_size": "pairs per optimizer step",
            "weight_decay": "weight decay (matrices only)",
            "min_lr_ratio": "final LR as a fraction of the run's LR (cosine and wsd)",
        },
    )
    warmup_ratio: float = option(0.1, "share of a run's steps spent warming the LR up")
    evals_per_epoch: int = option(
        1, "validation evaluations per epoch, each with greedy replies to the validation subset (and one at the end)"
    )
    val_gen_rows: int = option(
        48,
        "validation rows (the first N, fixed) answered greedily at every interval "
        "evaluation (val_gen/ curves); the whole validation split is scored at the end "
        "(final_val/) and the test set only then (final/)",
    )
    evaluation: EvalConfig = part(
        EvalConfig(n_examples=8, max_new_tokens=AUTO_NEW_TOKENS),
        omit=EVAL_OMIT,
        help={
            "max_new_tokens": "longest greedy reply (as part4_sft.sft)",
            "n_boot": "bootstrap resamples for the final metrics' confidence intervals",
            "n_examples": "replies kept in each run's evaluation.json",
        },
    )
    dataset: DataConfig = part(
        DataConfig(),
        omit=DATA_OMIT,
        help={
            "n_high_quality": "synthetic pairs rated high quality",
            "data_seed": "seed of the synthetic data (and of generation)",
        },
    )

    def problems(self) -> list[str]:
        p = below(self, ("val_gen_rows",), 1) + below(self, ("evals_per_epoch", "data_seed"), 0)
        if not 0 <= self.warmup_ratio < 1:
            p.append(f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})")
        return p

    def to_dict(self) -> dict:
        """The flat dict a run's config.json stores (the option names)."""
        return flat_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSettings:
        """The settings of a config.json; the execution settings that older versions stored
        there (``LEGACY_EXEC_KEYS``) are ignored, any other unknown key is an error."""
        return compose(cls, **{k: v for k, v in d.items() if k not in LEGACY_EXEC_KEYS})

    def data_key(self) -> tuple:
        return tuple(getattr(self.dataset, n) for n in DATA_FIELDS)


@dataclass(frozen=True)
class RunConfig:
    """A run, resolved: its name, knobs, shared settings, base checkpoint and (clones) parent: its
    identity, what config.json holds and what a rerun must match."""

    name: str
    knobs: Knobs
    settings: RunSettings
    base_path: str
    parent: str | None = None
    changes: tuple[str, ...] = ()  # a clone's --set items

    @property
    def config_id(self) -> str:
        """Runs that differ only by seed share it; a clone is its own config."""
        return self.knobs.config_id() if self.parent is None else self.name

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "config_id": self.config_id,
            "knobs": self.knobs.to_dict(),
            "settings": self.settings.to_dict(),
            "base_path": self.base_path,
            "parent": self.parent,
            "changes": list(self.changes),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(
            name=d["name"],
            knobs=Knobs.from_dict(d["knobs"]),
            settings=RunSettings.from_dict(d["settings"]),
            base_path=d["base_path"],
            parent=d.get("parent"),
            changes=tuple(d.get("changes", ())),
        )

    def differences(self, other: RunConfig) -> list[str]:
        a, b = _flat(self.to_dict()), _flat(other.to_dict())
        return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
