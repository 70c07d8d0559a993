"""One run of an experiment: build its model, train it chunk by chunk, evaluate, log to TensorBoard.

A run lives in its own directory::

    <experiment>/<run>/config.json     resolved config (knobs + settings + base checkpoint + parent)
                       tb/             TensorBoard event files (the source of truth for the report)
                       metrics.jsonl   the same scalars as JSON lines
                       state.pt        resumable trainer checkpoint (model, optimizer, data position, RNG)
                       adapter.pt      LoRA runs: the adapters alone (full runs: model.pt)
                       evaluation.json final test and validation reports and the first test replies
                       status.json     step / max_steps / wall seconds; DONE when finished, STOP when stopped

Chunks: ``train_chunk(run, until)`` rebuilds the model, loads ``state.pt`` if there is one and
trains with ``TrainerConfig.stop_after=until``, then checkpoints. The trainer restores weights,
optimizer, data position and RNG exactly, so training in N chunks gives the same batches in the
same order, the same weights and the same logged losses as one uninterrupted run (tested), and an
interrupted run (Ctrl-C, a crash) continues exactly from its last checkpoint.

Evaluation. Model selection never sees the test set:

- ``val/loss``, ``val/token_acc``: the validation pairs' teacher-forced loss and token accuracy,
  before training, every ``evals_per_epoch``-th of an epoch and at the end;
- ``val_gen/<key>``: greedy float32 replies to a fixed subset of the VALIDATION rows (the first
  ``val_gen_rows``) at the same times, scored by ``evaluate.score``; ``<key>`` is every
  ``evaluate.scalars`` value the data supports (specifics_recall, invented_share,
  intent_accuracy, rubric_pass, rubric_mean, rouge_l, bleu, eos_stop_rate) plus mean_length;
- ``final_val/<key>``: once, at the end, greedy replies to the WHOLE validation split, the same
  keys plus CIs (``<key>_ci_low``/``_ci_high``). This is what picks the best run (report.py);
- ``final/<key>``: once, at the end, greedy replies to the whole held-out TEST set, the same keys
  and CIs plus ``sentence_bleu``, ``ref_loss``/``ref_token_acc`` (teacher-forced loss of the first
  references) and ``eval_seconds``. Reported, never used to choose anything.

At the last step the subset's ``val_gen/`` values come from the whole-validation replies (same
model, same decoding), so the subset is not generated twice. Job metrics a dataset cannot support
(rows without ``intent``/``slots``) are absent, never logged as 0. ``evaluation.json`` keeps both
full reports (job metrics with CIs, text metrics, stop statistics) and the first test replies.
The trainer logs ``train/loss``, ``train/token_acc``, ``train/lr`` and ``train/grad_norm`` every
step; ``meta/trainable_params``, ``meta/max_steps``, ``meta/steps_per_epoch`` at step 0 and
``meta/wall_seconds`` after every chunk. Every scalar goes to TensorBoard and metrics.jsonl
through the one ``MetricsSink``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from part3_pretrain import pretrain as part3
from part3_pretrain.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    model_checkpoint,
    remove_stale_temps,
    save_atomic,
    write_text_atomic,
)
from part3_pretrain.cli import ConfigError
from part3_pretrain.data import mean_loss
from part3_pretrain.model import GPT
from part3_pretrain.sink import MetricsSink
from part3_pretrain.tokenizer import RetailTokenizer
from part3_pretrain.trainer import Trainer, TrainerConfig, TrainingDiverged

from . import evaluate as ev
from .examples import SFTBatches, audit_labels, build_examples, fixed_batches
from .grid import BASES, Knobs
from .job_metrics import JOB_KEYS
from .lora import apply_lora, count_parameters, merged_state_dict, save_adapter
from .prompts import get_scheme
from .report import KNOB_COLUMNS, missing_keys
from .sft import SFTConfig, load_baseline
from .splits import DatasetSplits, check_disjoint, load_splits

# settings that decide the data every run of an experiment sees
DATA_FIELDS = ("dataset_path", "n_pairs", "n_high_quality", "n_val", "n_test", "data_seed")


@dataclass(frozen=True)
class RunSettings:
    """What the runs of an experiment share (the knobs are what differs). Defaults: see experiment.py."""

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
    eval_batch_size: int = 64
    n_boot: int = 1000
    n_examples: int = 8
    dataset_path: str = "data/sft_dataset.json"
    n_pairs: int = 5000
    n_high_quality: int = 500
    n_val: int = 100
    n_test: int = 250
    data_seed: int = 0
    device: str = "auto"
    dtype: str = "auto"

    @classmethod
    def from_object(cls, obj) -> RunSettings:
        """The settings out of any object with attributes of the same names (the CLI config)."""
        return cls(**{f.name: getattr(obj, f.name) for f in fields(cls)})

    def data_key(self) -> tuple:
        return tuple(getattr(self, n) for n in DATA_FIELDS)


@dataclass(frozen=True)
class RunConfig:
    """A run, resolved: its name, knobs, shared settings, base checkpoint and (clones) parent."""

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
            settings=RunSettings(**d["settings"]),
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


def save_run_config(run: RunConfig, run_dir: Path, index: int = 0) -> None:
    """config.json: the resolved run plus its registration index (the order of the runs)."""
    write_text_atomic(json.dumps({**run.to_dict(), "index": index}, indent=2) + "\n", run_dir / "config.json")


RUN_CONFIG_KEYS = ("name", "settings", "base_path", *(f"knobs.{k}" for k in KNOB_COLUMNS))
# what train_chunk writes atomically into a run's folder (state.pt is the trainer's: it clears its own)
RUN_FILES = ("adapter.pt", "model.pt", "evaluation.json", "status.json", "DONE")


def load_run_config(run_dir: Path) -> RunConfig:
    try:
        doc = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir / 'config.json'}: unreadable run config ({e})") from None
    if isinstance(doc, dict) and "gen_subset" in (doc.get("settings") or {}):
        raise CheckpointError(
            f"{run_dir}: this run comes from an older version that generated its interval "
            "replies on the test set (setting gen_subset); start a new experiment (--name)"
        )
    missing = missing_keys(doc, RUN_CONFIG_KEYS)
    if missing:
        raise CheckpointError(
            f"{run_dir / 'config.json'}: run config lacks {', '.join(missing)}; restore the file "
            f"(it is written when the run is registered) or move {run_dir} out of the experiment"
        )
    try:
        return RunConfig.from_dict(doc)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{run_dir / 'config.json'}: unreadable run config ({e})") from None


def read_status(run_dir: Path) -> dict:
    path = run_dir / "status.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_done(run_dir: Path) -> bool:
    return (run_dir / "DONE").is_file()


def is_stopped(run_dir: Path) -> bool:
    return (run_dir / "STOP").is_file()


# ---------------------------------------------------------------------------------------------
# base models, data, examples: loaded once per process and shared by the runs


def ensure_base(name: str, path: str | Path, device: str = "auto", dtype: str = "auto", progress: bool = True) -> dict:
    """The base checkpoint at ``path``; the default path of a known base is pretrained (part 3) when
    missing. Returns ``{"path", "pretrained_now", "pretrain_seconds"}`` (seconds from part 3's summary)."""
    path = Path(path)
    pretrained_now = False
    if not path.is_file():
        spec = BASES.get(name)
        if spec is None or Path(spec.path) != path:
            raise CheckpointError(f"{path}: no such checkpoint file (base {name!r})")
        print(f"base {name!r}: no checkpoint at {path}; pretraining it with part 3 ({spec.description})", flush=True)
        part3.run(
            part3.PretrainConfig(
                out_dir=str(path.parent), device=device, dtype=dtype, progress=progress, **spec.pretrain
            )
        )
        pretrained_now = True
    summary = path.parent / "summary.json"
    seconds = None
    if summary.is_file():
        try:
            seconds = json.loads(summary.read_text(encoding="utf-8"))["seconds"]["total"]
        except (ValueError, KeyError, TypeError):
            seconds = None
    return {"path": str(path), "pretrained_now": pretrained_now, "pretrain_seconds": seconds}


@dataclass
class ExperimentData:
    """The experiment's data: part 4's splits (train = the high-quality pairs) and, for the
    ``data=all`` ablation, all generated pairs, checked disjoint from val/test in the same way."""

    splits: DatasetSplits
    dataset_path: Path
    _all: list[dict] | None = None

    @classmethod
    def load(cls, settings: RunSettings) -> ExperimentData:
        cfg = SFTConfig(
            dataset_path=settings.dataset_path,
            n_pairs=settings.n_pairs,
            n_high_quality=settings.n_high_quality,
            n_val=settings.n_val,
            n_test=settings.n_test,
            data_seed=settings.data_seed,
            progress=False,
        )
        return cls(load_splits(cfg), Path(settings.dataset_path))

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
    """Per-process caches: base checkpoints, data per data settings, tokenised examples."""

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
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


def plan(run: RunConfig, ws: Workspace) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) of a run."""
    train = ws.examples(run)[0]
    if len(train) < run.settings.batch_size:
        raise ConfigError(
            f"run {run.name}: {len(train)} training examples are fewer than one batch "
            f"(--batch-size {run.settings.batch_size})"
        )
    spe = math.ceil(len(train) / run.settings.batch_size)
    return spe, spe * run.knobs.epochs


def chunk_boundaries(max_steps: int, chunks: int) -> list[int]:
    """Step at which chunk k (0-based) ends: the k-th N-th of the run's steps, the last at max_steps."""
    return [max(1, round(max_steps * (k + 1) / chunks)) for k in range(chunks)]


# ---------------------------------------------------------------------------------------------
# the model of a run


def _parent_model(parent_dir: Path, ws: Workspace) -> tuple[GPT, RunConfig]:
    """The parent's current weights (its latest checkpoint: final when it finished)."""
    parent = load_run_config(parent_dir)
    state_path = parent_dir / "state.pt"
    if not state_path.is_file():
        raise CheckpointError(f"run {parent.name} has no weights yet ({state_path} is missing): train it first")
    ckpt, _ = ws.base(parent.base_path)
    model, _ = build_model(ckpt, parent.base_path)
    if parent.knobs.adapter.method == "lora":
        apply_lora(model, parent.knobs.adapter.lora_config())
    model.load_state_dict(load_checkpoint(state_path)["model"], strict=True)
    return model, parent


def initial_model(run: RunConfig, exp_dir: Path, ws: Workspace) -> GPT:
    """The run's model before its first step: the base (a fresh copy), or for a clone the parent's
    weights, then LoRA adapters when the run uses them (seeded by the run's seed).

    A clone whose adapter has the parent's shape continues the parent's adapters (its state equals
    the parent's final state); otherwise it starts from the parent's merged weights (plus fresh
    adapters, which are zero at init), so its first forward pass equals the parent's last."""
    ckpt, _ = ws.base(run.base_path)
    model, _ = build_model(ckpt, run.base_path)
    adapter = run.knobs.adapter
    torch.manual_seed(run.knobs.seed)
    if run.parent is not None:
        parent_model, parent = _parent_model(exp_dir / run.parent, ws)
        if adapter.method == "lora" and parent.knobs.adapter == adapter:
            apply_lora(model, adapter.lora_config())
            model.load_state_dict(parent_model.state_dict(), strict=True)
            return model
        model.load_state_dict(merged_state_dict(parent_model), strict=True)
    if adapter.method == "lora":
        apply_lora(model, adapter.lora_config())
    return model


# ---------------------------------------------------------------------------------------------
# evaluation


def greedy_replies(model: GPT, tok: RetailTokenizer, prompt: str, rows: list[dict], settings: RunSettings) -> dict:
    """Greedy replies to ``rows`` in float32 (as part4_sft.sft generates, even inside the trainer's
    autocast): ``evaluate.generate_replies``'s dict (texts, stopped_by_eos, lengths)."""
    es = ev.EvalSettings(
        max_new_tokens=settings.max_new_tokens,
        seed=settings.data_seed,
        batch_size=settings.eval_batch_size,
        n_boot=settings.n_boot,
    )
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type=device_type, enabled=False):
        return ev.generate_replies(model, tok, get_scheme(prompt), [r["context"] for r in rows], es, temperature=0.0)


def score_replies(rows: list[dict], replies: dict, settings: RunSettings) -> dict:
    """``evaluate.score``'s report of ``replies`` to ``rows``: job metrics (with CIs), text metrics
    against every reference of a row, stop statistics."""
    report, _ = ev.score(rows, replies, settings.n_boot, settings.data_seed)
    return report


def flat_scalars(report: dict, with_ci: bool = True) -> dict[str, float]:
    """The scalars of one report that go to TensorBoard: every ``evaluate.scalars`` value the data
    supports (absent job metrics are left out, never 0), mean_length, and with ``with_ci`` the
    95% CI bounds of the job metrics, ROUGE-L and BLEU (``<key>_ci_low`` / ``<key>_ci_high``)."""
    out = {k: float(v) for k, v in ev.scalars(report).items() if v is not None}
    out["mean_length"] = float(report["mean_length"])
    if with_ci:
        cis = {k: (report["job"][k] or {}).get("ci") for k in JOB_KEYS}
        cis.update(rouge_l=report["rouge_l_ci"], bleu=report["bleu_ci"])
        for k, ci in cis.items():
            if ci is not None:
                out[f"{k}_ci_low"], out[f"{k}_ci_high"] = float(ci[0]), float(ci[1])
    return out


def _head(replies: dict, n: int) -> dict:
    return {k: v[:n] for k, v in replies.items()}


class IntervalEval:
    """The trainer's evaluate callback: validation loss/accuracy (returned, logged as ``val/``) and
    greedy generation metrics on a fixed subset of the VALIDATION rows (logged here as
    ``val_gen/``). The test set is never touched here. At the last step the subset's values come
    from the final whole-validation replies instead (same model, same decoding), so the subset is
    not generated twice."""

    def __init__(
        self,
        run: RunConfig,
        tok: RetailTokenizer,
        val_batches: list,
        subset: list[dict],
        sink: MetricsSink,
        max_steps: int,
    ) -> None:
        self.run, self.tok, self.val_batches, self.subset, self.sink = run, tok, val_batches, subset, sink
        self.max_steps = max_steps
        self.trainer: Trainer | None = None
        self.last: dict = {}

    def __call__(self, model: GPT) -> dict:
        result = mean_loss(model, self.val_batches)
        step = self.trainer.step if self.trainer is not None else 0
        if step < self.max_steps:
            replies = greedy_replies(model, self.tok, self.run.knobs.prompt, self.subset, self.run.settings)
            self.log_generation(score_replies(self.subset, replies, self.run.settings), step)
        return result

    def log_generation(self, report: dict, step: int) -> None:
        self.last = {f"val_gen/{k}": v for k, v in flat_scalars(report, with_ci=False).items()}
        self.sink.log(self.last, step)


@torch.no_grad()
def final_evaluation(
    model: GPT, tok: RetailTokenizer, run: RunConfig, val_rows: list[dict], test_rows: list[dict]
) -> dict:
    """The end of a run, greedy: the WHOLE validation split (what selects runs; its first
    ``val_gen_rows`` rows also give the last ``val_gen/`` point), then the whole held-out test
    set, once (reported, never used to choose), with the teacher-forced loss of its references.
    Both reports carry bootstrap CIs as part4_sft.sft's."""
    s = run.settings
    model.eval()
    t0 = time.perf_counter()
    val_replies = greedy_replies(model, tok, run.knobs.prompt, val_rows, s)
    val_report = score_replies(val_rows, val_replies, s)
    n = min(s.val_gen_rows, len(val_rows))
    subset = score_replies(val_rows[:n], _head(val_replies, n), s)
    replies = greedy_replies(model, tok, run.knobs.prompt, test_rows, s)
    report, judged = ev.score(test_rows, replies, s.n_boot, s.data_seed)
    ref = ev.reference_loss(model, tok, get_scheme(run.knobs.prompt), test_rows)
    test_scalars = {
        **flat_scalars(report),
        "sentence_bleu": report["sentence_bleu"],
        "ref_loss": ref["loss"],
        "ref_token_acc": ref["token_accuracy"],
        "eval_seconds": time.perf_counter() - t0,
    }
    examples = [
        {
            "context": r["context"],
            "references": refs,
            "intent": r.get("intent"),
            "greedy": replies["texts"][i],
            "stopped_by": "eos" if replies["stopped_by_eos"][i] else "length",
            "rating": judged[i]["rating"],
            "failed_rules": judged[i]["rules"],
            "specifics": judged[i]["specifics"],
            "specifics_hit": judged[i]["specifics_hit"],
            "invented": judged[i]["invented"],
        }
        for i, (r, refs) in enumerate(
            zip(test_rows[: s.n_examples], ev.references(test_rows[: s.n_examples]), strict=False)
        )
    ]
    return {
        "selection": "runs are compared and the best is picked on validation only (final_val/); "
        "the test set is scored once per run, here, and never used to choose",
        "test_rows": len(test_rows),
        "val_rows": len(val_rows),
        "val_gen_rows": n,
        "test": {"greedy": report, "reference_loss": ref, "scalars": test_scalars},
        "validation": {"greedy": val_report, "scalars": flat_scalars(val_report)},
        "val_subset": subset,
        "examples": examples,
    }


# ---------------------------------------------------------------------------------------------
# training one chunk


@dataclass
class ChunkResult:
    name: str
    step: int
    max_steps: int
    done: bool
    seconds: float
    last: dict  # the last train/val/val_gen/final_val/final scalars of this chunk


def _trainer_config(run: RunConfig, max_steps: int, spe: int, until: int, progress: bool) -> TrainerConfig:
    s = run.settings
    eval_every = max(1, spe // s.evals_per_epoch) if s.evals_per_epoch > 0 else 0
    return TrainerConfig(
        max_steps=max_steps,
        lr=run.knobs.lr,
        optimizer=s.optimizer,
        weight_decay=s.weight_decay,
        beta1=0.9,
        beta2=0.999,
        warmup_steps=round(s.warmup_ratio * max_steps),
        schedule=s.schedule,
        min_lr_ratio=s.min_lr_ratio,
        grad_clip=s.grad_clip,
        grad_accum=1,
        eval_every=eval_every,
        checkpoint_every=eval_every,
        stop_after=until if until < max_steps else 0,
        device=s.device,
        dtype=s.dtype,
        progress=progress,
        desc=run.name,
    )


def _start_fresh(run_dir: Path) -> None:
    """A run without a checkpoint starts from nothing: old event files and metrics go."""
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    for name in ("metrics.jsonl", "status.json", "evaluation.json"):
        (run_dir / name).unlink(missing_ok=True)


def train_chunk(run: RunConfig, exp_dir: Path, until: int, ws: Workspace) -> ChunkResult:
    """Train ``run`` from its checkpoint (or from its initial weights) up to step ``until``; at the
    last step, evaluate on the whole validation split and the whole test set, save
    adapters/weights and mark the run done."""
    t0 = time.perf_counter()
    run_dir = exp_dir / run.name
    for name in RUN_FILES:  # temp files of a write that a kill -9 interrupted
        remove_stale_temps(run_dir / name)
    state_path = run_dir / "state.pt"
    state = load_checkpoint(state_path) if state_path.is_file() else None
    if state is None:
        _start_fresh(run_dir)
    prior_wall = float(read_status(run_dir).get("wall_seconds", 0.0))
    sink = MetricsSink(
        run_dir / "metrics.jsonl", run_dir / "tb", resume_step=None if state is None else int(state["trainer"]["step"])
    )
    try:
        trainer, evaluator, max_steps = _open_trainer(run, exp_dir, until, ws, sink, state)
        try:
            history = trainer.fit()
        except KeyboardInterrupt:  # the trainer has checkpointed this step: keep it and the wall time
            _write_status(run_dir, trainer.step, max_steps, prior_wall + time.perf_counter() - t0, done=False)
            raise
        except TrainingDiverged as e:
            raise TrainingDiverged(
                f"run {run.name}: {e} (the lr of this run is {run.knobs.lr:g}); leave the run "
                f"out with --stop {run.name}"
            ) from None
        if state is not None and int(state["trainer"]["step"]) >= max_steps:
            # killed between the last checkpoint and the end of the run: fit() has nothing to do,
            # and the last validation may never have reached the event file
            trainer.run_evaluation()
        last = {k: v for r in history for k, v in r.items() if k != "step"}
        done = trainer.step >= max_steps
        if done:
            _, tok = ws.base(run.base_path)
            splits = ws.data(run.settings).splits
            last.update(
                _finish(run, run_dir, trainer.model, tok, splits.val, splits.test, trainer.step, sink, evaluator)
            )
        last.update(evaluator.last)
        wall = prior_wall + time.perf_counter() - t0
        sink.log({"meta/wall_seconds": wall}, trainer.step)
        _write_status(run_dir, trainer.step, max_steps, wall, done=done)
        if done:
            write_text_atomic("done\n", run_dir / "DONE")
        return ChunkResult(run.name, trainer.step, max_steps, done, time.perf_counter() - t0, last)
    finally:
        sink.close()


def _open_trainer(
    run: RunConfig, exp_dir: Path, until: int, ws: Workspace, sink: MetricsSink, state: dict | None
) -> tuple[Trainer, IntervalEval, int]:
    """The run's trainer, at its checkpoint (``state``) or, for a fresh run, at step 0 with the
    run's facts and a first evaluation logged."""
    spe, max_steps = plan(run, ws)
    train, val_batches, _, counts = ws.examples(run)
    val_rows = ws.data(run.settings).splits.val
    _, tok = ws.base(run.base_path)
    model = initial_model(run, exp_dir, ws) if state is None else _resumable_model(run, ws)
    evaluator = IntervalEval(run, tok, val_batches, val_rows[: run.settings.val_gen_rows], sink, max_steps)
    meta = {"model_config": model.config.to_dict(), "tokenizer": tok.to_str(), "run_config": run.to_dict()}
    source = SFTBatches(
        train, run.settings.batch_size, tok.pad_id, seed=run.knobs.seed, max_len=model.config.block_size
    )
    trainer = Trainer(
        model,
        source,
        _trainer_config(run, max_steps, spe, until, ws.progress),
        sink=sink,
        evaluate=evaluator,
        checkpoint_path=exp_dir / run.name / "state.pt",
        checkpoint_meta=meta,
    )
    evaluator.trainer = trainer
    if state is not None:
        trainer.load_state_dict(state)
        return trainer, evaluator, max_steps
    trainable, total = count_parameters(model)
    sink.log(
        {
            "meta/trainable_params": trainable,
            "meta/total_params": total,
            "meta/max_steps": max_steps,
            "meta/steps_per_epoch": spe,
            "meta/train_examples": counts["examples"],
        },
        0,
    )
    if run.settings.evals_per_epoch > 0:
        trainer.run_evaluation()  # step 0: the starting point of every curve
    return trainer, evaluator, max_steps


def _resumable_model(run: RunConfig, ws: Workspace) -> GPT:
    """The architecture a checkpoint of ``run`` fits (weights are loaded by the trainer)."""
    ckpt, _ = ws.base(run.base_path)
    model, _ = build_model(ckpt, run.base_path)
    if run.knobs.adapter.method == "lora":
        apply_lora(model, run.knobs.adapter.lora_config())
    return model


def _finish(
    run: RunConfig,
    run_dir: Path,
    model: GPT,
    tok: RetailTokenizer,
    val_rows: list[dict],
    test_rows: list[dict],
    step: int,
    sink: MetricsSink,
    evaluator: IntervalEval,
) -> dict:
    """Final evaluation (logged as final_val/, final/ and the subset's last val_gen/ point),
    weights for clones and users, evaluation.json."""
    result = final_evaluation(model, tok, run, val_rows, test_rows)
    evaluator.log_generation(result["val_subset"], step)
    final = {
        **{f"final_val/{k}": v for k, v in result["validation"]["scalars"].items()},
        **{f"final/{k}": v for k, v in result["test"]["scalars"].items()},
    }
    sink.log(final, step)
    if run.knobs.adapter.method == "lora":
        save_adapter(model, run.knobs.adapter.lora_config(), run_dir / "adapter.pt")
    else:
        save_atomic(model_checkpoint(model, tok, run_config=run.to_dict()), run_dir / "model.pt")
    doc = {"run": run.to_dict(), **{k: v for k, v in result.items() if k != "val_subset"}}
    write_text_atomic(json.dumps(doc, indent=2) + "\n", run_dir / "evaluation.json")
    return final


def _write_status(run_dir: Path, step: int, max_steps: int, wall: float, done: bool) -> None:
    status = {
        "state": "done" if done else "partial",
        "step": step,
        "max_steps": max_steps,
        "wall_seconds": round(wall, 2),
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_text_atomic(json.dumps(status, indent=2) + "\n", run_dir / "status.json")
