"""Shared fixtures: the tiny pretrained bases that the fine-tuning tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools import one_thread, pretrain_tiny_base


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """A 1-layer base with a 192-token context (room for a prompt and a reply) for part 4's tests."""
    return pretrain_tiny_base(tmp_path_factory.mktemp("pretrain"), block_size=192, max_steps=20, eval_every=10)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """The experiment tests' base: a 128-token context, autocast as the machine has it."""
    with one_thread():
        return pretrain_tiny_base(
            tmp_path_factory.mktemp("base"),
            block_size=128,
            max_steps=30,
            warmup_steps=0,
            eval_every=0,
            eval_batches=2,
            device="auto",
            dtype="auto",
        )


@pytest.fixture(scope="session")
def long_base(tmp_path_factory) -> Path:
    """A 1-layer base with a 768-token context: room for the fixture's long answers."""
    with one_thread():
        return pretrain_tiny_base(
            tmp_path_factory.mktemp("long_base"), block_size=768, n_docs=600, max_steps=10, eval_every=0
        )


@pytest.fixture(scope="session")
def tiny_sft(pretrained, tmp_path_factory) -> Path:
    """A finished tiny ``part4_sft.sft`` run on ``pretrained`` (chat format): its output directory,
    with sft_model.pt, evaluation.json and generations.jsonl, for the tests that read them."""
    from part4_sft import sft

    out = tmp_path_factory.mktemp("tiny_sft") / "out"
    args = ["--pretrained", str(pretrained), "--out-dir", str(out), "--dataset-path", str(out.parent / "d.json")]
    args += ["--n-pairs", "120", "--n-high-quality", "24", "--n-val", "6", "--n-test", "10", "--epochs", "1"]
    args += ["--batch-size", "4", "--lr", "1e-3", "--max-new-tokens", "12", "--n-boot", "20", "--n-examples", "3"]
    args += ["--prompt-scheme", "chat"]  # the role-token format, evaluated beside the base's own
    with one_thread():
        assert sft.main([*args, "--no-progress", "--device", "cpu", "--dtype", "float32"]) == 0
    return out
