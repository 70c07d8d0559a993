"""``python -m part4_sft.experiment``: fine-tune a grid of configs and compare them in TensorBoard.

    python -m part4_sft.experiment                        # the default 8-run grid
    tensorboard --logdir checkpoints/experiments/grid     # curves of all runs side by side
    python -m part4_sft.experiment report checkpoints/experiments/grid [--sort-by rouge_l]

The default grid is 2 base models (part 3's ``large`` 4-layer model and a ``small`` 2-layer one,
pretrained on demand if missing and reused afterwards) x 2 prompt schemes (``qa``,
``instruction``) x 2 LoRA configs (r=8 on c_attn, r=32 on c_attn and c_proj) = 8 runs. Other
grids: ``--grid FILE.json`` or the list options (``--lrs``, ``--epochs``, ``--adapters`` with
ranks/alphas/targets or ``full``, ``--data hq all``, ``--seeds K``); see ``grid.py``.

Every run is evaluated on part 4's splits, and model selection never touches the test set:
validation loss and token accuracy before training and after every epoch, with greedy replies to
a fixed subset of the VALIDATION rows (the first ``--val-gen-rows``, 48 of the 100) scored by the
job metrics (specifics recall, invented share, intent accuracy, rubric pass rate and mean) and
ROUGE-L / BLEU / EOS-stop rate (``val_gen/`` in TensorBoard). At the end, greedy replies to the
whole validation split (``final_val/``) and, once, to the whole held-out test set (``final/``,
unseen slot values, checked), both with bootstrap CIs in each run's evaluation.json. The best run
is marked by a validation metric (``--select-by``, default the validation rubric pass rate;
the validation loss when the data has no intents/slots); ``--sort-by`` only orders the rows.
An experiment is its directory: runs registered there (by a grid or by ``--clone``) are trained
until they are done or stopped. The results table (terminal, results.csv, results.md) is rebuilt
from the event files after every chunk; plots go to ``plots/``.

Why these defaults (measured on the two bases; the 8-run grid must finish in < 15 min on a 2-core
CPU once the bases exist, i.e. at most ~90 s per run including evaluation):
- LoRA trains 0.6-8.5% of the weights, starting from B = 0. At part 4's LR of 5e-5 it barely moves
  in a few hundred steps, so LoRA runs use LR 5e-3 (AdamW, 10% warmup, cosine to 10%). On the
  small base, 5 epochs of r=32 reach validation loss 1.76 at 2e-3, 1.34 at 5e-3 and 1.25 at 1e-2
  (from 6.19 before fine-tuning); r=8 gives 3.46 / 2.99 / 2.74: 5e-3 takes most of the gain
  without going to the edge.
- 5 epochs (as part 4) at batch 16 = 160 steps over the 500 pairs: the validation loss still
  falls in epoch 5, and a run takes 26-48 s on an idle 2-core CPU (bf16 autocast): the default
  grid took 303 s (large base ~46 s a run, small ~28 s; final greedy evaluation ~6 s of that).
- Full fine-tuning, when in a grid, defaults to 1e-3 (validation loss 0.91 vs 1.12 at 3e-4).
- Greedy replies get up to 64 new tokens as in part 4 (references average ~52 tokens), and are
  scored on all 100 validation rows and all 250 held-out test contexts at the end; the first 48
  validation rows are generated before training and after every epoch for the curves. With the
  whole-validation pass, one large-base run (qa, r8) took 44 s on the shared 2-core CPU, of which
  the final evaluation (100 validation + 250 test replies, scored) took 7 s.

Control: ``--chunks N`` trains every run on its k-th N-th of steps before any run starts the
(k+1)-th (the same batches in the same order as unchunked training). Rerunning skips finished
runs and resumes interrupted ones exactly. ``--stop RUN`` (also from another terminal while the
experiment runs) stops a run before its next chunk; ``--unstop RUN`` lets it continue.
``--clone RUN --set lr=1e-3 --set lora_r=16`` adds a run warm-started from RUN's weights.

Backends: ``--backend local`` (the default) trains the chunks one after another in this process;
``--backend ray`` runs the chunks of a round in parallel as Ray tasks (``ray_backend.py``: a
local cluster over this machine's cores, or ``--ray-address auto`` / ``HOST:PORT`` to join one
started with ``ray start``), with the same folder, the same control and the same numbers.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from part3_pretrain.checkpoint import CheckpointError
from part3_pretrain.cli import (
    ConfigError,
    OneLineParser,
    below,
    build_parser,
    check_config,
    config_from_namespace,
    fail,
    flat_dict,
    option,
    parse_config,
    part,
)
from part3_pretrain.configs import ExecConfig
from part3_pretrain.fileio import remove_stale_temps, write_text_atomic
from part3_pretrain.tokenizer import TokenizerError
from part3_pretrain.trainer import TrainingDiverged

from ..examples import LabelAuditError
from ..prompts import SCHEMES
from ..splits import LeakError
from ..user_data import DataError
from . import ray_backend, report, store
from .grid import (
    BASES,
    DATA_CHOICES,
    DEFAULT_ADAPTERS,
    DEFAULT_BASES,
    DEFAULT_EPOCHS,
    DEFAULT_FULL_LR,
    DEFAULT_LORA_LR,
    DEFAULT_PROMPTS,
    Adapter,
    GridError,
    GridSpec,
    expand_all,
    load_grid_file,
    valid_run_name,
)
from .runs import RunConfig, RunSettings
from .scheduler import RoundRunner, local_round, schedule
from .workspace import Workspace, prepare_bases

PROG = "python -m part4_sft.experiment"
DEFAULT_EXPERIMENTS_DIR = "checkpoints/experiments"
BACKENDS = ("local", "ray")


@dataclass
class ExperimentConfig:
    """``python -m part4_sft.experiment``: the default 8-run grid finishes in < 15 min on 2 CPU cores."""

    name: str = option("grid", "experiment name: its directory is <experiments-dir>/<name>")
    experiments_dir: str = option(DEFAULT_EXPERIMENTS_DIR, "where experiment directories go")
    # ---- the grid
    grid: str | None = option(
        None,
        "JSON grid file (an object or a list of objects with knob lists); knobs it leaves out take the values below",
        metavar="PATH",
    )
    bases: tuple[str, ...] = option(
        DEFAULT_BASES, "base models (part-3 checkpoints of two sizes)", choices=tuple(BASES)
    )
    prompts: tuple[str, ...] = option(DEFAULT_PROMPTS, "prompt schemes", choices=tuple(SCHEMES))
    adapters: tuple[str, ...] = option(
        DEFAULT_ADAPTERS,
        "adapters: 'full' or r<R>[a<ALPHA>]:<target>[+<target>] (alpha defaults to 2r)",
        metavar="SPEC",
    )
    lrs: tuple[float, ...] = option((), "learning rates (default: --lora-lr for LoRA runs, --full-lr for full ones)")
    epochs: tuple[int, ...] = option((DEFAULT_EPOCHS,), "epochs over the training pairs")
    data: tuple[str, ...] = option(
        ("hq",), "training data: hq = the 500 high-quality pairs, all = all 5,000", choices=DATA_CHOICES
    )
    seeds: int = option(1, "repeat every config with seeds 0..K-1 (the table shows mean and std)")
    lora_lr: float = option(DEFAULT_LORA_LR, "LR of LoRA runs when --lrs is not given")
    full_lr: float = option(DEFAULT_FULL_LR, "LR of full fine-tuning runs when --lrs is not given")
    large_base: str = option(BASES["large"].path, "checkpoint of base 'large' (the default is pretrained if missing)")
    small_base: str = option(BASES["small"].path, "checkpoint of base 'small' (the default is pretrained if missing)")
    # ---- what every run shares (part of each run's identity), and how this process executes them
    settings: RunSettings = part(RunSettings())
    execution: ExecConfig = part(ExecConfig(), omit=("compile",))
    # ---- scheduling and control
    chunks: int = option(
        1,
        "split every run into N chunks of steps; chunk k of every run trains before chunk "
        "k+1 of any (the same result as unchunked)",
    )
    backend: str = option(
        "local",
        "where the runs train: local = one after another in this process; ray = the chunks of a "
        "round in parallel as Ray tasks (--threads CPUs each, a GPU each with --device cuda)",
        choices=BACKENDS,
    )
    ray_address: str | None = option(
        None,
        "--backend ray: the cluster to join (auto: the one 'ray start' runs on this machine; "
        "HOST:PORT: its head); None: start a local cluster over this machine's cores",
        metavar="ADDRESS",
    )
    ray_retries: int = option(3, "--backend ray: retries of a chunk whose worker or node died (it resumes)")
    stop: str | None = option(
        None, "stop RUN before its next chunk (works on a running experiment) and exit", metavar="RUN"
    )
    unstop: str | None = option(None, "let a stopped RUN continue at the next (re)run and exit", metavar="RUN")
    clone: str | None = option(None, "add a run warm-started from RUN's weights with the --set changes", metavar="RUN")
    set: tuple[str, ...] = option((), "knob changes of --clone, e.g. --set lr=1e-3 --set lora_r=16", cli=False)
    select_by: str = option(
        report.DEFAULT_SELECT,
        "validation metric that marks the best run in the table "
        "(eval_loss when no run has it: data without intents/slots); never a test metric",
        choices=report.SELECT_CHOICES,
    )
    sort_by: str | None = option(
        None,
        "column the results table is sorted by, test ones included (it only orders "
        "the rows); None: the --select-by metric",
        choices=report.SORT_CHOICES,
    )
    plots: bool = option(True, "write comparison plots at the end")

    def base_paths(self) -> dict[str, str]:
        return {"large": self.large_base, "small": self.small_base}

    def grid_specs(self) -> list[GridSpec]:
        """The grid as specs: the list options, or the --grid file on top of them."""
        cli = GridSpec(
            base=tuple(self.bases),
            prompt=tuple(self.prompts),
            adapter=tuple(Adapter.parse(a) for a in self.adapters),
            lr=tuple(self.lrs),
            epochs=tuple(self.epochs),
            data=tuple(self.data),
            seed=tuple(range(self.seeds)),
        )
        if self.grid is None:
            return [cli]
        specs = load_grid_file(self.grid, cli)
        if self.seeds != 1 and any(s.seed != cli.seed for s in specs):
            raise GridError(f"--grid {self.grid} sets 'seed' and --seeds {self.seeds} is given: choose one")
        return specs

    def problems(self) -> list[str]:
        p = below(self, ("seeds", "chunks"), 1)
        p += [f"--lrs must all be > 0 (got {list(self.lrs)})"] if any(not lr > 0 for lr in self.lrs) else []
        p += [f"--epochs must all be >= 1 (got {list(self.epochs)})"] if any(e < 1 for e in self.epochs) else []
        p += below(self, ("lora_lr", "full_lr"), 0, strict=True)
        if not valid_run_name(self.name):
            p.append(f"--name {self.name!r} must be letters, digits and _.,+=- (not starting with a symbol)")
        p += self._control_problems() + self._backend_problems()
        if not (self.stop or self.unstop or self.clone):
            p += self._grid_problems()
        return p

    def _backend_problems(self) -> list[str]:
        if self.backend != "ray":
            return ["--ray-address needs --backend ray"] if self.ray_address else []
        missing = ray_backend.ray_missing()
        return below(self, ("ray_retries",), 0) + ([missing] if missing else [])

    def _control_problems(self) -> list[str]:
        p = []
        given = [f for f in ("stop", "unstop", "clone") if getattr(self, f)]
        if len(given) > 1:
            p.append("give only one of " + ", ".join(f"--{f}" for f in given))
        if self.set and not self.clone:
            p.append("--set needs --clone RUN")
        if self.clone and not self.set:
            p.append("--clone needs at least one --set key=value")
        for f in given:
            if not valid_run_name(getattr(self, f)):
                p.append(f"--{f} {getattr(self, f)!r} is not a run name")
        return p

    def _grid_problems(self) -> list[str]:
        try:
            runs = expand_all(self.grid_specs(), self.lora_lr, self.full_lr)
        except GridError as e:
            return [str(e)]
        p = []
        for name in sorted({k.base for k in runs}):
            path = self.base_paths()[name]
            if path != BASES[name].path and not Path(path).is_file():
                p.append(f"--{name}-base {path}: no such checkpoint file")
        return p


# ---------------------------------------------------------------------------------------------
# running the experiment


def experiment_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.experiments_dir) / cfg.name


def resolve_runs(cfg: ExperimentConfig) -> list[RunConfig]:
    """The grid's runs, resolved against the shared settings and base checkpoints."""
    knobs = expand_all(cfg.grid_specs(), cfg.lora_lr, cfg.full_lr)
    settings = cfg.settings
    paths = cfg.base_paths()
    return [RunConfig(k.name(), k, settings, paths[k.base]) for k in knobs]


def control(cfg: ExperimentConfig, exp_dir: Path) -> dict:
    """--stop / --unstop: write or remove the run's STOP marker (honoured before each chunk)."""
    name = cfg.stop or cfg.unstop
    d = store.existing_run(exp_dir, name, "--stop" if cfg.stop else "--unstop")
    if cfg.stop:
        if store.is_done(d):
            print(f"{name} has already finished; nothing to stop")
        else:
            store.mark_stopped(d)
            print(f"{name} stops before its next chunk (marker {d / 'STOP'}); continue it with --unstop {name}")
    else:
        store.clear_stopped(d)
        print(f"{name} will continue at the next run of the experiment ({PROG} --name {cfg.name})")
    return {"exp_dir": str(exp_dir), "run": name}


def _tensorboard_line(exp_dir: Path) -> str:
    return f"tensorboard --logdir {exp_dir}"


def _write_experiment_json(exp_dir: Path, cfg: ExperimentConfig, specs: list[GridSpec], bases: dict) -> None:
    doc = {
        "name": cfg.name,
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "chunks": cfg.chunks,
        "settings": cfg.settings.to_dict(),
        "execution": flat_dict(cfg.execution, omit=("compile",)),
        "grid": [{**asdict(s), "adapter": [a.spec() for a in s.adapter]} for s in specs],
        "bases": bases,
    }
    write_text_atomic(json.dumps(doc, indent=2) + "\n", exp_dir / "experiment.json")


def run(cfg: ExperimentConfig) -> dict:
    """Run (or continue) the experiment; returns ``{"exp_dir", "table", "plots", ...}``."""
    check_config(cfg)
    exp_dir = experiment_dir(cfg)
    if cfg.stop or cfg.unstop:
        return control(cfg, exp_dir)
    new_runs: list[RunConfig] = []
    if cfg.clone:
        added = store.register_clone(exp_dir, cfg.clone, cfg.set)
        holder = store.lock_holder(exp_dir)
        if holder is not None:
            print(f"the experiment is running in process {holder}: it trains {added.name} after its current chunk")
            return {"exp_dir": str(exp_dir), "added": added.name}
    else:
        new_runs = resolve_runs(cfg)
    with store.ExperimentLock(exp_dir):
        return _run_locked(cfg, exp_dir, new_runs)


@contextlib.contextmanager
def round_runner(cfg: ExperimentConfig, exp_dir: Path) -> Iterator[RoundRunner]:
    """How the chunks of a round train: here (``--backend local``), or as tasks on a Ray cluster
    joined or started for this experiment, after checking that every node sees ``exp_dir``."""
    if cfg.backend == "local":
        yield local_round
        return
    with ray_backend.RayCluster(cfg.ray_address, cfg.ray_retries) as rounds:
        ray_backend.check_shared_folder(exp_dir)
        yield rounds


# what the experiment itself writes into its directory (atomically)
EXPERIMENT_FILES = ("experiment.json", "results.csv", "results.md", "results_runs.csv", "report.html")


def _run_locked(cfg: ExperimentConfig, exp_dir: Path, new_runs: list[RunConfig]) -> dict:
    print(f"experiment {exp_dir}: follow it with\n  {_tensorboard_line(exp_dir)}", flush=True)
    ws = Workspace(cfg.execution)
    if ws.execution.threads:
        torch.set_num_threads(ws.execution.threads)
    for name in EXPERIMENT_FILES:  # temp files of a write a kill -9 interrupted; we hold the lock
        remove_stale_temps(exp_dir / name)
    t0 = time.perf_counter()
    base_seconds = 0.0  # pretraining base models that were missing
    if new_runs:
        store.check_registration(exp_dir, new_runs)
        ws.data(new_runs[0].settings)  # every data problem surfaces before any model work
        t_bases = time.perf_counter()
        bases = prepare_bases(new_runs, ws)
        base_seconds = time.perf_counter() - t_bases
        added = store.register(exp_dir, new_runs)
        _write_experiment_json(exp_dir, cfg, cfg.grid_specs(), bases)
        skipped = [r.name for r in new_runs if store.is_done(exp_dir / r.name)]
        print(
            f"{len(new_runs)} runs in the grid ({len(added)} new, {len(skipped)} already finished and skipped)",
            flush=True,
        )
    warn_left_out(exp_dir)
    with round_runner(cfg, exp_dir) as runner:
        schedule(exp_dir, cfg.chunks, ws, cfg.sort_by, cfg.select_by, runner)
    table, plots = report.write_report(exp_dir, cfg.sort_by, plots=cfg.plots, select_by=cfg.select_by)
    print("\n" + table.terminal)
    seconds = time.perf_counter() - t0
    of_which = f", of which {base_seconds:.0f} s preparing the base models" if base_seconds >= 1 else ""
    print(f"\nexperiment finished in {seconds:.0f} s{of_which}; wrote:")
    for p in [exp_dir / "results.csv", exp_dir / "results.md", exp_dir / "report.html", *plots]:
        print(f"  {p}")
    print(f"compare the runs' curves with\n  {_tensorboard_line(exp_dir)}")
    return {
        "exp_dir": str(exp_dir),
        "table": table,
        "plots": [str(p) for p in plots],
        "seconds": seconds,
        "base_seconds": base_seconds,
    }


# ---------------------------------------------------------------------------------------------
# command lines


def _add_set(parser) -> None:
    parser.add_argument(
        "--set",
        dest="set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="knob changes of --clone: prompt, adapter, method, lora_r, lora_alpha, lora_targets, "
        "lr, epochs, data, seed (repeatable)",
    )


def parse_args(argv: Sequence[str] | None) -> ExperimentConfig:
    """Flags from ExperimentConfig; ``--set`` may be repeated (and takes several items)."""
    return parse_config(ExperimentConfig, argv, PROG, __doc__.splitlines()[0], extra_args=_add_set)


@dataclass
class ReportConfig:
    """``python -m part4_sft.experiment report DIR``: the table and plots from a directory alone."""

    dir: str = option("", "experiment directory", cli=False)
    select_by: str = option(
        report.DEFAULT_SELECT,
        "validation metric that marks the best run (eval_loss when no run has it); never a test metric",
        choices=report.SELECT_CHOICES,
    )
    sort_by: str | None = option(
        None,
        "column the table is sorted by, test ones included (it only orders the rows); None: the --select-by metric",
        choices=report.SORT_CHOICES,
    )
    plots: bool = option(True, "write the comparison plots too")

    def problems(self) -> list[str]:
        return [] if Path(self.dir).is_dir() else [f"DIR {self.dir}: no such experiment directory"]


def report_main(argv: Sequence[str]) -> int:
    prog = f"{PROG} report"
    parser: OneLineParser = build_parser(ReportConfig, prog, ReportConfig.__doc__)
    parser.add_argument("dir", metavar="DIR", help="experiment directory (e.g. checkpoints/experiments/grid)")
    cfg = config_from_namespace(ReportConfig, parser.parse_args(argv))
    try:
        check_config(cfg)
        table, plots = report.write_report(cfg.dir, cfg.sort_by, plots=cfg.plots, select_by=cfg.select_by)
    except (ConfigError, report.ReportError) as e:
        return fail(prog, str(e))
    print(table.terminal)
    print("wrote:")
    for p in [Path(cfg.dir) / "results.csv", Path(cfg.dir) / "results.md", Path(cfg.dir) / "report.html", *plots]:
        print(f"  {p}")
    warn_left_out(Path(cfg.dir), prog)
    return 0


def warn_left_out(exp_dir: Path, prog: str = PROG) -> None:
    """One line on stderr per run folder that lost its config.json (the table leaves it out)."""
    for d in report.orphan_run_dirs(exp_dir):
        print(f"{prog}: warning: {report.orphan_warning(d)}", file=sys.stderr, flush=True)


USER_ERRORS = (
    ConfigError,
    CheckpointError,
    TokenizerError,
    DataError,
    LeakError,
    LabelAuditError,
    GridError,
    report.ReportError,
    TrainingDiverged,
    ray_backend.ClusterError,
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    cfg = parse_args(argv)
    try:
        run(cfg)
    except USER_ERRORS as e:
        return fail(PROG, str(e))
    except KeyboardInterrupt:
        print("\ninterrupted: every run keeps its last checkpoint; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
