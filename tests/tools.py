"""Small helpers shared by the test files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models on a shared 2-core machine gain nothing from a second
    OpenMP thread, and subprocesses started with OMP_NUM_THREADS=1 then reduce in the same order
    (bitwise-equal weights)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
