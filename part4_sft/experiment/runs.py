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

from dataclasses import asdict, dataclass, fields

from .grid import Knobs

# settings that decide the data every run of an experiment sees
DATA_FIELDS = ("dataset_path", "n_pairs", "n_high_quality", "n_val", "n_test", "data_seed")
# execution settings that older versions stored in a run's settings: ignored when read back
LEGACY_EXEC_KEYS = ("device", "dtype", "eval_batch_size")


def _from_object(cls, obj):
    """A dataclass ``cls`` out of any object with attributes of the same names (the CLI config)."""
    return cls(**{f.name: getattr(obj, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class RunSettings:
    """What the runs of an experiment share (the knobs are what differs). Defaults: see cli.py."""

    batch_size: int = 16
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    evals_per_epoch: int = 1
    val_gen_rows: int = 48
    max_new_tokens: int = 90
    n_boot: int = 1000
    n_examples: int = 8
    dataset_path: str = "data/sft_dataset.json"
    n_pairs: int = 5000
    n_high_quality: int = 500
    n_val: int = 100
    n_test: int = 250
    data_seed: int = 0

    @classmethod
    def from_object(cls, obj) -> RunSettings:
        """The settings out of any object with attributes of the same names (the CLI config)."""
        return _from_object(cls, obj)

    @classmethod
    def from_dict(cls, d: dict) -> RunSettings:
        """The settings of a config.json; the execution settings that older versions stored
        there (``LEGACY_EXEC_KEYS``) are ignored, any other unknown key is an error."""
        return cls(**{k: v for k, v in d.items() if k not in LEGACY_EXEC_KEYS})

    def data_key(self) -> tuple:
        return tuple(getattr(self, n) for n in DATA_FIELDS)


@dataclass(frozen=True)
class ExecSettings:
    """How this process executes runs, not part of any run's identity. Defaults: see cli.py."""

    device: str = "auto"
    dtype: str = "auto"  # autocast dtype for training
    eval_batch_size: int = 64  # prompts generated at once
    progress: bool = True
    threads: int = 0  # CPU threads for PyTorch (0: its default)

    @classmethod
    def from_object(cls, obj) -> ExecSettings:
        """The execution settings out of any object with attributes of the same names (the CLI config)."""
        return _from_object(cls, obj)


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
            "settings": asdict(self.settings),
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
