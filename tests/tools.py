"""Small helpers shared by the test files: tiny pretraining configs, one-thread torch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from part3_pretrain.checkpoint import load_checkpoint
from part3_pretrain.cli import compose, flat_dict
from part3_pretrain.pretrain import PretrainConfig, run

# The tiny model and how its tests run: one layer, CPU, float32, quiet.
_TINY = dict(n_layer=1, n_head=2, n_embd=32, checkpoint_every=0, progress=False, device="cpu", dtype="float32")
# A run that trains a step in ~20 ms: the part-3 tests'.
TINY_PRETRAIN = dict(
    _TINY,
    n_docs=120,
    vocab_size=280,
    block_size=128,
    batch_size=2,
    max_steps=4,
    eval_every=2,
    eval_batches=2,
    warmup_steps=1,
    log_every=1,
)
# A base for the fine-tuning tests: more documents and a larger vocabulary.
TINY_BASE = dict(_TINY, n_docs=300, vocab_size=400, batch_size=8)


def tiny_pretrain_config(out_dir: Path, **kw) -> PretrainConfig:
    """``TINY_PRETRAIN`` writing to ``out_dir``, updated with ``kw`` (flat option names)."""
    return compose(PretrainConfig, out_dir=str(out_dir), **{**TINY_PRETRAIN, **kw})


def pretrain_tiny_base(out_dir: Path, **kw) -> Path:
    """Pretrain ``TINY_BASE`` (updated with ``kw``) into ``out_dir``; returns its model.pt."""
    run(compose(PretrainConfig, out_dir=str(out_dir), **{**TINY_BASE, **kw}))
    return Path(out_dir) / "model.pt"


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


def updated(cfg, **flat):
    """A copy of a composed config with options changed by their flat names (``dataclasses.replace``
    for nested parts), e.g. ``updated(cfg, device="cpu", lr=1e-3)``."""
    return compose(type(cfg), **{**flat_dict(cfg), **flat})


# The experiment tests' tiny grid (tests/test_experiment.py, tests/test_experiment_ray.py): 2 runs
# (Q/A and instruction prompts) of 2 epochs of about 5 steps on a 1-layer base, 40 training pairs,
# 8 validation rows (the first 4 answered at every interval evaluation), 16 test contexts.
TINY_EXPERIMENT = dict(
    name="exp",
    bases=("large",),
    prompts=("qa", "instruction"),
    adapters=("r4:c_attn",),
    epochs=(2,),
    batch_size=8,
    n_pairs=200,
    n_high_quality=40,
    n_val=8,
    n_test=16,
    val_gen_rows=4,
    max_new_tokens=16,
    n_boot=20,
    dtype="float32",
    progress=False,
    plots=False,
)


def run_weights(run_dir: Path) -> dict:
    """The model tensors of an experiment run's latest checkpoint (its state.pt)."""
    return load_checkpoint(run_dir / "state.pt")["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    """Two state dicts hold the same tensors, bit for bit."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
