"""Reliability of part 3 (``python -m part3_pretrain.pretrain`` and its trainer): no bad value gets
past the door, no run destroys the last good checkpoint, no NaN is ever saved.

- a diverging run stops with one line naming the step; the checkpoint on disk stays finite and
  loadable, and weights that overflow are never written;
- a checkpoint with a NaN weight is refused at load;
- NaN/inf float options exit 2 with one line and leave an existing run's files byte-identical;
- corpora too small for the split, the batch or one validation window exit 2 with one line
  naming the file or option, before anything is written;
- temp files of an interrupted atomic write are removed when a run starts; ``kill -9`` during
  training leaves a loadable model.pt and ``--resume`` ends where an uninterrupted run ends;
- a torn last line in metrics.jsonl does not stop ``--resume``; a damaged line elsewhere is one
  line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from part3_pretrain import trainer as trainer_mod
from part3_pretrain.checkpoint import (
    CheckpointError,
    load_model,
    model_checkpoint,
    non_finite_tensors,
)
from part3_pretrain.cli import options
from part3_pretrain.data import TokenWindows
from part3_pretrain.fileio import _temp_beside, remove_stale_temps, save_atomic, write_text_atomic
from part3_pretrain.model import GPT, GPTConfig
from part3_pretrain.pretrain import PROG, PretrainConfig, main, run
from part3_pretrain.sink import read_metrics
from part3_pretrain.tokenizer import train_tokenizer
from part3_pretrain.trainer import Trainer, TrainerConfig, TrainingDiverged
from tests.tools import TINY_PRETRAIN, one_thread, tiny_pretrain_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def argv_of(**kw) -> list[str]:
    """Command-line flags for ``TINY_PRETRAIN`` updated with ``kw``."""
    out = []
    for k, v in {**TINY_PRETRAIN, **kw}.items():
        name = "--" + k.replace("_", "-")
        out += [name] if v is True else [f"--no-{name[2:]}"] if v is False else [f"{name}={v}"]
    return out


def call_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: "), err
    return lines[0]


def cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "part3_pretrain.pretrain", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train/tokens_per_s"} for r in records]


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """A finished tiny run: the files a later bad command must leave byte-identical."""
    out = tmp_path_factory.mktemp("old") / "run"
    with one_thread():
        run(tiny_pretrain_config(out, max_steps=2, eval_every=0))
    return out


# ------------------------------------------------------------------------------ divergence


def test_huge_lr_stops_with_one_line_naming_the_step_and_keeps_a_finite_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert call_main(argv_of(lr=1e6, max_steps=20, checkpoint_every=1, eval_every=0) + ["--out-dir", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "step 2:" in line and "not finite" in line and "lower --lr" in line
    assert "last good checkpoint, step 1" in line and str(out / "model.pt") in line
    _, _, ckpt = load_model(out / "model.pt")  # weights_only, refuses NaN/inf weights
    assert ckpt["trainer"]["step"] == 1
    assert non_finite_tensors(ckpt["model"]) == []
    assert all(math.isfinite(r["train/loss"]) for r in read_metrics(out / "metrics.jsonl"))
    assert not list(out.glob(".*.tmp")) and not (out / "summary.json").exists()


def test_weights_that_overflow_in_the_update_are_never_saved(tmp_path, capsys) -> None:
    """lr 3e38: the loss of step 1 is finite, its update makes the weights inf. The step-1
    checkpoint is refused (before, it was written, and the run then stopped at step 2 saying
    the last good checkpoint was kept)."""
    out = tmp_path / "run"
    assert call_main(argv_of(lr=3e38, max_steps=20, checkpoint_every=1, eval_every=0) + ["--out-dir", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "step 1:" in line and "not finite" in line and "not saved" in line and "no checkpoint" in line
    assert not (out / "model.pt").exists()
    assert not list(out.glob(".*.tmp"))


def _tiny_trainer(tmp_path: Path, **kw) -> Trainer:
    tok = train_tokenizer(["Customer: where is my order?", "Agent: it ships today."] * 3, 270)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    tokens = np.random.default_rng(0).integers(0, tok.vocab_size, 2000).astype(np.uint16)
    cfg = TrainerConfig(
        **{**dict(max_steps=2, lr=3e-3, device="cpu", dtype="float32", progress=False, checkpoint_every=1), **kw}
    )
    return Trainer(
        model,
        TokenWindows(tokens, 16, 2),
        cfg,
        checkpoint_path=tmp_path / "model.pt",
        checkpoint_meta={"model_config": model.config.to_dict(), "tokenizer": tok.to_str()},
    )


@pytest.mark.parametrize("where", ["weights", "optimizer", "muon"])
def test_save_refuses_non_finite_state_and_keeps_the_last_checkpoint(tmp_path, where) -> None:
    trainer = _tiny_trainer(tmp_path, **({"optimizer": "muon"} if where == "muon" else {}))
    trainer.fit()
    good = (tmp_path / "model.pt").read_bytes()
    with torch.no_grad():
        if where == "weights":
            trainer.model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
        elif where == "optimizer":
            next(iter(trainer.optimizer.state.values()))["exp_avg_sq"].view(-1)[0] = float("inf")
        else:  # a Muon momentum buffer (MuonWithAdamW's state dict holds two optimizers' states)
            trainer.optimizer.state[trainer.model.transformer.h[0].mlp.c_fc.weight]["momentum_buffer"][0, 0] = float(
                "inf"
            )
    trainer.step += 1  # as after one more (bad) update
    with pytest.raises(TrainingDiverged) as err:
        trainer.save_checkpoint()
    msg = str(err.value)
    assert "\n" not in msg and "step 3:" in msg and "not finite" in msg
    assert {"weights": "c_fc.weight", "optimizer": "optimizer", "muon": "optimizer state muon."}[where] in msg
    assert f"the last good checkpoint, step 2, is kept in {tmp_path / 'model.pt'}" in msg
    assert (tmp_path / "model.pt").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_checkpoint_with_a_nan_weight_is_refused_at_load(tmp_path) -> None:
    tok = train_tokenizer(["Customer: where is my order?", "Agent: it ships today."] * 3, 270)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[1, 2] = float("nan")
    path = save_atomic(model_checkpoint(model, tok), tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "NaN" in msg and "c_attn.weight" in msg and "--lr" in msg


# ------------------------------------------------------------------------------ non-finite options

FLOAT_OPTIONS = [name for name, default, _ in options(PretrainConfig) if isinstance(default, float)]


def test_every_float_option_is_covered() -> None:
    assert {"lr", "min_lr_ratio", "val_fraction", "dropout", "weight_decay", "grad_clip"} <= set(FLOAT_OPTIONS)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", FLOAT_OPTIONS)
def test_non_finite_float_options_exit_2_and_touch_nothing(old_run, capsys, name, value) -> None:
    before = snapshot(old_run)
    flag = "--" + name.replace("_", "-")
    assert call_main([f"{flag}={value}", "--out-dir", str(old_run)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{flag} must be a finite number" in line
    assert snapshot(old_run) == before  # metrics.jsonl included: part 3 used to empty it


def test_non_finite_option_from_the_real_command_line(old_run) -> None:
    before = snapshot(old_run)
    proc = cli(["--lr", "nan", "--resume", "--out-dir", str(old_run)], timeout=60)
    assert proc.returncode == 2
    assert "--lr must be a finite number (got nan)" in one_error_line(proc.stderr)
    assert snapshot(old_run) == before


# ------------------------------------------------------------------------------ corpora too small


def _corpus(tmp_path: Path, kind: str) -> list[str]:
    if kind == "one_txt":
        p = tmp_path / "one.txt"
        p.write_text("Customer: where is my order?\nAgent: it ships today.\n", encoding="utf-8")
    elif kind == "one_jsonl":
        p = tmp_path / "one.jsonl"
        p.write_text(json.dumps({"text": "Customer: hi\nAgent: hello"}) + "\n\n", encoding="utf-8")
    elif kind == "empty_jsonl":
        p = tmp_path / "empty.jsonl"
        p.write_text("\n\n", encoding="utf-8")
    elif kind == "tiny_txt":  # 3 short documents: no batch of 16 windows of 128 tokens
        p = tmp_path / "tiny.txt"
        p.write_text("\n\n".join(["Customer: where is my order?\nAgent: it ships today."] * 3), encoding="utf-8")
    return ["--corpus", str(p)]


# (argv, what the line must name, what else it must say)
SMALL = {
    "n_docs_1": (["--n-docs", "1"], "--n-docs 1", "use --n-docs >= 2"),
    "n_docs_3": (["--n-docs", "3"], "--n-docs 3", "one batch needs 6"),  # the default batch and block
    "n_docs_46": (["--n-docs", "46"], "--n-docs 46", "validation split"),  # one validation doc of < 129 tokens
    "one_txt": ("one_txt", "one.txt", "holds 1 document; need at least 2"),
    "one_jsonl": ("one_jsonl", "one.jsonl", "holds 1 document; need at least 2"),
    "empty_jsonl": ("empty_jsonl", "empty.jsonl", "file is empty"),
    "tiny_txt": ("tiny_txt", "tiny.txt", "give more text"),
}


@pytest.mark.parametrize("case", list(SMALL))
def test_corpus_too_small_is_one_line_before_anything_is_written(tmp_path, capsys, case) -> None:
    args, named, says = SMALL[case]
    args = _corpus(tmp_path, args) if isinstance(args, str) else args
    out = tmp_path / "out"
    assert call_main(args + ["--device", "cpu", "--no-progress", "--out-dir", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert named in line and says in line, line
    assert not out.exists()


@pytest.mark.parametrize("case", ["one_txt", "n_docs_3"])
def test_corpus_too_small_from_the_real_command_line_keeps_an_old_run(old_run, tmp_path, case) -> None:
    args, named, says = SMALL[case]
    args = _corpus(tmp_path, args) if isinstance(args, str) else args
    before = snapshot(old_run)
    proc = cli(args + ["--device", "cpu", "--no-progress", "--out-dir", str(old_run)], timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert named in line and says in line, line
    assert snapshot(old_run) == before


# ------------------------------------------------------------------------------ stale temp files


def test_remove_stale_temps_removes_only_ours(tmp_path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"the checkpoint")
    ours = [tmp_path / ".model.pt.a1b2_c3d.tmp", tmp_path / ".model.pt.zzzzzzzz.tmp"]
    others = [
        tmp_path / ".model.pt.tmp",  # not a random name
        tmp_path / ".model.pt.abcdefgh.tmp.keep",
        tmp_path / ".model.pt.ABCDEFGH.tmp",
        tmp_path / ".model.pt.abc.tmp",
        tmp_path / ".tokenizer.json.abcdefgh.tmp",
        tmp_path / "notes.tmp",
        tmp_path / "model.pt.abcdefgh.tmp",
    ]
    for p in ours + others:
        p.write_text("x")
    (tmp_path / ".model.pt.dir12345.tmp").mkdir()  # a directory is never ours
    assert sorted(remove_stale_temps(target)) == sorted(ours)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in others)
    assert target.read_bytes() == b"the checkpoint" and (tmp_path / ".model.pt.dir12345.tmp").is_dir()
    assert remove_stale_temps(tmp_path / "absent" / "model.pt") == []
    # a real temp name, as an interrupted write leaves it
    fd, tmp = _temp_beside(target)
    os.close(fd)
    assert remove_stale_temps(target) == [Path(tmp)]


def test_trainer_and_pretraining_clear_stale_temps_where_they_write(tmp_path) -> None:
    stale = tmp_path / ".model.pt.k1ll3d00.tmp"
    stale.write_bytes(b"half a checkpoint")
    _tiny_trainer(tmp_path)
    assert not stale.exists()
    out = tmp_path / "run"
    out.mkdir()
    names = [f".{n}.k1ll3d00.tmp" for n in ("model.pt", "tokenizer.json", "summary.json", "train.bin", "val.bin")]
    for n in names:
        (out / n).write_bytes(b"half a file")
    (out / "keep.tmp").write_text("a user's file")
    with one_thread():
        run(tiny_pretrain_config(out, max_steps=1, eval_every=0))
    assert not any((out / n).exists() for n in names)
    assert (out / "keep.tmp").read_text() == "a user's file"
    assert not list(out.glob(".*"))  # train.bin/val.bin are written through atomic_file too


# ------------------------------------------------------------------------------ kill -9, torn metrics

KILL_ARGS = dict(max_steps=40, checkpoint_every=1, eval_every=10)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    with one_thread():
        run(tiny_pretrain_config(out, **KILL_ARGS))
    return out


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` (polled every ms) holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (rc {proc.returncode}) before it could be killed:\n"
                f"{proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to kill")
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _saved_step(out: Path) -> int:
    _, _, ckpt = load_model(out / "model.pt")  # weights_only, finite weights
    return int(ckpt["trainer"]["step"])


def _start_pretrain(args: list[str], resume: bool) -> subprocess.Popen:
    """``python -m part3_pretrain.pretrain ARGS [--resume]`` in a child process, stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "part3_pretrain.pretrain", *args, *(["--resume"] if resume else [])],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _checkpoint_id(ckpt: Path) -> tuple[int, int] | None:
    """Which model.pt is there: each save renames a new file onto it."""
    try:
        st = ckpt.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _assert_ends_like(out: Path, uninterrupted: Path) -> None:
    """``out`` holds the uninterrupted run's final weights (bitwise) and metrics, and no temp file."""
    resumed = torch.load(out / "model.pt", weights_only=True)
    straight = torch.load(uninterrupted / "model.pt", weights_only=True)
    assert resumed["trainer"]["step"] == straight["trainer"]["step"] == KILL_ARGS["max_steps"]
    for k, v in straight["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert without_timing(read_metrics(out / "metrics.jsonl")) == without_timing(
        read_metrics(uninterrupted / "metrics.jsonl")
    )
    assert not list(out.glob(".*")), sorted(p.name for p in out.glob(".*"))  # no temp file left


def test_kill_9_leaves_a_loadable_checkpoint_and_resume_ends_like_an_uninterrupted_run(uninterrupted, tmp_path) -> None:
    """kill -9 (1) right after the first checkpoint appears, (2) in the resumed run while it
    writes a checkpoint (its temp file seen: what an interrupted atomic save leaves); each time
    model.pt loads, and the next --resume (after half a metrics record is appended) finishes with
    the uninterrupted run's weights (bitwise) and metrics, leaving no temp file."""
    out = tmp_path / "run"
    args = argv_of(**KILL_ARGS) + ["--out-dir", str(out)]
    ckpt = out / "model.pt"

    _kill_when(_start_pretrain(args, False), lambda: ckpt.is_file())
    steps = [_saved_step(out)]
    seen = {_checkpoint_id(ckpt)}

    def saving() -> bool:
        """In the middle of a save (its temp file is there), or else after 5 new checkpoints."""
        seen.add(_checkpoint_id(ckpt))
        return len(seen - {None}) > 1 and any(out.glob(".model.pt.*.tmp")) or len(seen - {None}) > 6

    _kill_when(_start_pretrain(args, True), saving)
    steps.append(_saved_step(out))
    assert 1 <= steps[0] < steps[1] < KILL_ARGS["max_steps"], steps

    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 39, "train/lo')  # as if killed in the middle of a record
    proc = _start_pretrain(args, True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    _assert_ends_like(out, uninterrupted)


def test_resume_after_a_torn_last_metrics_line(uninterrupted, tmp_path, monkeypatch) -> None:
    """A crash after the step-10 checkpoint, then half a JSON record at the end of metrics.jsonl:
    --resume drops it and ends exactly as the uninterrupted run."""
    out = tmp_path / "run"
    original = trainer_mod.Trainer.train_step

    def crash(self, with_accuracy=True):
        if self.step == 13:
            raise RuntimeError("power cut")
        return original(self, with_accuracy)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", crash)
    with one_thread(), pytest.raises(RuntimeError, match="power cut"):
        run(tiny_pretrain_config(out, **{**KILL_ARGS, "checkpoint_every": 10}))
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 14, "train/loss": 4.6')
    with one_thread():
        run(tiny_pretrain_config(out, **{**KILL_ARGS, "checkpoint_every": 10}, resume=True))
    assert torch.load(out / "model.pt", weights_only=True)["trainer"]["step"] == KILL_ARGS["max_steps"]
    assert without_timing(read_metrics(out / "metrics.jsonl")) == without_timing(
        read_metrics(uninterrupted / "metrics.jsonl")
    )


def test_resume_with_a_damaged_metrics_line_is_one_line_and_changes_nothing(old_run, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for p in old_run.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    write_text_atomic("".join([lines[0], "{not json\n", *lines[1:]]), out / "metrics.jsonl")
    before = snapshot(out)
    assert call_main(argv_of(max_steps=2, eval_every=0) + ["--resume", "--out-dir", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{out / 'metrics.jsonl'}:2" in line and "cannot resume" in line
    assert snapshot(out) == before
