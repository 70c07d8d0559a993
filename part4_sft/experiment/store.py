"""The run store: an experiment's directory, its runs' configs, status and markers, and its lock.

An experiment is its directory; each run lives in ``<experiment>/<run>/``::

    config.json      the run's identity (runs.RunConfig) and its registration index
    tb/              TensorBoard event files (the source of truth for the report)
    metrics.jsonl    the same scalars as JSON lines
    state.pt         resumable trainer checkpoint (model, optimizer, data position, RNG)
    adapter.pt       LoRA runs: the adapters alone (full runs: model.pt)
    evaluation.json  final test and validation reports and the first test replies
    generations.jsonl  every test reply, how it stopped and how it was judged (one line per test row)
    status.json      step / max_steps / wall seconds
    DONE, STOP       markers: the run has finished; the run is stopped (``--stop``)

Runs are registered by a grid (``register``, refused when a run of the same name exists with
another config) or by ``--clone`` (``register_clone``). ``LOCK`` holds "pid@host" of the one
process that trains the experiment.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from part3_pretrain.checkpoint import CheckpointError
from part3_pretrain.cli import ConfigError
from part3_pretrain.fileio import write_text_atomic

from .grid import clone_name
from .report import KNOB_COLUMNS, missing_keys, run_dirs
from .runs import RunConfig

RUN_CONFIG_KEYS = ("name", "settings", "base_path", *(f"knobs.{k}" for k in KNOB_COLUMNS))

# ---------------------------------------------------------------------------------------------
# one run: config, status, markers


def save_run_config(run: RunConfig, run_dir: Path, index: int = 0) -> None:
    """config.json: the resolved run plus its registration index (the order of the runs)."""
    write_text_atomic(json.dumps({**run.to_dict(), "index": index}, indent=2) + "\n", run_dir / "config.json")


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


def write_status(run_dir: Path, step: int, max_steps: int, wall: float, done: bool) -> None:
    status = {
        "state": "done" if done else "partial",
        "step": step,
        "max_steps": max_steps,
        "wall_seconds": round(wall, 2),
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_text_atomic(json.dumps(status, indent=2) + "\n", run_dir / "status.json")


def is_done(run_dir: Path) -> bool:
    return (run_dir / "DONE").is_file()


def mark_done(run_dir: Path) -> None:
    write_text_atomic("done\n", run_dir / "DONE")


def is_stopped(run_dir: Path) -> bool:
    return (run_dir / "STOP").is_file()


def mark_stopped(run_dir: Path) -> None:
    """The STOP marker, honoured before the run's next chunk (also by a running experiment)."""
    write_text_atomic(f"stopped {time.strftime('%Y-%m-%d %H:%M:%S')}\n", run_dir / "STOP")


def clear_stopped(run_dir: Path) -> None:
    (run_dir / "STOP").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the experiment's runs: registration


def registered_runs(exp_dir: Path) -> list[RunConfig]:
    return [load_run_config(d) for d in run_dirs(exp_dir)]


def check_registration(exp_dir: Path, runs: Sequence[RunConfig]) -> None:
    """A run already in the directory must have exactly the config the grid gives it now."""
    conflicts = []
    for run in runs:
        path = exp_dir / run.name
        if (path / "config.json").is_file():
            diffs = load_run_config(path).differences(run)
            if diffs:
                conflicts.append(f"{run.name} ({'; '.join(diffs[:3])})")
    if conflicts:
        raise ConfigError(
            f"{exp_dir} already has runs with other settings: {', '.join(conflicts[:3])}; "
            "use the same options to continue it, or another --name"
        )


def register(exp_dir: Path, runs: Sequence[RunConfig]) -> list[str]:
    """Write each new run's config.json (after ``check_registration``); returns the added names."""
    check_registration(exp_dir, runs)
    index = len(run_dirs(exp_dir))
    added = []
    for run in runs:
        if not (exp_dir / run.name / "config.json").is_file():
            save_run_config(run, exp_dir / run.name, index)
            index += 1
            added.append(run.name)
    return added


def existing_run(exp_dir: Path, name: str, flag: str) -> Path:
    """The directory of the registered run ``name``, or a ConfigError naming ``flag`` and the runs."""
    d = exp_dir / name
    if not (d / "config.json").is_file():
        known = [p.name for p in run_dirs(exp_dir)] if exp_dir.is_dir() else []
        raise ConfigError(
            f"{flag} {name}: no such run in {exp_dir}"
            + (f" (runs: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})" if known else "")
        )
    return d


def register_clone(exp_dir: Path, parent_name: str, sets: Sequence[str]) -> RunConfig:
    """Add a run that warm-starts from ``parent_name``'s weights with the ``--set`` changes."""
    parent_dir = existing_run(exp_dir, parent_name, "--clone")
    parent = load_run_config(parent_dir)
    if not (parent_dir / "state.pt").is_file():
        raise ConfigError(f"--clone {parent_name}: the run has no weights yet; train it first")
    knobs, changes = parent.knobs.changed(sets)
    taken = {p.name for p in exp_dir.iterdir()}
    run = RunConfig(
        clone_name(parent.name, changes, taken),
        knobs,
        parent.settings,
        parent.base_path,
        parent=parent.name,
        changes=tuple(f"{k}={v}" for k, v in changes),
    )
    save_run_config(run, exp_dir / run.name, len(run_dirs(exp_dir)))
    which = "final" if is_done(parent_dir) else f"latest (step {read_status(parent_dir).get('step', '?')})"
    print(
        f"added run {run.name}: {parent.name} with {', '.join(run.changes)}, warm-started from its {which} "
        "weights with a fresh optimizer",
        flush=True,
    )
    return run


# ---------------------------------------------------------------------------------------------
# the lock: one training process per experiment


def lock_holder(exp_dir: Path) -> str | None:
    """Who runs the experiment now ("pid@host"), or None (no lock, or a dead process's)."""
    try:
        pid_text, _, host = (exp_dir / "LOCK").read_text(encoding="utf-8").strip().partition("@")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return f"{pid}@{host}"


class ExperimentLock:
    """One process trains an experiment at a time; a dead holder's lock is taken over."""

    def __init__(self, exp_dir: Path) -> None:
        self.path = exp_dir / "LOCK"

    def __enter__(self) -> ExperimentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = lock_holder(self.path.parent)
                if holder is not None:
                    raise ConfigError(
                        f"{self.path.parent} is being trained by process {holder}; control it with "
                        "--stop/--clone, or delete the LOCK file if that process is gone"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}@{socket.gethostname()}\n")
            return self
        raise ConfigError(f"{self.path}: cannot take the experiment lock")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
