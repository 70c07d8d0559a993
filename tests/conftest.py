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
