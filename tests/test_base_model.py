"""Tests for part4_sft/base_model.py: the one way sft and the experiment mode get a missing base."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from part3_pretrain.checkpoint import CheckpointError, load_model
from part3_pretrain.cli import build_parser, config_from_namespace
from part3_pretrain.pretrain import PretrainConfig
from part4_sft.base_model import ensure_base, pretrain_command, pretrain_flags, unfinished
from part4_sft.experiment.grid import BASES
from tests.tools import TINY_PRETRAIN


def test_every_base_override_is_a_part3_flag_that_parses() -> None:
    # the flags the child gets must be options of part 3's own parser, nested parts included
    for base in BASES.values():
        argv = pretrain_flags(base.pretrain)
        cfg = config_from_namespace(PretrainConfig, build_parser(PretrainConfig, "p", "").parse_args(argv))
        for key, value in base.pretrain.items():
            assert getattr(cfg.model, key, getattr(cfg, key, None)) == value
    assert pretrain_flags({"n_layer": 2, "smear_keys": False, "lr": 1e-3}) == [
        "--n-layer",
        "2",
        "--no-smear-keys",
        "--lr",
        "0.001",
    ]


@pytest.mark.parametrize("bad", [{"device": "cpu"}, {"out_dir": "x"}, {"nope": 1}])
def test_execution_and_unknown_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="not a part-3 pretraining setting"):
        pretrain_flags(bad)


def test_a_missing_path_that_is_not_the_default_is_an_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        ensure_base(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")


def test_a_missing_default_base_is_pretrained_in_a_child_process(tmp_path, monkeypatch, capsys) -> None:
    # the tiny run's settings, passed as flags like a base's overrides; the caller's RNG is untouched
    path = tmp_path / "base" / "model.pt"
    overrides = {k: v for k, v in TINY_PRETRAIN.items() if k not in ("device", "dtype", "progress")}
    assert "--n-layer" in pretrain_command(path.parent, overrides, "cpu", "float32", False)
    random.seed(7)
    expected = random.random()
    random.seed(7)
    info = ensure_base(path, path, overrides, "cpu", "float32", False, threads=1)
    assert random.random() == expected
    assert info["path"] == str(path) and info["pretrained_now"] and info["pretrain_seconds"] is not None
    model, _, _ = load_model(path)
    assert model.config.n_layer == TINY_PRETRAIN["n_layer"] and model.config.n_embd == TINY_PRETRAIN["n_embd"]
    again = ensure_base(path, path, overrides)
    assert not again["pretrained_now"]
    _interrupted_base_is_resumed_not_used(path, overrides, capsys)


def _interrupted_base_is_resumed_not_used(path: Path, overrides: dict, capsys) -> None:
    # A pretraining killed mid-run leaves its periodic checkpoint at model.pt: the default base is
    # resumed to its last step, any other path is refused with the command that finishes it.
    ckpt = torch.load(path, weights_only=True)
    max_steps = ckpt["trainer"]["config"]["max_steps"]
    ckpt["trainer"]["step"] = max_steps - 2
    torch.save(ckpt, path)
    assert unfinished(path) == (max_steps - 2, max_steps)
    with pytest.raises(CheckpointError, match=f"stopped at step {max_steps - 2} of {max_steps}.*--resume"):
        ensure_base(path, path.parent / "elsewhere.pt", overrides)
    capsys.readouterr()
    info = ensure_base(path, path, overrides, "cpu", "float32", False, threads=1)
    assert "resuming it" in capsys.readouterr().out
    assert info["pretrained_now"] and unfinished(path) is None
    assert torch.load(path, weights_only=True)["trainer"]["step"] == max_steps


def _rows(n: int, words: int) -> list[dict]:
    return [{"context": f"where is order {i}?", "response": " ".join(["fine"] * words)} for i in range(n)]


def test_data_base_plan_fits_the_longest_exchange_within_the_default_budget() -> None:
    from part3_pretrain.flops import training_flops
    from part4_sft import base_model as bm

    short, long = bm.data_base_plan(_rows(5, 20)), bm.data_base_plan(_rows(5, 20) + _rows(1, 400))
    default = PretrainConfig()
    assert short["block_size"] == default.model.block_size  # never shorter than the default base's
    assert long["block_size"] >= long["longest_exchange_tokens"] > 400 and long["block_size"] % 32 == 0
    assert bm.data_base_plan(_rows(1, 3000))["block_size"] == bm.MAX_DATA_BLOCK
    for plan in (short, long):
        model = replace(default.model, vocab_size=default.vocab_size, block_size=plan["block_size"])
        tokens = plan["max_steps"] * default.optim.batch_size * plan["block_size"]
        assert 0.99 * bm.PRETRAIN_BUDGET_TFLOP <= training_flops(model, tokens) / 1e12 <= bm.PRETRAIN_BUDGET_TFLOP
    assert long["max_steps"] < short["max_steps"]
    # the generated documents grow with the user's text, so it stays about a quarter of the corpus
    low, high = bm.GENERATED_DOCS_RANGE
    assert short["n_docs"] == low and low < bm.data_base_plan(_rows(300, 120))["n_docs"] < high


def test_data_base_pretrains_on_the_training_text_only(tmp_path, monkeypatch) -> None:
    from part4_sft import base_model as bm

    monkeypatch.setattr(bm, "DATA_BASES_DIR", str(tmp_path / "bases"))
    calls = []
    monkeypatch.setattr(bm, "ensure_base", lambda path, default, args, *a, **k: calls.append((path, args)) or {})
    train = _rows(4, 30)
    info = bm.ensure_data_base(train, "cpu", "float32", False)
    ((path, args),) = calls
    assert path == bm.data_base_dir(train, info["plan"]) / "model.pt" and args["mix_generated"]
    keys = ("block_size", "max_steps", "n_docs", "window_start", "attention_scope")
    assert all(args[k] == info["plan"][k] for k in keys)
    assert "--window-start" in bm.pretrain_flags(args) and args["window_start"] == bm.DATA_WINDOW_START
    assert "--attention-scope" in bm.pretrain_flags(args) and args["attention_scope"] == bm.DATA_ATTENTION_SCOPE
    for key, value in (("window_start", "document"), ("attention_scope", "document")):
        other = {**info["plan"], key: value}  # a base trained otherwise is not reused
        assert bm.data_base_dir(train, other) != bm.data_base_dir(train, info["plan"])
    (corpus,) = args["corpus"]
    docs = [json.loads(line)["text"] for line in Path(corpus).read_text().splitlines()]
    assert docs == [f"Customer: {r['context']}\nAgent: {r['response']}" for r in train]
    assert bm.data_base_dir(train, info["plan"]) != bm.data_base_dir(_rows(5, 30), info["plan"])


def test_data_base_is_keyed_by_the_precision_it_pretrains_in(tmp_path, monkeypatch) -> None:
    """``--dtype float32`` after a bf16 run pretrains its own base instead of reusing the bf16 one;
    ``auto`` where the CPU has no native bf16 is fp32, so it reuses the fp32 base."""
    from part3_pretrain import trainer
    from part4_sft import base_model as bm

    monkeypatch.setattr(bm, "DATA_BASES_DIR", str(tmp_path / "bases"))
    calls = []
    monkeypatch.setattr(bm, "ensure_base", lambda path, default, args, *a, **k: calls.append(path) or {})
    train = _rows(4, 30)
    plans = {dtype: bm.ensure_data_base(train, "cpu", dtype, False)["plan"] for dtype in ("float32", "bfloat16")}
    assert plans["float32"]["precision"] == "cpu float32" and plans["bfloat16"]["precision"] == "cpu bfloat16"
    assert calls[0] != calls[1]
    monkeypatch.setattr(trainer, "cpu_has_fast_bf16", lambda: False)
    assert bm.ensure_data_base(train, "cpu", "auto", False)["plan"]["precision"] == "cpu float32"
    assert calls[2] == calls[0]
