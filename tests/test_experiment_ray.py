"""``python -m part4_sft.experiment --backend ray`` on a real local Ray cluster (2 CPUs, one per
module): the tiny 2-run grid on Ray gives bit-identical weights, the same curves and the same
table as on the local backend; chunks run in rounds and ``--stop`` / ``--unstop`` / rerun work as
locally (the rerun through the command line, which starts and shuts down its own cluster); a
worker SIGKILLed mid-chunk makes the run resume from its checkpoint and finish exactly once;
a clone trains on Ray as it does locally; every node must see the experiment folder; the
backend's options fail with one line, and a Ray address that does not answer is refused at once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from part3_pretrain.checkpoint import load_checkpoint
from part3_pretrain.cli import compose
from part4_sft.experiment import cli as E
from part4_sft.experiment import ray_backend
from part4_sft.experiment import report as R
from tests.test_experiment import _exit
from tests.tools import TINY_EXPERIMENT, assert_same_weights, one_thread, run_weights

ray = pytest.importorskip("ray")

RUN_QA = "large-qa-lora4-c_attn-ep2"
RUN_INSTR = "large-instruction-lora4-c_attn-ep2"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local cluster for the module, 2 CPUs, shut down at the end."""
    ray_backend.init_ray(None, num_cpus=2)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_kw(tiny_base, tmp_path_factory) -> dict:
    """The options of the tiny experiment of tests/test_experiment.py (2 runs of 2 epochs of ~5
    steps on a 1-layer base), with one thread per run on both backends."""
    data = tmp_path_factory.mktemp("ray_data") / "sft_dataset.json"
    return dict(TINY_EXPERIMENT, large_base=str(tiny_base), dataset_path=str(data), threads=1)


def _cfg(kw: dict, root: Path, **changes) -> E.ExperimentConfig:
    return compose(E.ExperimentConfig, **{**kw, "experiments_dir": str(root), **changes})


def _run(cfg: E.ExperimentConfig) -> dict:
    with one_thread():  # --threads 1 sets the driver's torch threads: restore them after
        return E.run(cfg)


@pytest.fixture(scope="module")
def local_grid(tiny_kw, tmp_path_factory) -> Path:
    """The tiny grid on the local backend, unchunked: the reference."""
    return Path(_run(_cfg(tiny_kw, tmp_path_factory.mktemp("local")))["exp_dir"])


@pytest.fixture(scope="module")
def ray_grid(ray_cluster, tiny_kw, tmp_path_factory) -> dict:
    """The same grid on Ray in 2 chunks, ``--stop`` RUN_QA as soon as the first chunk finishes
    (as if typed in another terminal), then ``--unstop`` and a rerun through the command line,
    which starts its own local cluster (no --ray-address)."""
    cfg = _cfg(tiny_kw, tmp_path_factory.mktemp("ray"), backend="ray", chunks=2)
    control = ["--experiments-dir", cfg.experiments_dir, "--name", cfg.name]
    real_tables = R.write_tables
    stopped = []

    def tables_then_stop(*args, **kwargs):
        if not stopped:
            stopped.append(E.main([*control, "--stop", RUN_QA]))
        return real_tables(*args, **kwargs)

    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp, _captured() as first:
        mp.setattr(R, "write_tables", tables_then_stop)
        result = _run(cfg)
    exp_dir = Path(result["exp_dir"])
    status_after_stop = {n: json.loads((exp_dir / n / "status.json").read_text()) for n in (RUN_QA, RUN_INSTR)}
    assert stopped == [0] and E.main([*control, "--unstop", RUN_QA]) == 0
    rerun = subprocess.run(
        [sys.executable, "-m", "part4_sft.experiment", *_argv(tiny_kw, cfg.experiments_dir, backend="ray", chunks=2)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    print(f"ray grid with stop and rerun: {time.perf_counter() - t0:.1f} s")
    return {"exp_dir": exp_dir, "first": first.getvalue(), "status_after_stop": status_after_stop, "rerun": rerun}


class _captured:
    """stdout of the driver, also printed (pytest's capsys is function-scoped)."""

    def __enter__(self):
        import io

        self.buf, self.old = io.StringIO(), sys.stdout
        sys.stdout = self
        return self.buf

    def write(self, s: str) -> int:
        self.old.write(s)
        return self.buf.write(s)

    def flush(self) -> None:
        self.old.flush()

    def __exit__(self, *exc) -> None:
        sys.stdout = self.old


def _argv(kw: dict, experiments_dir: str, **changes) -> list[str]:
    """The command line of the tiny experiment."""
    argv = ["--experiments-dir", experiments_dir]
    for key, v in {**kw, **changes}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else f"--no-{flag[2:]}")
        elif isinstance(v, tuple):
            argv += [flag, *map(str, v)]
        else:
            argv += [flag, str(v)]
    return argv


def _assert_same_tree(a, b) -> None:
    """Nested dicts/lists of tensors and plain values, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_tree(x, y)
    else:
        assert a == b


SERIES = ("train/loss", "train/grad_norm", "val/loss", "val_gen/rouge_l", "final_val/rubric_pass", "final/rouge_l")


def _assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical weights and adapters, the same curves and final metrics, the same files."""
    assert_same_weights(run_weights(a), run_weights(b))
    _assert_same_tree(*(torch.load(d / "adapter.pt", weights_only=True) for d in (a, b)))
    sa, sb = R.read_scalars(a / "tb"), R.read_scalars(b / "tb")
    for tag in SERIES:
        assert sa[tag] == sb[tag], tag
    ea, eb = (json.loads((d / "evaluation.json").read_text()) for d in (a, b))
    for part in ("test", "validation"):  # everything but the time the evaluation took
        assert {k: v for k, v in ea[part]["scalars"].items() if k != "eval_seconds"} == {
            k: v for k, v in eb[part]["scalars"].items() if k != "eval_seconds"
        }, part
    assert ea["examples"] == eb["examples"]
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


# ---------------------------------------------------------------------------------------------


def test_ray_grid_equals_local_bit_for_bit(local_grid, ray_grid):
    """Same grid, same seeds, same --threads: every run's weights, curves, final metrics and
    table row are the same on both backends (the Ray runs also chunked, stopped and resumed)."""
    ray_dir = ray_grid["exp_dir"]
    for name in (RUN_QA, RUN_INSTR):
        _assert_same_run(local_grid / name, ray_dir / name)
    rows = [{k: v for k, v in r.items() if k != "wall_s"} for r in R.build_table(local_grid).rows]
    assert rows == [{k: v for k, v in r.items() if k != "wall_s"} for r in R.build_table(ray_dir).rows]
    assert sorted(p.name for p in local_grid.iterdir()) == sorted(p.name for p in ray_dir.iterdir())


def test_ray_chunks_run_in_rounds_and_stop_unstop_rerun_work(ray_grid):
    """Chunk 1 of every run before any chunk 2; each chunk line names the node; --stop (issued
    while the first round ran) keeps RUN_QA at its first chunk while RUN_INSTR finishes; after
    --unstop the rerun (the command line, its own local cluster) finishes RUN_QA only."""
    lines = [line for line in ray_grid["first"].splitlines() if line.startswith("[chunk")]
    assert sorted(line.split("] ")[1].split(":")[0] for line in lines[:2]) == sorted([RUN_QA, RUN_INSTR])
    assert [line.split("]")[0] for line in lines] == ["[chunk 1/2"] * 2 + ["[chunk 2/2"]
    assert RUN_INSTR in lines[2] and all(" on " in line and "/" in line.split(" on ")[1] for line in lines)
    assert "Ray cluster: 1 node(s), 2 CPUs" in ray_grid["first"]
    qa, instr = ray_grid["status_after_stop"][RUN_QA], ray_grid["status_after_stop"][RUN_INSTR]
    assert qa["state"] == "partial" and 0 < qa["step"] < qa["max_steps"] and instr["state"] == "done"
    out = ray_grid["rerun"].stdout
    rerun_lines = [line for line in out.splitlines() if line.startswith("[chunk")]
    assert len(rerun_lines) == 1 and rerun_lines[0].startswith(f"[chunk 2/2] {RUN_QA}:") and "Ray cluster:" in out
    exp_dir = ray_grid["exp_dir"]
    for name in (RUN_QA, RUN_INSTR):
        assert (exp_dir / name / "DONE").is_file()
        assert len(list((exp_dir / name / "tb").glob("events.*"))) == 2  # one event file per chunk


def _chunk_worker_pid(run_name: str) -> int | None:
    """The Ray worker process training ``run_name`` (its process title is ``ray::<task name>``)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(f"ray::{run_name} to step".encode()):
                return int(entry.name)
    return None


def _kill_after_first_checkpoint(run_dir: Path, run_name: str, killed: list, deadline: float) -> None:
    """SIGKILL the run's worker once its first checkpoint exists (mid-chunk); ``killed`` gets
    (pid, whether the run was already done)."""
    while time.monotonic() < deadline:
        if (run_dir / "state.pt").is_file():
            pid = _chunk_worker_pid(run_name)
            if pid is not None:
                done = (run_dir / "DONE").exists()
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, done))
                return
        time.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the worker through /proc")
def test_killed_worker_resumes_from_its_checkpoint(ray_cluster, tiny_kw, tmp_path):
    """The worker training a 6-epoch run is SIGKILLed after its epoch-1 checkpoint: Ray retries the
    chunk on another worker, which resumes from state.pt (a second event file: a fresh start
    would have cleared tb/), and the run ends bit-identical to the uninterrupted local one,
    evaluated (finished) once."""
    name = RUN_QA.replace("-ep2", "-ep6")  # 5 epochs after the first checkpoint: time to kill it
    local = Path(_run(_cfg(tiny_kw, tmp_path / "local", prompts=("qa",), epochs=(6,)))["exp_dir"]) / name
    run_dir = tmp_path / "ray" / "exp" / name
    killed: list = []
    deadline = time.monotonic() + 240
    killer = threading.Thread(target=_kill_after_first_checkpoint, args=(run_dir, name, killed, deadline))
    killer.start()
    try:
        _run(_cfg(tiny_kw, tmp_path / "ray", backend="ray", prompts=("qa",), epochs=(6,)))
    finally:
        killer.join()
    assert len(killed) == 1 and not killed[0][1], "the worker must be killed mid-run"
    _assert_same_run(local, run_dir)
    assert len(list((run_dir / "tb").glob("events.*"))) == 2
    assert len(R.read_scalars(run_dir / "tb")["final/rouge_l"]) == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # the killed attempt's records after the checkpoint were dropped


def test_clone_on_ray_equals_clone_locally(ray_cluster, local_grid, tiny_kw, tmp_path):
    """--clone RUN --set ... trains the clone on Ray exactly as on the local backend."""
    dirs = {}
    for backend in ("local", "ray"):
        root = tmp_path / backend
        shutil.copytree(local_grid, root / "exp")
        _run(_cfg(tiny_kw, root, backend=backend, clone=RUN_QA, set=("lr=1e-3", "epochs=1")))
        dirs[backend] = root / "exp" / (RUN_QA + "+lr=1e-3+epochs=1")
    _assert_same_run(dirs["local"], dirs["ray"])
    parent_steps = R.read_scalars(local_grid / RUN_QA / "tb")["meta/max_steps"][0][1]
    assert load_checkpoint(dirs["ray"] / "state.pt")["trainer"]["step"] * 2 == parent_steps  # 1 epoch of 2


def test_every_node_must_see_the_experiment_folder(ray_cluster, tmp_path):
    """The start-up check passes on a folder the node sees; a node that does not see the driver's
    token reports it."""
    ray_backend.check_shared_folder(tmp_path)
    assert not (tmp_path / ray_backend.PROBE_FILE).exists()
    assert ray_backend._probe(str(tmp_path), "token", os.getcwd())["sees"] is False


def test_backend_options_fail_with_one_line(tmp_path, monkeypatch, capsys):
    """Without Ray installed, --backend ray names the install command; --ray-address needs
    --backend ray; --ray-retries must be >= 0. All before any work (exit 2, one line)."""
    argv = ["--experiments-dir", str(tmp_path), "--bases", "large", "--large-base", str(tmp_path / "m.pt")]
    code, err = _exit([*argv[:2], "--ray-address", "auto"], capsys)
    assert code == 2 and "--ray-address needs --backend ray" in err and len(err.strip().splitlines()) == 1, err
    code, err = _exit([*argv[:2], "--backend", "ray", "--ray-retries", "-1"], capsys)
    assert code == 2 and "--ray-retries" in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    code, err = _exit([*argv[:2], "--backend", "ray"], capsys)
    assert code == 2 and "pip install 'ray==2.52.0'" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "grid").exists()


def test_a_ray_address_that_does_not_answer_is_refused_quickly():
    """Ray would retry a dead HOST:PORT without end; the backend asks the port first."""
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert ray_backend.head_answers(f"127.0.0.1:{listening.getsockname()[1]}")
        free_port = listening.getsockname()[1]
    assert not ray_backend.head_answers(f"127.0.0.1:{free_port}")  # closed now
    assert ray_backend.head_answers("auto") and ray_backend.head_answers("ray://head:10001")
