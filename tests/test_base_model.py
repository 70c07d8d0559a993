"""Tests for part4_sft/base_model.py: the one way sft and the experiment mode get a missing base."""

from __future__ import annotations

import random

import pytest

from part3_pretrain.checkpoint import CheckpointError, load_model
from part3_pretrain.cli import build_parser, config_from_namespace
from part3_pretrain.pretrain import PretrainConfig
from part4_sft.base_model import ensure_base, pretrain_command, pretrain_flags
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


def test_a_missing_default_base_is_pretrained_in_a_child_process(tmp_path, monkeypatch) -> None:
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
