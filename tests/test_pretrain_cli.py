"""End-to-end tests of ``python -m part3_pretrain.pretrain``: a complete ``--help``, one-line
exit-2 errors for bad flags and bad corpus files (with nothing written), the files a tiny
in-process run writes and their keys, resume after Ctrl-C equal to an uninterrupted run, and
refusal to resume with changed settings."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from part3_pretrain import trainer as trainer_mod
from part3_pretrain.checkpoint import load_model
from part3_pretrain.cli import ConfigError, flat_dict, options
from part3_pretrain.pretrain import PROG, PretrainConfig, main, run
from part3_pretrain.sink import read_metrics
from tests.tools import TINY_PRETRAIN, tiny_pretrain_config

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = {"model.pt", "tokenizer.json", "metrics.jsonl", "loss_curve.png", "summary.json"}
STREAMS = {"train.bin", "val.bin"}  # the token streams the run reads through memmap


def call_main(argv: list[str]) -> int:
    """``main(argv)`` in-process; argparse's ``sys.exit`` becomes a return code."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ")
    return lines[0]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train/tokens_per_s"} for r in records]


# ------------------------------------------------------------------------------ --help


def _help_entries(help_text: str) -> dict[str, str]:
    """``{"--flag": "its help, unwrapped"}`` from argparse's options section."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.split("options:", 1)[1].splitlines():
        m = re.match(r"  (--[\w-]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line
        elif current is not None:
            entries[current] += " " + line
    return {k: " ".join(v.split()) for k, v in entries.items()}


def test_help_lists_every_field_with_its_default() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "part3_pretrain.pretrain", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    entries = _help_entries(proc.stdout)
    for field_name, default, help_text in options(PretrainConfig):  # nested parts flattened
        name = "--" + field_name.replace("_", "-")
        assert name in entries, name
        assert entries[name].endswith(f"(default: {default!r})"), (name, entries[name])
        assert help_text in entries[name], name
        if isinstance(default, bool):
            assert entries[name].startswith(f"{name}, --no-{name[2:]}"), entries[name]
    assert len(entries) == len(options(PretrainConfig))  # no flag without a field


# ------------------------------------------------------------------------------ bad flags


def test_default_corpus_size() -> None:
    from part3_pretrain import corpus

    assert PretrainConfig().n_docs == corpus.DIALOGUE_N_DOCS


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--lr", "-0.1"], "--lr"),
        (["--lr", "0"], "--lr"),
        (["--lr", "abc"], "--lr"),
        (["--n-embd", "100", "--n-head", "3"], "--n-head"),
        (["--device", "tpu"], "--device"),
        (["--dtype", "float8"], "--dtype"),
        (["--max-steps", "0"], "--max-steps"),
        (["--batch-size", "1.5"], "--batch-size"),
        (["--vocab-size", "100"], "--vocab-size"),
        (["--val-fraction", "0.9"], "--val-fraction"),
        (["--decay-fraction", "0"], "--decay-fraction"),
        (["--decay-fraction", "1.5"], "--decay-fraction"),
        (["--decay-fraction", "-0.2", "--schedule", "wsd"], "--decay-fraction"),
        (["--schedule", "linear"], "--schedule"),
        (["--optimizer", "sgd"], "--optimizer"),
        (["--corpus-kind", "tweets"], "--corpus-kind"),
        (["--bogus-flag", "1"], "--bogus-flag"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path: Path, capsys, argv: list[str], option: str) -> None:
    out = tmp_path / "out"
    assert call_main(argv + ["--out-dir", str(out)]) == 2
    assert option in one_error_line(capsys)
    assert not out.exists()


def test_all_problems_reported_together(tmp_path: Path, capsys) -> None:
    assert call_main(["--lr", "-1", "--max-steps", "0", "--out-dir", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert "--lr" in line and "--max-steps" in line


def test_bad_value_from_the_real_command_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "part3_pretrain.pretrain", "--n-embd", "100", "--n-head", "3", "--out-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and "--n-embd" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "not_utf8", "blank_only"])
def test_bad_corpus_file_exit_2_naming_the_file(tmp_path: Path, capsys, kind: str) -> None:
    path = tmp_path / f"corpus_{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_utf8":
        path.write_bytes("Customer: où est ma commande?\n".encode("latin-1"))
    elif kind == "blank_only":
        path.write_text("\n \n\t\n", encoding="utf-8")
    out = tmp_path / "out"
    assert call_main(["--corpus", str(path), "--out-dir", str(out), "--device", "cpu"]) == 2
    assert str(path) in one_error_line(capsys)
    assert not out.exists()


def test_resume_without_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert call_main(["--resume", "--out-dir", str(out)]) == 2
    assert str(out / "model.pt") in one_error_line(capsys)
    assert not out.exists()


# ------------------------------------------------------------------------------ a tiny run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pretrain") / "run"
    summary = run(tiny_pretrain_config(out))
    return out, summary


def test_run_writes_every_output(finished_run) -> None:
    out, _ = finished_run
    assert {p.name for p in out.iterdir()} == OUTPUTS | STREAMS  # and no temp files
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_keys_and_values(finished_run) -> None:
    out, summary = finished_run
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk) >= {
        "corpus",
        "model",
        "steps",
        "final_train_loss",
        "final_val_loss",
        "seconds",
        "sample",
        "config",
    }
    assert on_disk["steps"] == 4
    assert math.isfinite(on_disk["final_train_loss"]) and math.isfinite(on_disk["final_val_loss"])
    assert on_disk["corpus"]["n_docs"] == 120
    assert on_disk["corpus"]["kind"] == "dialogue"
    assert on_disk["corpus"]["source"] == "generated dialogue corpus (seed 0)"
    assert on_disk["corpus"]["train_tokens"] > 0 and on_disk["corpus"]["val_tokens"] > 0
    assert on_disk["model"]["n_embd"] == 32 and on_disk["model"]["parameters"] > 0
    assert isinstance(on_disk["sample"]["greedy_reply"], str)
    assert on_disk["config"] == json.loads(json.dumps(flat_dict(tiny_pretrain_config(out))))
    cfg = tiny_pretrain_config(out)
    tokens = 4 * cfg.optim.batch_size * cfg.model.block_size  # steps x sequences x tokens, counted by the trainer
    from part3_pretrain.flops import flops_per_token
    from part3_pretrain.model import GPTConfig

    fpt = flops_per_token(GPTConfig(**{k: on_disk["model"][k] for k in GPTConfig.__dataclass_fields__}))["total"]
    assert on_disk["compute"]["training_tokens"] == tokens and on_disk["compute"]["flops_per_token"] == fpt
    assert on_disk["compute"]["tflop"] == round(tokens * fpt / 1e12, 3)


def test_metrics_one_record_per_step(finished_run) -> None:
    out, _ = finished_run
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in records if "val/loss" in r] == [2, 4]
    assert all(math.isfinite(r["train/loss"]) for r in records if "train/loss" in r)


def test_checkpoint_rebuilds_with_weights_only(finished_run) -> None:
    out, summary = finished_run
    raw = torch.load(out / "model.pt", weights_only=True)
    model, tok, ckpt = load_model(out / "model.pt")
    assert ckpt["trainer"]["step"] == 4
    assert model.config.vocab_size == tok.vocab_size == summary["model"]["vocab_size"]
    assert tok.to_str() == (out / "tokenizer.json").read_text(encoding="utf-8")
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw["model"][k]), k
    assert model.num_params() == summary["model"]["parameters"]


@pytest.mark.parametrize("stop", ["ctrl_c", "crash"])
def test_resume_equals_uninterrupted_run(finished_run, tmp_path: Path, monkeypatch, stop: str) -> None:
    """Ctrl-C before step 4 saves at step 3; a crash in step 4 leaves the step-2 checkpoint and a
    metrics record of step 3 that the resumed run must drop. Either way --resume ends exactly
    where the uninterrupted run did."""
    straight_out, _ = finished_run
    out = tmp_path / "run"
    original = trainer_mod.Trainer.train_step

    def interrupted(self, with_accuracy=True):
        if self.step == 3:
            raise KeyboardInterrupt if stop == "ctrl_c" else RuntimeError("simulated crash")
        return original(self, with_accuracy)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt if stop == "ctrl_c" else RuntimeError):
        run(tiny_pretrain_config(out, checkpoint_every=2))
    saved = torch.load(out / "model.pt", weights_only=True)["trainer"]["step"]
    assert saved == (3 if stop == "ctrl_c" else 2)
    assert max(r["step"] for r in read_metrics(out / "metrics.jsonl")) == 3
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)

    run(tiny_pretrain_config(out, checkpoint_every=2, resume=True))
    resumed = torch.load(out / "model.pt", weights_only=True)
    straight = torch.load(straight_out / "model.pt", weights_only=True)
    assert resumed["trainer"]["step"] == 4
    assert resumed["trainer"]["source"] == straight["trainer"]["source"]
    assert resumed["trainer"]["tokens_seen"] == straight["trainer"]["tokens_seen"] > 0  # the FLOP count survives
    for k, v in straight["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert without_timing(read_metrics(out / "metrics.jsonl")) == without_timing(
        read_metrics(straight_out / "metrics.jsonl")
    )


def test_muon_wsd_run_resumes_exactly(tmp_path: Path, monkeypatch) -> None:
    """--optimizer muon --schedule wsd: Ctrl-C before step 4, then --resume, ends exactly where
    the uninterrupted run does, and the logged LR is wsd's (steady, then decaying)."""
    kw = dict(optimizer="muon", schedule="wsd", decay_fraction=0.5, warmup_steps=1, checkpoint_every=2)
    straight = run(tiny_pretrain_config(tmp_path / "straight", **kw))
    assert math.isfinite(straight["final_val_loss"])
    lrs = [r["train/lr"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if "train/lr" in r]
    lr = TINY_PRETRAIN.get("lr", PretrainConfig().optim.lr)
    assert lrs == pytest.approx([lr, lr, lr, lr - 0.9 * lr / 2])  # warmup 1, steady to step 2, decay from 2 to 4

    out = tmp_path / "run"
    original = trainer_mod.Trainer.train_step

    def interrupted(self, with_accuracy=True):
        if self.step == 3:
            raise KeyboardInterrupt
        return original(self, with_accuracy)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_pretrain_config(out, **kw))
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    run(tiny_pretrain_config(out, **kw, resume=True))
    resumed = torch.load(out / "model.pt", weights_only=True)
    reference = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    assert set(resumed["trainer"]["optimizer"]) == {"muon", "adamw"}
    for k, v in reference["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert without_timing(read_metrics(out / "metrics.jsonl")) == without_timing(
        read_metrics(tmp_path / "straight" / "metrics.jsonl")
    )
    with pytest.raises(ConfigError, match="--decay-fraction 0.5 -> 0.3"):  # wsd reads it: part of the run
        run(tiny_pretrain_config(out, **{**kw, "decay_fraction": 0.3}, resume=True))


def test_resume_with_changed_settings_is_refused(finished_run, capsys) -> None:
    out, _ = finished_run
    before = (out / "model.pt").read_bytes()
    with pytest.raises(ConfigError, match="--lr"):
        run(tiny_pretrain_config(out, resume=True, lr=1e-2))
    with pytest.raises(ConfigError, match="--optimizer 'adamw' -> 'muon'"):
        run(tiny_pretrain_config(out, resume=True, optimizer="muon"))
    with pytest.raises(ConfigError, match="--schedule 'cosine' -> 'wsd'"):
        run(tiny_pretrain_config(out, resume=True, schedule="wsd"))
    with pytest.raises(ConfigError, match="--corpus-seed 0 -> 1"):
        run(tiny_pretrain_config(out, resume=True, corpus_seed=1))
    with pytest.raises(ConfigError, match="--window-start 'document' -> 'any'"):
        run(tiny_pretrain_config(out, resume=True, window_start="any"))
    with pytest.raises(ConfigError, match="--attention-scope 'document' -> 'window'"):
        run(tiny_pretrain_config(out, resume=True, attention_scope="window"))
    argv = [
        f"--{k.replace('_', '-')}"
        if v is True
        else f"--no-{k.replace('_', '-')}"
        if v is False
        else f"--{k.replace('_', '-')}={v}"
        for k, v in {**TINY_PRETRAIN, "max_steps": 8}.items()
    ]
    assert call_main(argv + ["--resume", "--out-dir", str(out)]) == 2
    assert "--max-steps" in one_error_line(capsys)
    assert (out / "model.pt").read_bytes() == before


def test_resume_of_a_cosine_run_ignores_decay_fraction(finished_run, tmp_path: Path) -> None:
    """Only wsd reads --decay-fraction: a cosine run resumes with another one."""
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    run(tiny_pretrain_config(out, resume=True, decay_fraction=0.5))


def test_window_start_any_trains_on_other_windows(finished_run, tmp_path: Path) -> None:
    """The default windows begin at document starts (training and validation); ``any`` cuts the
    stream every block: the same data, other windows, another model."""
    out, summary = finished_run
    assert tiny_pretrain_config(out).window_start == "document"
    other = run(tiny_pretrain_config(tmp_path / "any", window_start="any"))
    assert other["final_val_loss"] != summary["final_val_loss"]
    a, b = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (out, tmp_path / "any"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_attention_scope_window_trains_another_model(finished_run, tmp_path: Path) -> None:
    """By default each token attends inside its own document only (training and validation
    loss); ``--attention-scope window`` lets it see the whole window: the same windows, another
    model."""
    out, summary = finished_run
    assert tiny_pretrain_config(out).attention_scope == "document"
    other = run(tiny_pretrain_config(tmp_path / "win", attention_scope="window"))
    assert other["final_val_loss"] != summary["final_val_loss"]
    a, b = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (out, tmp_path / "win"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_small_block_size_run_finishes(tmp_path: Path) -> None:
    summary = run(tiny_pretrain_config(tmp_path / "run", block_size=32, batch_size=4, max_steps=1, eval_every=0))
    assert summary["steps"] == 1


def test_resume_of_finished_run_changes_nothing(finished_run, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    before = read_metrics(out / "metrics.jsonl")
    run(tiny_pretrain_config(out, resume=True))
    assert read_metrics(out / "metrics.jsonl") == before


def test_mix_generated_adds_the_generated_corpus_to_your_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    docs = [f"Customer: where is parcel QX-{i:05d}?\nAgent: Parcel QX-{i:05d} left our depot today." for i in range(30)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    summary = run(tiny_pretrain_config(tmp_path / "out", corpus=(str(path),), mix_generated=True))
    corpus = json.loads((tmp_path / "out" / "summary.json").read_text())["corpus"]
    assert corpus["kind"] == "mixed" and corpus["n_docs"] == TINY_PRETRAIN["n_docs"] + len(docs)
    assert corpus["source"] == f"generated dialogue corpus (seed 0) + files: {path}"
    assert math.isfinite(summary["final_val_loss"])
    with pytest.raises(ConfigError, match="--mix-generated .* give --corpus"):
        run(tiny_pretrain_config(tmp_path / "other", mix_generated=True))


def test_corpus_accepts_a_support_file_of_pairs_and_conversations(tmp_path: Path, capsys) -> None:
    fixture = Path(__file__).parent / "fixtures" / "support_mixed.jsonl"  # 54 query/response rows, 8 conversations
    run(tiny_pretrain_config(tmp_path / "out", corpus=(str(fixture),)))
    corpus = json.loads((tmp_path / "out" / "summary.json").read_text())["corpus"]
    assert corpus["kind"] == "files" and corpus["n_docs"] == 62  # one document per row
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "hi", "response": "hello"}\n{"messages": [{"role": "user", "content": "x"}]}\n')
    assert call_main(["--corpus", str(bad), "--out-dir", str(tmp_path / "bad_out"), "--device", "cpu"]) == 2
    assert f"{bad}:2: the conversation has no assistant reply" in one_error_line(capsys)
    assert not (tmp_path / "bad_out").exists()
