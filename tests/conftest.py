"""Shared fixtures: the tiny pretrained bases that the fine-tuning tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools import pretrain_tiny_base


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """A 1-layer base with a 192-token context (room for a prompt and a reply) for part 4's tests."""
    return pretrain_tiny_base(tmp_path_factory.mktemp("pretrain"), block_size=192, max_steps=20, eval_every=10)
