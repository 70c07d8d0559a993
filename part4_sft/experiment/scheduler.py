"""Training the runs of an experiment: chunk by chunk, stopped, resumed, clones joining in.

``schedule`` trains every registered run that is neither done nor stopped: chunk k of every run
before chunk k+1 of any, re-reading the directory each round so clones added meanwhile join in,
and checking the STOP marker before each chunk (``--stop`` works on a running experiment).

``train_chunk(run, until)`` builds the run's model, loads ``state.pt`` if there is one and trains
with ``TrainerConfig.stop_after=until``, then checkpoints. The trainer restores weights,
optimizer, data position and RNG exactly, so training in N chunks gives the same batches in the
same order, the same weights and the same logged losses as one uninterrupted run (tested), and an
interrupted run (Ctrl-C, a crash) continues exactly from its last checkpoint. At the last step
the run is evaluated (``evaluation.finish_run``) and marked done.

The trainer logs ``train/loss``, ``train/token_acc``, ``train/lr`` and ``train/grad_norm`` every
step; a fresh run logs ``meta/trainable_params``, ``meta/max_steps``, ``meta/steps_per_epoch`` at
step 0, and every chunk ``meta/wall_seconds``.

Where the chunks execute is the round runner's business (``RoundRunner``): ``local_round``
trains them one after another in this process (the default); ``ray_backend.RayRounds`` runs the
chunks of a round as Ray tasks in parallel. Either way this module decides which chunks a round
has, and the driver prints each chunk's line and rewrites the tables as the chunks finish.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from part3_pretrain.checkpoint import load_checkpoint
from part3_pretrain.cli import ConfigError
from part3_pretrain.configs import ExecConfig
from part3_pretrain.fileio import remove_stale_temps
from part3_pretrain.sink import MetricsSink
from part3_pretrain.trainer import Trainer, TrainerConfig, TrainingDiverged

from .. import evaluate as ev
from ..examples import SFTBatches, mean_step_tokens
from ..lora import count_parameters
from . import evaluation, report
from .evaluation import IntervalEval
from .run_model import build_run_model
from .runs import RunConfig
from .store import is_done, is_stopped, mark_done, read_status, registered_runs, write_status
from .workspace import Workspace

# what train_chunk writes atomically into a run's folder (state.pt is the trainer's: it clears its own)
RUN_FILES = ("adapter.pt", "model.pt", "evaluation.json", "generations.jsonl", "status.json", "DONE")


def plan(run: RunConfig, ws: Workspace) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) of a run."""
    train = ws.examples(run)[0]
    if len(train) < run.settings.optim.batch_size:
        raise ConfigError(
            f"run {run.name}: {len(train)} training examples are fewer than one batch "
            f"(--batch-size {run.settings.optim.batch_size})"
        )
    spe = math.ceil(len(train) / run.settings.optim.batch_size)
    return spe, spe * run.knobs.epochs


def chunk_boundaries(max_steps: int, chunks: int) -> list[int]:
    """Step at which chunk k (0-based) ends: the k-th N-th of the run's steps, the last at max_steps."""
    return [max(1, round(max_steps * (k + 1) / chunks)) for k in range(chunks)]


# ---------------------------------------------------------------------------------------------
# training one chunk of one run


@dataclass
class ChunkResult:
    name: str
    step: int
    max_steps: int
    done: bool
    seconds: float
    last: dict  # the last train/val/val_gen/final_val/final scalars of this chunk
    where: str = ""  # the Ray node that trained the chunk (empty: this process)


def _trainer_config(
    run: RunConfig, max_steps: int, spe: int, until: int, ex: ExecConfig, step_tokens: int
) -> TrainerConfig:
    s = run.settings
    eval_every = max(1, spe // s.evals_per_epoch) if s.evals_per_epoch > 0 else 0
    optim = {**s.optim.trainer_fields(), "lr": run.knobs.lr, "warmup_steps": round(s.warmup_ratio * max_steps)}
    return TrainerConfig(
        max_steps=max_steps,
        **optim,
        eval_every=eval_every,
        checkpoint_every=eval_every,
        stop_after=until if until < max_steps else 0,
        **ex.trainer_fields(),
        step_tokens=step_tokens,
        desc=run.name,
    )


def _start_fresh(run_dir: Path) -> None:
    """A run without a checkpoint starts from nothing: old event files and metrics go."""
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    for name in ("metrics.jsonl", "status.json", "evaluation.json"):
        (run_dir / name).unlink(missing_ok=True)


def _open_state(run_dir: Path) -> dict | None:
    """The run's checkpoint (after clearing temp files a kill -9 left), or None: start fresh."""
    for name in RUN_FILES:  # temp files of a write that a kill -9 interrupted
        remove_stale_temps(run_dir / name)
    state_path = run_dir / "state.pt"
    state = load_checkpoint(state_path) if state_path.is_file() else None
    if state is None:
        _start_fresh(run_dir)
    return state


def train_chunk(run: RunConfig, exp_dir: Path, until: int, ws: Workspace) -> ChunkResult:
    """Train ``run`` from its checkpoint (or from its initial weights) up to step ``until``; at the
    last step, evaluate on the whole validation split and the whole test set, save
    adapters/weights and mark the run done."""
    t0 = time.perf_counter()
    run_dir = exp_dir / run.name
    state = _open_state(run_dir)
    prior_wall = float(read_status(run_dir).get("wall_seconds", 0.0))
    sink = MetricsSink(
        run_dir / "metrics.jsonl", run_dir / "tb", resume_step=None if state is None else int(state["trainer"]["step"])
    )
    try:
        trainer, evaluator, max_steps = _open_trainer(run, exp_dir, until, ws, sink, state)
        history = _fit(trainer, run, run_dir, max_steps, prior_wall, t0)
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
                evaluation.finish_run(
                    run, run_dir, trainer.model, tok, splits.val, splits.test, trainer.step, sink, evaluator
                )
            )
        last.update(evaluator.last)
        wall = prior_wall + time.perf_counter() - t0
        sink.log({"meta/wall_seconds": wall}, trainer.step)
        write_status(run_dir, trainer.step, max_steps, wall, done=done)
        if done:
            mark_done(run_dir)
        return ChunkResult(run.name, trainer.step, max_steps, done, time.perf_counter() - t0, last)
    finally:
        sink.close()


def _fit(trainer: Trainer, run: RunConfig, run_dir: Path, max_steps: int, prior_wall: float, t0: float) -> list[dict]:
    """``trainer.fit()``; on Ctrl-C the status keeps the checkpointed step and the wall time, and
    a diverging run's error names the run, its lr and how to leave it out."""
    try:
        return trainer.fit()
    except KeyboardInterrupt:  # the trainer has checkpointed this step: keep it and the wall time
        write_status(run_dir, trainer.step, max_steps, prior_wall + time.perf_counter() - t0, done=False)
        raise
    except TrainingDiverged as e:
        raise TrainingDiverged(
            f"run {run.name}: {e} (the lr of this run is {run.knobs.lr:g}); leave the run out with --stop {run.name}"
        ) from None


def _open_trainer(
    run: RunConfig, exp_dir: Path, until: int, ws: Workspace, sink: MetricsSink, state: dict | None
) -> tuple[Trainer, IntervalEval, int]:
    """The run's trainer, at its checkpoint (``state``) or, for a fresh run, at step 0 with the
    run's facts and a first evaluation logged."""
    spe, max_steps = plan(run, ws)
    train, val_batches, _, counts = ws.examples(run)
    val_rows = ws.data(run.settings).splits.val
    _, tok = ws.base(run.base_path)
    model = build_run_model(run, exp_dir, ws, resume=state is not None)
    subset = val_rows[: run.settings.val_gen_rows]
    names = ev.training_reply_words(ws.data(run.settings).splits.train)  # the name grounding's own words
    evaluator = IntervalEval(run, tok, val_batches, subset, sink, max_steps, ws.execution.eval_batch_size, names)
    meta = {"model_config": model.config.to_dict(), "tokenizer": tok.to_str(), "run_config": run.to_dict()}
    meta["reply_words"] = names.to_dict()
    source = SFTBatches(
        train, run.settings.optim.batch_size, tok.pad_id, seed=run.knobs.seed, max_len=model.config.block_size
    )
    trainer = Trainer(
        model,
        source,
        _trainer_config(
            run, max_steps, spe, until, ws.execution, mean_step_tokens(train, run.settings.optim.batch_size)
        ),
        sink=sink,
        evaluate=evaluator,
        checkpoint_path=exp_dir / run.name / "state.pt",
        checkpoint_meta=meta,
    )
    evaluator.trainer = trainer
    if state is not None:
        trainer.load_state_dict(state)
    else:
        _log_start(trainer, model, sink, run, spe, max_steps, counts["examples"])
    return trainer, evaluator, max_steps


def _log_start(
    trainer: Trainer, model, sink: MetricsSink, run: RunConfig, spe: int, max_steps: int, examples: int
) -> None:
    """A fresh run's facts at step 0, and its first evaluation (the starting point of every curve)."""
    trainable, total = count_parameters(model)
    sink.log(
        {
            "meta/trainable_params": trainable,
            "meta/total_params": total,
            "meta/max_steps": max_steps,
            "meta/steps_per_epoch": spe,
            "meta/train_examples": examples,
        },
        0,
    )
    if run.settings.evals_per_epoch > 0:
        trainer.run_evaluation()


# ---------------------------------------------------------------------------------------------
# every run of the experiment


def _chunk_line(res: ChunkResult, chunk: int, chunks: int) -> str:
    last = res.last
    parts = [f"step {res.step}/{res.max_steps}"]
    for key, label in (
        ("train/loss", "train loss"),
        ("val/loss", "eval loss"),
        ("val_gen/rubric_pass", "rubric pass@val subset"),
        ("val_gen/rouge_l", "ROUGE-L@val subset"),
        ("final_val/rubric_pass", "rubric pass@val"),
        ("final/rubric_pass", "rubric pass@test"),
        ("final/specifics_recall", "specifics@test"),
        ("final/rouge_l", "ROUGE-L@test"),
    ):
        if key in last:
            parts.append(f"{label} {last[key]:.3f}")
    where = f" on {res.where}" if res.where else ""
    return f"[chunk {chunk + 1}/{chunks}] {res.name}: " + ", ".join(parts) + f" ({res.seconds:.1f} s{where})"


# A round runner trains the (run, until) chunks it is given and yields each chunk's result as it
# finishes; the chunks are produced lazily, so a runner that takes them one at a time checks
# each run's STOP marker right before its chunk.
RoundRunner = Callable[[Iterable[tuple[RunConfig, int]], Path, Workspace], Iterator[ChunkResult]]


def local_round(jobs: Iterable[tuple[RunConfig, int]], exp_dir: Path, ws: Workspace) -> Iterator[ChunkResult]:
    """The local backend: the chunks one after another, in this process."""
    for run, until in jobs:
        yield train_chunk(run, exp_dir, until, ws)


def pending_chunks(
    exp_dir: Path, chunk: int, chunks: int, ws: Workspace, announced: set[str]
) -> Iterator[tuple[RunConfig, int]]:
    """(run, step its chunk ``chunk`` ends at) of every registered run that is neither done nor
    stopped nor already past that step. ``announced``: the stopped runs already reported."""
    for run in [r for r in registered_runs(exp_dir) if not is_done(exp_dir / r.name)]:
        run_dir = exp_dir / run.name
        if is_stopped(run_dir):  # checked before every chunk: --stop works on a running experiment
            if run.name not in announced:
                print(f"{run.name}: stopped (continue it with --unstop {run.name})", flush=True)
                announced.add(run.name)
            continue
        _, max_steps = plan(run, ws)
        until = chunk_boundaries(max_steps, chunks)[chunk]
        if until < max_steps and read_status(run_dir).get("step", 0) >= until:
            continue  # resumed past this boundary already
        yield run, until


def _train_round(
    exp_dir: Path,
    chunk: int,
    chunks: int,
    ws: Workspace,
    announced: set[str],
    table: tuple[str | None, str],
    runner: RoundRunner,
) -> bool:
    """Chunk ``chunk`` of every pending run that is not stopped, the tables (``table``: sort_by,
    select_by) rewritten after each; True when any run trained."""
    progressed = False
    for res in runner(pending_chunks(exp_dir, chunk, chunks, ws, announced), exp_dir, ws):
        progressed = True
        print(_chunk_line(res, chunk, chunks), flush=True)
        report.write_tables(exp_dir, *table)
    return progressed


def schedule(
    exp_dir: Path,
    chunks: int,
    ws: Workspace,
    sort_by: str | None,
    select_by: str = report.DEFAULT_SELECT,
    runner: RoundRunner = local_round,
) -> None:
    """Train every registered run that is neither done nor stopped, chunk k of every run before
    chunk k+1 of any; re-reads the directory each round (clones added meanwhile join in).
    ``runner`` trains the chunks of a round (default: here, one after another)."""
    k, announced = 0, set()
    while True:
        chunk = min(k, chunks - 1)
        progressed = _train_round(exp_dir, chunk, chunks, ws, announced, (sort_by, select_by), runner)
        if not progressed and chunk == chunks - 1:
            return
        if progressed and chunk < chunks - 1:  # the last round's table is printed by the caller
            print("\n" + report.build_table(exp_dir, sort_by, select_by).terminal + "\n", flush=True)
        k += 1
