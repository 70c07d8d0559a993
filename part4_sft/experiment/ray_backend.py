"""The experiment grid on a Ray cluster (``--backend ray``): every chunk of every run is a Ray task.

Why Ray core tasks, not Ray Tune: an experiment is its folder (``store.py``): run folders with
config.json, status.json, TensorBoard events, state.pt, adapters, DONE/STOP markers, and the
results tables and report rebuilt from them; its semantics (registration checked against the
stored configs, ``--chunks`` rounds, ``--stop`` before a run's next chunk, clones joining a
running experiment, rerun-to-resume) live in ``scheduler.py`` and ``store.py``. Ray Tune owns
all of that itself: trials with its own names and result folders, its own checkpoint and restore
logic, its own experiment state and stopping; keeping our folder and semantics under Tune would
mean mapping every one of them onto Tune's, or keeping two of each. A core task is a function
call with declared resources: each task calls the very ``scheduler.train_chunk`` the local
backend calls, on the same run folder, so the folder is exactly what the local backend writes,
and which chunks run when stays decided by ``scheduler.schedule`` on the driver.

How it runs:
- **Where files go.** Workers write the run folders directly, so every node must see the
  experiment folder, the base checkpoints, the data and this project's code at the same paths as
  the driver (a shared filesystem, or one machine). ``check_shared_folder`` checks it at start
  with a probe task on every node (one-line error otherwise). Tasks run in the driver's working
  directory (relative paths in run configs resolve as on the driver), with the project root on
  ``PYTHONPATH``. The driver alone prints the chunk lines and writes the tables and the report.
- **Resources.** A chunk asks for ``--threads`` CPUs (1 when ``--threads`` is 0, so a machine
  runs one chunk per core) and torch in the task uses exactly that many threads: with the same
  ``--threads`` the fp32 sums reduce in the same order as on the local backend, and the weights
  are bit-identical. ``--device cuda`` asks for one GPU per chunk; ``--device auto`` never uses a
  GPU it did not ask for (it trains on the CPU).
- **Chunks.** The driver submits chunk k of every pending run, prints each as it finishes, and
  waits for all of them before any chunk k+1: the ``--chunks`` rounds. STOP is checked by the
  driver when a round is submitted and by each task when it starts.
- **Faults.** A task whose worker process or node dies is retried (``--ray-retries``) on any
  worker; the retry is ``train_chunk`` again, which resumes from the run's last checkpoint
  (state.pt, written at every interval evaluation), and a retry that finds the run finished
  returns without training: nothing is lost and no run is trained to completion twice. An error
  of the run itself (a diverging run, a bad file) is not retried: as on the local backend it
  stops the experiment, after the other chunks in flight were interrupted (Ray's cancel raises
  KeyboardInterrupt in the task, and the trainer checkpoints its step as on Ctrl-C).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import torch

from part3_pretrain.cli import ConfigError
from part3_pretrain.configs import ExecConfig
from part3_pretrain.fileio import write_text_atomic

from . import scheduler
from .runs import RunConfig
from .scheduler import ChunkResult
from .store import is_done, is_stopped, read_status
from .workspace import Workspace

RAY_VERSION = "2.52.0"
INSTALL = f"pip install 'ray=={RAY_VERSION}' (or pip install -e '.[ray]')"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROBE_FILE = ".ray-probe"
PROBE_TIMEOUT_S = 300  # a node starts a worker process for the probe: seconds when it is busy
CANCEL_GRACE_S = 120  # interrupted chunks checkpoint their step before the driver leaves
HEAD_TIMEOUT_S = 10  # a HOST:PORT that does not answer: Ray itself would retry without end


class ClusterError(RuntimeError):
    """A chunk that Ray could not complete: its worker or node died more often than retried."""


def ray_missing() -> str | None:
    """The one-line problem when Ray is not installed, else None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return f"--backend ray needs Ray, which is not installed: {INSTALL}"
    return None


def _ray():
    import ray

    return ray


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """``ray.init``: join ``address`` or start a local cluster (``num_cpus``: its CPUs, None: every
    core; no dashboard, so no metrics agent either); workers import this project from its root.
    Tests start their cluster with it too."""
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kw = {"address": address or "local", "logging_level": "WARNING", "runtime_env": {"env_vars": {"PYTHONPATH": path}}}
    if address is None:
        kw.update(include_dashboard=False, _system_config={"enable_metrics_collection": False})
        if num_cpus is not None:
            kw["num_cpus"] = num_cpus
    with warnings.catch_warnings():  # Ray's notice about a future default (GPU visibility), handled in _task_device
        warnings.simplefilter("ignore", FutureWarning)
        _ray().init(**kw)


def task_execution(ex: ExecConfig) -> ExecConfig:
    """The execution settings of a chunk task: ``--threads 0`` means one thread per chunk."""
    return replace(ex, threads=ex.threads or 1)


def task_options(ex: ExecConfig, retries: int) -> dict:
    """Declared resources and retries of a chunk task (``ex`` from ``task_execution``)."""
    return {
        "num_cpus": ex.threads,
        "num_gpus": 1 if ex.device == "cuda" else 0,
        "max_retries": retries,
        "retry_exceptions": False,  # errors of the run itself stop the experiment, as locally
    }


# ---------------------------------------------------------------------------------------------
# the cluster


class RayCluster:
    """``with RayCluster(address, retries) as rounds:`` the connection to Ray for one experiment:
    joins ``address`` (``auto``: the cluster ``ray start`` runs on this machine), or starts a
    local cluster when None, and shuts down what it started. A process that already called
    ``ray.init`` keeps its own cluster. ``rounds`` is the scheduler's round runner."""

    def __init__(self, address: str | None, retries: int) -> None:
        self.address, self.retries, self.started = address, retries, False

    def __enter__(self) -> RayRounds:
        ray = _ray()
        if not ray.is_initialized():
            if self.address and not head_answers(self.address):
                raise ConfigError(
                    f"--ray-address {self.address}: nothing answers there within {HEAD_TIMEOUT_S} s "
                    "(start the head with 'ray start --head' and give its HOST:PORT, or auto on the head)"
                )
            try:
                init_ray(self.address)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"--ray-address {self.address}" if self.address else "a local Ray cluster"
                raise ConfigError(f"{where}: cannot start or join Ray ({str(e).splitlines()[0]})") from None
            self.started = True
        print(describe_cluster(), flush=True)
        return RayRounds(self.retries)

    def __exit__(self, *exc) -> None:
        if self.started:
            _ray().shutdown()


def head_answers(address: str) -> bool:
    """Whether a TCP connection to ``HOST:PORT`` opens (other forms, like auto, are Ray's to judge)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host, int(port)), timeout=HEAD_TIMEOUT_S):
            return True
    except OSError:
        return False


def describe_cluster() -> str:
    ray = _ray()
    res = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n["Alive"]]
    return (
        f"Ray cluster: {len(nodes)} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs "
        f"({', '.join(_node_name(n['NodeManagerHostname'], n['NodeID']) for n in nodes)})"
    )


def _node_name(host: str, node_id: str) -> str:
    return f"{host}/{node_id[:8]}"


def _probe(exp_dir: str, token: str, cwd: str) -> dict:
    """On one node: does it see the driver's token in the experiment folder, and its directory?"""
    try:
        seen = (Path(exp_dir) / PROBE_FILE).read_text(encoding="utf-8") == token
    except OSError:
        seen = False
    node = _ray().get_runtime_context().get_node_id()
    return {"node": _node_name(socket.gethostname(), node), "sees": seen and Path(cwd).is_dir()}


def check_shared_folder(exp_dir: Path) -> None:
    """Every alive node must see ``exp_dir`` (and the driver's working directory) at the same
    path: a token the driver writes there is read back by a probe task pinned to each node."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    exp_dir = exp_dir.resolve()
    token = uuid.uuid4().hex
    write_text_atomic(token, exp_dir / PROBE_FILE)
    probe = ray.remote(_probe)
    try:
        for node in [n for n in ray.nodes() if n["Alive"]]:
            name = _node_name(node["NodeManagerHostname"], node["NodeID"])
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ref = probe.options(num_cpus=0, scheduling_strategy=strategy).remote(str(exp_dir), token, os.getcwd())
            try:
                seen = ray.get(ref, timeout=PROBE_TIMEOUT_S)["sees"]
            except ray.exceptions.RayError as e:
                raise ConfigError(
                    f"--backend ray: the probe task on node {name} failed ({type(e).__name__}); every node "
                    f"needs this project at {PROJECT_ROOT} with the same packages"
                ) from None
            if not seen:
                raise ConfigError(
                    f"--backend ray: node {name} does not see {exp_dir}; every node must see the experiment "
                    f"folder, the base models, the data and {os.getcwd()} at the same paths (a shared filesystem)"
                )
    finally:
        (exp_dir / PROBE_FILE).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# one chunk, in a Ray worker


@functools.lru_cache(maxsize=2)
def _workspace(execution_json: str) -> Workspace:
    """One workspace per worker process and execution settings: the data and the bases are
    loaded once per worker, not once per chunk."""
    return Workspace(ExecConfig(**json.loads(execution_json)))


def _task_device(ex: ExecConfig) -> ExecConfig:
    """``--device auto`` takes no GPU the task did not ask for (Ray hides them today; a later Ray
    may not)."""
    if ex.device == "auto" and torch.cuda.is_available() and not _ray().get_gpu_ids():
        return replace(ex, device="cpu")
    return ex


def chunk_task(run: RunConfig, exp_dir: str, until: int, execution: ExecConfig, cwd: str) -> ChunkResult | None:
    """Train ``run`` up to step ``until`` in this worker (``scheduler.train_chunk``); None when
    the run was stopped since the round was submitted. A retry that finds the run finished
    (its worker died after the run was done) returns the finished state without training."""
    os.chdir(cwd)
    ex = _task_device(execution)
    torch.set_num_threads(ex.threads)
    run_dir = Path(exp_dir) / run.name
    where = _node_name(socket.gethostname(), _ray().get_runtime_context().get_node_id())
    if is_done(run_dir):
        status = read_status(run_dir)
        return ChunkResult(run.name, status.get("step", 0), status.get("max_steps", 0), True, 0.0, {}, where)
    if is_stopped(run_dir):
        return None
    res = scheduler.train_chunk(run, Path(exp_dir), until, _workspace(json.dumps(asdict(ex), sort_keys=True)))
    return replace(res, where=where)


# ---------------------------------------------------------------------------------------------
# a round of chunks, from the driver


class RayRounds:
    """The scheduler's round runner on Ray: every chunk of the round as a task, the results as
    they finish; returns when all of them have."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    def __call__(self, jobs: Iterable[tuple[RunConfig, int]], exp_dir: Path, ws: Workspace) -> Iterator[ChunkResult]:
        ray = _ray()
        ex = task_execution(ws.execution)
        task, options = ray.remote(chunk_task), task_options(ex, self.retries)
        refs = {}
        try:
            for run, until in jobs:  # all of them now: STOP is checked here, and again when a task starts
                named = task.options(name=f"{run.name} to step {until}", **options)
                refs[named.remote(run, str(exp_dir.resolve()), until, ex, os.getcwd())] = run.name
        except BaseException:  # a run that cannot be planned: the chunks already submitted stop too
            _interrupt(list(refs))
            raise
        yield from _gather(refs, self.retries)


def _gather(refs: dict, retries: int) -> Iterator[ChunkResult]:
    """Each task's result as it finishes; on an error (or Ctrl-C) the others are interrupted
    (they checkpoint their step) before it propagates."""
    ray = _ray()
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            res = _result(done[0], refs[done[0]], retries)
            if res is not None:
                yield res
    except BaseException:  # an error, KeyboardInterrupt, or the caller leaving the loop
        _interrupt(pending)
        raise


def _result(ref, name: str, retries: int) -> ChunkResult | None:
    """A task's result; a run's own error is raised as itself (one line for the known ones)."""
    ray = _ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, Exception):
            raise cause from e
        raise
    except ray.exceptions.RayError as e:
        raise ClusterError(
            f"run {name}: Ray could not complete its chunk in {retries + 1} attempt(s) ({type(e).__name__}); "
            "it keeps its last checkpoint: rerun the same command to resume"
        ) from None


def _interrupt(pending: list) -> None:
    """Interrupt chunks in flight (KeyboardInterrupt in the task: the trainer checkpoints) and wait
    for them to leave."""
    if not pending:
        return
    ray = _ray()
    for ref in pending:
        ray.cancel(ref)
    ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
