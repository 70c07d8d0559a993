"""The experiment grid: knobs, their expansion into runs, run names, JSON and CLI grids.

A run is one point of the grid, a ``Knobs``: base model x prompt scheme x adapter (LoRA of some
rank/alpha/targets, or full fine-tuning) x learning rate x epochs x training data x seed. A
``GridSpec`` holds one list per knob; ``expand`` takes the product (base outermost, seed
innermost), and a grid file may hold several specs whose runs are concatenated.

The default grid is the issue's 2 x 2 x 2: bases ``large`` and ``small`` (part 3 models of two
sizes, as gpt2 vs distilgpt2), prompt schemes ``qa`` and ``instruction``, adapters ``r8:c_attn``
and ``r32:c_attn+c_proj``.

Adapter specs (CLI and JSON): ``full``, or ``r<R>[a<ALPHA>]:<target>[+<target>...]`` such as
``r8:c_attn``, ``r32:c_attn+c_proj`` or ``r16a8:c_fc``; alpha defaults to 2 * r (scaling 2).
JSON may also give ``{"r": 8, "alpha": 16, "targets": ["c_attn"]}``.

Grid file: a JSON object (or a list of them) whose keys are the knob names, each a list or a
single value: ``{"base": ["small"], "adapter": ["r8:c_attn", "full"], "lr": [1e-3, 3e-3],
"epochs": [2, 4], "data": ["hq", "all"], "seed": [0, 1]}``. Missing keys take the CLI values.

Run names are derived from the knobs alone: ``<base>-<prompt>-<adapter>`` plus ``-lr<lr>``,
``-ep<epochs>``, ``-all`` and ``-seed<k>`` for knobs that differ from the built-in defaults
(LR of the method, DEFAULT_EPOCHS, "hq", seed 0), e.g. ``small-qa-lora8-c_attn-lr0.001-seed1``.
The same knobs always give the same name, whatever else is in the grid; names are checked to be
unique. A clone is named ``<parent>+key=value+...`` from its changes.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..base_model import DEFAULT_PRETRAINED
from ..lora import LoRAConfig
from ..prompts import SCHEMES

# ---------------------------------------------------------------------------------------------
# base models: two sizes of the part-3 model


@dataclass(frozen=True)
class BaseModel:
    """A part-3 base model: where its checkpoint lives and how part 3 pretrains it if missing."""

    name: str
    path: str
    pretrain: dict = field(default_factory=dict)  # PretrainConfig overrides (beyond part-3 defaults)
    description: str = ""


# The large base IS part 3's default model (4 layers x 128, ~1.08M parameters), so
# `python -m part3_pretrain.pretrain` and `python -m part4_sft.sft` share it. The small one is
# built like distilgpt2 next to gpt2: half the depth, same width, vocabulary, corpus and recipe.
SMALL_PRETRAIN = {"n_layer": 2}
BASES: dict[str, BaseModel] = {
    "large": BaseModel(
        "large", DEFAULT_PRETRAINED, {}, "part-3 default: 4 layers, 4 heads, 128 wide (~1.08M parameters)"
    ),
    "small": BaseModel(
        "small",
        "checkpoints/pretrain_small/model.pt",
        dict(SMALL_PRETRAIN),
        "distilgpt2-style: 2 layers, 4 heads, 128 wide (~0.68M parameters)",
    ),
}

# ---------------------------------------------------------------------------------------------
# knobs

METHODS = ("lora", "full")
DATA_CHOICES = ("hq", "all")  # the 500 high-quality pairs, or all 5,000 (the filter's ablation)
DEFAULT_BASES = ("large", "small")
DEFAULT_PROMPTS = ("qa", "instruction")
DEFAULT_ADAPTERS = ("r8:c_attn", "r32:c_attn+c_proj")
DEFAULT_LORA_LR = 5e-3  # why: see the docstring of part4_sft/experiment/cli.py
DEFAULT_FULL_LR = 1e-3
DEFAULT_EPOCHS = 5
DEFAULT_DATA = "hq"
KNOB_KEYS = ("base", "prompt", "adapter", "lr", "epochs", "data", "seed")
# what --set accepts on a clone: the knobs (but not base) plus the adapter's parts
SET_KEYS = ("prompt", "adapter", "method", "lora_r", "lora_alpha", "lora_targets", "lr", "epochs", "data", "seed")

_ADAPTER_RE = re.compile(r"^r(\d+)(?:a([0-9.eE+-]+))?:(.+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,+=-]*$")


class GridError(ValueError):
    """A grid value that is not valid; the message says which."""


@dataclass(frozen=True)
class Adapter:
    """How a run adapts the base: full fine-tuning, or LoRA with rank/alpha on target modules."""

    method: str  # "lora" | "full"
    r: int = 0
    alpha: float = 0.0
    targets: tuple[str, ...] = ()

    @classmethod
    def full(cls) -> Adapter:
        return cls("full")

    @classmethod
    def lora(cls, r: int, alpha: float | None = None, targets: Sequence[str] = ("c_attn",)) -> Adapter:
        a = cls("lora", int(r), float(2 * r if alpha is None else alpha), tuple(targets))
        problems = a.lora_config().problems()
        if problems:
            raise GridError(f"adapter {a.spec()}: " + "; ".join(problems))
        return a

    @classmethod
    def parse(cls, spec: Any) -> Adapter:
        """``"full"``, ``"r8:c_attn"``, ``"r32a64:c_attn+c_proj"`` or a dict with r/alpha/targets."""
        if isinstance(spec, Adapter):
            return spec
        if isinstance(spec, dict):
            return _adapter_from_dict(spec)
        if not isinstance(spec, str):
            raise GridError(f"adapter must be a string like 'r8:c_attn' or 'full' (got {spec!r})")
        if spec == "full":
            return cls.full()
        m = _ADAPTER_RE.match(spec)
        if not m:
            raise GridError(
                f"adapter {spec!r}: expected 'full' or r<R>[a<ALPHA>]:<target>[+<target>...], "
                "e.g. r8:c_attn or r32:c_attn+c_proj"
            )
        try:
            alpha = None if m.group(2) is None else float(m.group(2))
        except ValueError:
            raise GridError(f"adapter {spec!r}: alpha {m.group(2)!r} is not a number") from None
        targets = tuple(t for t in m.group(3).split("+"))
        return cls.lora(int(m.group(1)), alpha, targets)

    def spec(self) -> str:
        """The CLI form, alpha omitted when it is the default 2 * r."""
        if self.method == "full":
            return "full"
        alpha = "" if self.alpha == 2 * self.r else f"a{self.alpha:g}"
        return f"r{self.r}{alpha}:" + "+".join(self.targets)

    def name_token(self) -> str:
        if self.method == "full":
            return "full"
        alpha = "" if self.alpha == 2 * self.r else f"a{self.alpha:g}"
        return f"lora{self.r}{alpha}-" + "+".join(_safe(t) for t in self.targets)

    def lora_config(self) -> LoRAConfig:
        return LoRAConfig(r=self.r, alpha=self.alpha, dropout=0.0, targets=self.targets)


def _adapter_from_dict(d: dict) -> Adapter:
    unknown = set(d) - {"method", "r", "alpha", "targets"}
    if unknown:
        raise GridError(f"adapter {d!r}: unknown keys {sorted(unknown)}")
    if d.get("method", "lora") == "full":
        return Adapter.full()
    if d.get("method", "lora") != "lora":
        raise GridError(f"adapter method must be one of {METHODS} (got {d.get('method')!r})")
    r, targets = d.get("r", 8), d.get("targets", ["c_attn"])
    if isinstance(targets, str):
        targets = targets.replace(",", "+").split("+")
    if not isinstance(r, int) or isinstance(r, bool) or not isinstance(targets, (list, tuple)):
        raise GridError(f"adapter {d!r}: r must be an integer and targets a list of module names")
    alpha = d.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
        raise GridError(f"adapter {d!r}: alpha must be a number")
    return Adapter.lora(r, alpha, tuple(targets))


def _safe(text: str) -> str:
    """A name fragment: anything but letters, digits, '_' and '.' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", text)


def _safe_value(text: str) -> str:
    """A --set value in a clone's name: '+' (our separator) becomes ',', odd characters '_'."""
    return re.sub(r"[^A-Za-z0-9_.,-]", "_", text.replace("+", ","))


def _num(x: float) -> str:
    return f"{x:g}"


def default_lr(method: str, lora_lr: float = DEFAULT_LORA_LR, full_lr: float = DEFAULT_FULL_LR) -> float:
    return lora_lr if method == "lora" else full_lr


@dataclass(frozen=True)
class Knobs:
    """One point of the grid: everything that differs between the runs of an experiment."""

    base: str
    prompt: str
    adapter: Adapter
    lr: float
    epochs: int = DEFAULT_EPOCHS
    data: str = DEFAULT_DATA
    seed: int = 0

    def name(self) -> str:
        """Readable and unique: base-prompt-adapter, plus every knob that is not its default."""
        parts = [self.base, self.prompt, self.adapter.name_token()]
        if self.lr != default_lr(self.adapter.method):
            parts.append(f"lr{_num(self.lr)}")
        if self.epochs != DEFAULT_EPOCHS:
            parts.append(f"ep{self.epochs}")
        if self.data != DEFAULT_DATA:
            parts.append(self.data)
        if self.seed != 0:
            parts.append(f"seed{self.seed}")
        return "-".join(parts)

    def config_id(self) -> str:
        """The name without the seed: runs that differ only by seed share it (mean/std rows)."""
        return replace(self, seed=0).name()

    def problems(self) -> list[str]:
        p = []
        if self.base not in BASES:
            p.append(f"base {self.base!r} is not one of {sorted(BASES)}")
        if self.prompt not in SCHEMES:
            p.append(f"prompt {self.prompt!r} is not one of {sorted(SCHEMES)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            p.append(f"lr must be > 0 (got {self.lr!r})")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            p.append(f"epochs must be an integer >= 1 (got {self.epochs!r})")
        if self.data not in DATA_CHOICES:
            p.append(f"data {self.data!r} is not one of {list(DATA_CHOICES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            p.append(f"seed must be an integer >= 0 (got {self.seed!r})")
        return p

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adapter"] = self.adapter.spec()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Knobs:
        return cls(
            base=d["base"],
            prompt=d["prompt"],
            adapter=Adapter.parse(d["adapter"]),
            lr=float(d["lr"]),
            epochs=int(d["epochs"]),
            data=d["data"],
            seed=int(d["seed"]),
        )

    def changed(self, sets: Sequence[str]) -> tuple[Knobs, list[tuple[str, str]]]:
        """A copy with ``key=value`` changes applied (the ``--set`` of a clone) and the changes."""
        k, changes = self, []
        for item in sets:
            key, sep, value = item.partition("=")
            key, value = key.strip().replace("-", "_"), value.strip()
            if not sep or not value:
                raise GridError(f"--set {item!r}: expected key=value")
            if key == "base":
                raise GridError(
                    "--set base=...: a clone warm-starts from its parent's weights, so it keeps the parent's base model"
                )
            if key not in SET_KEYS:
                raise GridError(f"--set {item!r}: unknown key {key!r}; choose from {list(SET_KEYS)}")
            k = _set_one(k, key, value)
            changes.append((key, value))
        problems = k.problems()
        if problems:
            raise GridError("--set: " + "; ".join(problems))
        if k == self:
            raise GridError("--set changes nothing: the clone would be identical to its parent")
        return k, changes


def _set_one(k: Knobs, key: str, value: str) -> Knobs:
    try:
        if key in ("prompt", "data"):
            return replace(k, **{key: value})
        if key in ("epochs", "seed"):
            return replace(k, **{key: int(value)})
        if key == "lr":
            return replace(k, lr=float(value))
        if key == "adapter":
            return replace(k, adapter=Adapter.parse(value))
        if key == "method":
            if value not in METHODS:
                raise GridError(f"--set method={value}: choose from {list(METHODS)}")
            if value == k.adapter.method:
                return k
            return replace(k, adapter=Adapter.full() if value == "full" else Adapter.lora(8))
        a = k.adapter
        if a.method != "lora":
            raise GridError(f"--set {key}=...: the run does full fine-tuning; use --set adapter=r8:c_attn")
        if key == "lora_r":
            r = int(value)
            # keep the scaling alpha / r when alpha was the default 2 * r
            return replace(k, adapter=Adapter.lora(r, 2 * r if a.alpha == 2 * a.r else a.alpha, a.targets))
        if key == "lora_alpha":
            return replace(k, adapter=Adapter.lora(a.r, float(value), a.targets))
        return replace(k, adapter=Adapter.lora(a.r, a.alpha, tuple(value.replace(",", "+").split("+"))))
    except ValueError as e:
        if isinstance(e, GridError):
            raise
        raise GridError(f"--set {key}={value}: {e}") from None


def clone_name(parent: str, changes: Sequence[tuple[str, str]], taken: set[str] | frozenset[str]) -> str:
    """``<parent>+key=value...``, made unique with ``+2``, ``+3`` ... against ``taken``."""
    name = parent + "".join(f"+{key}={_safe_value(value)}" for key, value in changes)
    out, n = name, 2
    while out in taken:
        out, n = f"{name}+{n}", n + 1
    return out


# ---------------------------------------------------------------------------------------------
# grids


@dataclass(frozen=True)
class GridSpec:
    """One list per knob; ``lr`` empty means each adapter's method default."""

    base: tuple[str, ...] = DEFAULT_BASES
    prompt: tuple[str, ...] = DEFAULT_PROMPTS
    adapter: tuple[Adapter, ...] = tuple(Adapter.parse(a) for a in DEFAULT_ADAPTERS)
    lr: tuple[float, ...] = ()
    epochs: tuple[int, ...] = (DEFAULT_EPOCHS,)
    data: tuple[str, ...] = (DEFAULT_DATA,)
    seed: tuple[int, ...] = (0,)

    def expand(self, lora_lr: float = DEFAULT_LORA_LR, full_lr: float = DEFAULT_FULL_LR) -> list[Knobs]:
        runs = []
        for base, prompt, adapter in itertools.product(self.base, self.prompt, self.adapter):
            lrs = self.lr or (default_lr(adapter.method, lora_lr, full_lr),)
            for lr, epochs, data, seed in itertools.product(lrs, self.epochs, self.data, self.seed):
                runs.append(Knobs(base, prompt, adapter, float(lr), epochs, data, seed))
        return runs


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def spec_from_dict(d: dict, defaults: GridSpec, where: str = "grid") -> GridSpec:
    """A GridSpec from a JSON object; keys it does not name keep ``defaults``' values."""
    if not isinstance(d, dict):
        raise GridError(f"{where}: expected a JSON object with knob keys, got {type(d).__name__}")
    unknown = set(d) - set(KNOB_KEYS)
    if unknown:
        raise GridError(f"{where}: unknown keys {sorted(unknown)}; knobs are {list(KNOB_KEYS)}")
    values = {}
    for key, raw in d.items():
        items = _as_list(raw)
        if not items:
            raise GridError(f"{where}: {key!r} is an empty list")
        if key == "adapter":
            values[key] = tuple(Adapter.parse(a) for a in items)
        elif key == "lr":
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
                raise GridError(f"{where}: lr values must be numbers (got {items!r})")
            values[key] = tuple(float(x) for x in items)
        elif key in ("epochs", "seed"):
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
                raise GridError(f"{where}: {key} values must be integers (got {items!r})")
            values[key] = tuple(items)
        else:
            if not all(isinstance(x, str) for x in items):
                raise GridError(f"{where}: {key} values must be strings (got {items!r})")
            values[key] = tuple(items)
    return replace(defaults, **values)


def load_grid_file(path: str | Path, defaults: GridSpec) -> list[GridSpec]:
    """Specs from a JSON grid file: one object, or a list of objects whose runs are concatenated."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"--grid {path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GridError(f"--grid {path}: not valid JSON ({e})") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise GridError(f"--grid {path}: the list of grids is empty")
    return [
        spec_from_dict(d, defaults, f"--grid {path} [{i}]" if isinstance(data, list) else f"--grid {path}")
        for i, d in enumerate(items)
    ]


def expand_all(
    specs: Sequence[GridSpec], lora_lr: float = DEFAULT_LORA_LR, full_lr: float = DEFAULT_FULL_LR
) -> list[Knobs]:
    """Every run of every spec, in order, duplicates dropped; checked valid and uniquely named."""
    runs: list[Knobs] = []
    for spec in specs:
        for k in spec.expand(lora_lr, full_lr):
            if k not in runs:
                runs.append(k)
    if not runs:
        raise GridError("the grid has no runs")
    problems = sorted({p for k in runs for p in k.problems()})
    if problems:
        raise GridError("; ".join(problems))
    check_unique_names(runs)
    return runs


def check_unique_names(runs: Sequence[Knobs]) -> None:
    seen: dict[str, Knobs] = {}
    for k in runs:
        name = k.name()
        if not _NAME_RE.match(name):
            raise GridError(f"run name {name!r} has characters that are not allowed")
        if name in seen and seen[name] != k:
            raise GridError(f"two different runs would both be named {name!r}: {seen[name]} and {k}")
        seen[name] = k


def valid_run_name(name: str) -> bool:
    return bool(_NAME_RE.match(name)) and name not in (".", "..")
