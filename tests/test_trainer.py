"""Tests for part3_pretrain.trainer (+ checkpoint, data): gradient accumulation equals one big
batch even with unequal target counts, determinism, stop/checkpoint/resume equals an uninterrupted
run (AdamW and Muon), atomic self-describing checkpoints, the LR schedules (cosine, constant, wsd),
the Muon/AdamW parameter split, and a 2-process torchrun pretraining run in which only rank 0 writes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from part3_pretrain import checkpoint as ckpt_mod
from part3_pretrain import fileio
from part3_pretrain import trainer as trainer_mod
from part3_pretrain.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    load_model,
    model_checkpoint,
)
from part3_pretrain.data import (
    TokenWindows,
    document_ids,
    document_starts,
    encode_documents,
    mean_loss,
    sequential_batches,
)
from part3_pretrain.fileio import save_atomic
from part3_pretrain.model import GPT, IGNORE_INDEX, GPTConfig, lm_loss
from part3_pretrain.tokenizer import train_tokenizer
from part3_pretrain.trainer import (
    MuonWithAdamW,
    Trainer,
    TrainerConfig,
    dist_info,
    lr_at,
    make_optimizer,
    muon_split,
)

ROOT = Path(__file__).resolve().parents[1]
V, BLOCK = 64, 16


def tiny_model(seed: int = 0, dropout: float = 0.0, vocab_size: int = V) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32, dropout=dropout))


def tcfg(**kw) -> TrainerConfig:
    base = dict(max_steps=6, lr=3e-3, device="cpu", dtype="float32", progress=False, warmup_steps=2)
    return TrainerConfig(**{**base, **kw})


def random_stream(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, n).astype(np.uint16)


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_params_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train/tokens_per_s"} for r in history]


class ListSource:
    """A BatchSource serving fixed batches in order (its position is the index)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches, self.i = batches, 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        return b

    def state_dict(self) -> dict:
        return {"i": self.i}

    def load_state_dict(self, state: dict) -> None:
        self.i = state["i"]


# ------------------------------------------------------------------------------ accumulation


def _micro_batches() -> list[dict[str, torch.Tensor]]:
    """Three micro-batches of 1, 2 and 3 rows whose target counts are very unequal (2, 10, 24)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for rows, n_ignored in ((1, 14), (2, 11), (3, 8)):
        x = torch.randint(0, V, (rows, BLOCK), generator=g)
        y = torch.randint(0, V, (rows, BLOCK), generator=g)
        y[:, :n_ignored] = IGNORE_INDEX  # a prompt-like prefix with no targets
        out.append({"input_ids": x, "labels": y})
    return out


def _one_step_grads(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Run one train_step, returning the gradients the optimizer saw."""
    seen: dict[str, torch.Tensor] = {}
    original = trainer.optimizer.step

    def step_and_record(*a, **kw):
        seen.update({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        return original(*a, **kw)

    trainer.optimizer.step = step_and_record
    trainer.stats = trainer.train_step()
    return seen


def test_dist_info_names_torchrun_environment(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_info() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info()
    assert (info.rank, info.world, info.local_rank) == (3, 4, 1)


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_grad_accumulation_equals_one_big_batch(optimizer: str) -> None:
    micro = _micro_batches()
    big = {k: torch.cat([b[k] for b in micro]) for k in micro[0]}
    cfg = dict(optimizer=optimizer, grad_clip=0.0, warmup_steps=0, weight_decay=0.1)
    acc = Trainer(tiny_model(), ListSource(micro), tcfg(grad_accum=3, **cfg))
    one = Trainer(tiny_model(), ListSource([big]), tcfg(grad_accum=1, **cfg))
    g_acc, g_one = _one_step_grads(acc), _one_step_grads(one)
    assert g_acc.keys() == g_one.keys() and g_acc
    for n in g_one:
        torch.testing.assert_close(g_acc[n], g_one[n], atol=1e-6, rtol=1e-5, msg=n)
    p_acc, p_one = params(acc.model), params(one.model)
    # Adam's first step moves a weight by lr * g / (|g| + eps): for a gradient of ~1e-9 a
    # rounding-level difference in g moves the result by ~1e-6. A wrong accumulation would be
    # off by a sizeable part of lr (3e-3), so 1e-5 still catches it.
    for n in p_one:
        torch.testing.assert_close(p_acc[n], p_one[n], atol=1e-5, rtol=0, msg=n)
    assert acc.stats.n_targets == one.stats.n_targets == 2 + 10 + 24
    assert acc.stats.loss == pytest.approx(one.stats.loss, abs=1e-6)


def test_grad_accumulation_gradient_is_mean_over_target_tokens() -> None:
    """The reference by hand: d(mean over all targets of the big batch)/d(params)."""
    micro = _micro_batches()
    trainer = Trainer(tiny_model(), ListSource(micro), tcfg(grad_accum=3, grad_clip=0.0))
    reference = tiny_model()
    big = {k: torch.cat([b[k] for b in micro]) for k in micro[0]}
    lm_loss(reference(big["input_ids"]), big["labels"]).backward()
    grads = _one_step_grads(trainer)
    for n, p in reference.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_step_without_targets_is_an_error() -> None:
    x = torch.zeros(1, BLOCK, dtype=torch.long)
    source = ListSource([{"input_ids": x, "labels": torch.full_like(x, IGNORE_INDEX)}])
    with pytest.raises(ValueError, match="no target tokens"):
        Trainer(tiny_model(), source, tcfg()).train_step()


# ------------------------------------------------------------------------------ determinism and resume


def _windows(seed: int = 0) -> TokenWindows:
    return TokenWindows(random_stream(), BLOCK, batch_size=4, seed=seed)


def _val_batches() -> list[dict[str, torch.Tensor]]:
    return sequential_batches(random_stream(400, seed=9), BLOCK, 4, 2)


def test_same_seed_gives_identical_parameters() -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        trainer = Trainer(tiny_model(seed=1, dropout=0.1), _windows(), tcfg(max_steps=4, grad_accum=2))
        history = trainer.fit()
        results.append((params(trainer.model), without_timing(history)))
    assert_params_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    other = Trainer(tiny_model(seed=2, dropout=0.1), _windows(), tcfg(max_steps=4, grad_accum=2))
    other.fit()
    assert not torch.equal(other.model.transformer.wte.weight, results[0][0]["transformer.wte.weight"])


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_equals_uninterrupted_run(tmp_path: Path, optimizer: str) -> None:
    """N steps straight == N/2, checkpoint, new Trainer/model/source, resume, N/2 more.

    Dropout is on, so the restored RNG state matters as much as weights, optimizer (Muon's
    momentum buffers as well as AdamW's moments) and data position.
    """
    val = _val_batches()
    kw = dict(max_steps=6, grad_accum=2, eval_every=2, optimizer=optimizer, weight_decay=0.1)

    def make(ckpt_path: Path, model_seed: int, **extra) -> Trainer:
        return Trainer(
            tiny_model(seed=model_seed, dropout=0.1),
            _windows(),
            tcfg(**kw, **extra),
            checkpoint_path=ckpt_path,
            evaluate=lambda m: mean_loss(m, val),
        )

    torch.manual_seed(7)
    straight = make(tmp_path / "straight.pt", model_seed=0)
    full_history = straight.fit()

    torch.manual_seed(7)
    first = make(tmp_path / "half.pt", model_seed=0, stop_after=3)
    first_history = first.fit()
    assert first.step == 3
    assert not any(r["step"] > 3 for r in first_history)

    torch.manual_seed(999)  # whatever the fresh process's RNG is, the checkpoint's wins
    second = make(tmp_path / "half.pt", model_seed=5)
    second.load_state_dict(load_checkpoint(tmp_path / "half.pt"))
    assert second.step == 3
    second_history = second.fit()

    assert_params_equal(params(straight.model), params(second.model))
    assert without_timing(full_history) == without_timing(first_history + second_history)
    assert [r["step"] for r in full_history if "val/loss" in r] == [2, 4, 6]
    final = load_checkpoint(tmp_path / "half.pt")
    assert final["trainer"]["step"] == 6
    assert_params_equal(final["model"], params(straight.model))


def test_token_windows_resume_reads_the_same_windows() -> None:
    a, b = _windows(seed=3), _windows(seed=3)
    ref = [a.next_batch()["input_ids"] for _ in range(200)]  # crosses several epochs
    for _ in range(77):
        b.next_batch()
    c = _windows(seed=3)
    c.load_state_dict(b.state_dict())
    assert all(torch.equal(c.next_batch()["input_ids"], r) for r in ref[77:])


def test_token_windows_ranks_split_the_global_batch() -> None:
    whole = _windows()
    ranks = [TokenWindows(random_stream(), BLOCK, batch_size=2, seed=0, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(10):
        w = whole.next_batch()
        parts = [r.next_batch() for r in ranks]
        assert torch.equal(w["input_ids"], torch.cat([p["input_ids"] for p in parts]))
        assert torch.equal(w["input_ids"][:, 1:], w["labels"][:, :-1])


def test_document_windows_begin_at_document_starts_and_resume() -> None:
    """With ``document_starts`` every document's first token starts a window, a document longer
    than a window gets one every BLOCK tokens after that (no text unread) and no window starts
    anywhere else; each start serves once per epoch, and a resumed source reads the same windows."""
    eos = V - 1
    rng = np.random.default_rng(0)
    stream = np.concatenate([np.append(rng.integers(0, eos, rng.integers(3, 3 * BLOCK)), eos) for _ in range(120)])
    stream = stream.astype(np.uint16)
    starts = document_starts(stream, eos, BLOCK)
    begins = {0} | {int(i) + 1 for i in np.flatnonzero(stream == eos) if i + BLOCK + 2 <= len(stream)}
    inside = [int(s) for s in starts if s not in begins]
    assert begins <= set(starts.tolist()) and inside  # every document start, and some long documents
    assert all(s - BLOCK in set(starts.tolist()) and eos not in stream[s - BLOCK : s - 1] for s in inside)
    assert all(s + BLOCK + 1 <= len(stream) for s in starts)
    where = {tuple(stream[s : s + BLOCK].tolist()): int(s) for s in starts}
    source = TokenWindows(stream, BLOCK, batch_size=4, seed=1, starts=starts)
    seen = []
    for _ in range(len(starts) // 4):
        batch = source.next_batch()
        assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
        seen += [where[tuple(row.tolist())] for row in batch["input_ids"]]
    assert len(set(seen)) == len(seen) == len(starts) // 4 * 4  # every window a document start, none twice
    again = TokenWindows(stream, BLOCK, batch_size=4, seed=1, starts=starts)
    again.load_state_dict(source.state_dict())
    assert torch.equal(again.next_batch()["input_ids"], source.next_batch()["input_ids"])


def test_windows_with_eos_carry_the_document_of_every_token() -> None:
    """With ``eos_id`` training and validation batches say which document each input token
    belongs to: 0 up to and including the first EOS, 1 after it, and so on."""
    eos = V - 1
    stream = np.tile(np.array([5, 6, eos, 7, eos, 8, 9, 10, eos], dtype=np.uint16), 40)
    starts = document_starts(stream, eos, BLOCK)
    batch = TokenWindows(stream, BLOCK, batch_size=4, seed=0, starts=starts, eos_id=eos).next_batch()
    for ids, docs in zip(batch["input_ids"].tolist(), batch["doc_ids"].tolist(), strict=True):
        expected, d = [], 0
        for t in ids:
            expected.append(d)
            d += t == eos
        assert docs == expected and docs[0] == 0 and docs[-1] > 0
    assert "doc_ids" not in TokenWindows(stream, BLOCK, batch_size=4, seed=0, starts=starts).next_batch()
    val = sequential_batches(stream, BLOCK, 4, 2, starts, eos_id=eos)
    assert all(torch.equal(b["doc_ids"], document_ids(b["input_ids"], eos)) for b in val)


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["Customer: where is my order?", "Agent: it ships today."] * 3, 270)


def test_trainer_checkpoint_rebuilds_model(tmp_path: Path, tokenizer) -> None:
    model = tiny_model(vocab_size=tokenizer.vocab_size)
    tokens = encode_documents(["Customer: where is my order? Agent: it ships today."] * 30, tokenizer)
    meta = {"model_config": model.config.to_dict(), "tokenizer": tokenizer.to_str()}
    trainer = Trainer(
        model,
        TokenWindows(tokens, BLOCK, 2),
        tcfg(max_steps=2),
        checkpoint_path=tmp_path / "run" / "model.pt",
        checkpoint_meta=meta,
    )
    trainer.fit()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.pt"]  # no temp files
    raw = torch.load(tmp_path / "run" / "model.pt", weights_only=True)  # plain data only
    assert raw["trainer"]["step"] == 2
    rebuilt, tok, _ = load_model(tmp_path / "run" / "model.pt")
    assert_params_equal(params(rebuilt), params(trainer.model))
    assert rebuilt.lm_head.weight is rebuilt.transformer.wte.weight
    assert tok.to_str() == tokenizer.to_str()


def test_save_atomic_leaves_old_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.pt"
    save_atomic({"format": ckpt_mod.FORMAT, "x": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(fileio.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"format": ckpt_mod.FORMAT, "x": torch.zeros(3)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))


def test_build_model_rejects_vocab_mismatch(tokenizer) -> None:
    model = tiny_model(vocab_size=tokenizer.vocab_size + 1)
    with pytest.raises(CheckpointError, match="vocab_size"):
        build_model(model_checkpoint(model, tokenizer), "ckpt.pt")


def test_build_model_is_strict(tokenizer) -> None:
    model = tiny_model(vocab_size=tokenizer.vocab_size)
    ckpt = model_checkpoint(model, tokenizer)
    ckpt["model"] = {**ckpt["model"], "transformer.extra": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="ckpt.pt"):
        build_model(ckpt, "ckpt.pt")
    ckpt = model_checkpoint(model, tokenizer)
    ckpt["model_config"] = {**ckpt["model_config"], "n_embd": 64}
    with pytest.raises(CheckpointError):
        build_model(ckpt, "ckpt.pt")


class _NotPlainData:
    pass


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "pickled_object", "wrong_format", "missing"])
def test_bad_checkpoint_files_raise_checkpoint_error(tmp_path: Path, tokenizer, kind: str) -> None:
    path = tmp_path / "model.pt"
    good = model_checkpoint(tiny_model(vocab_size=tokenizer.vocab_size), tokenizer)
    if kind == "truncated":
        save_atomic(good, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "garbage":
        path.write_bytes(b"\x00not a zip" * 50)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled_object":
        torch.save({**good, "extra": _NotPlainData()}, path)
    elif kind == "wrong_format":
        torch.save({"model": good["model"]}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ LR schedule


def test_warmup_then_cosine_reaches_min_lr() -> None:
    cfg = tcfg(max_steps=50, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps + 1)]
    assert lrs[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # decays monotonically after warmup
    assert lrs[30] == pytest.approx(1e-4 + 0.5 * 9e-4)  # half-way: the mean of lr and min_lr
    assert lrs[50] == pytest.approx(1e-4)
    assert min(lrs[10:]) >= 1e-4 - 1e-12


def test_constant_schedule() -> None:
    cfg = tcfg(max_steps=20, lr=5e-4, warmup_steps=4, schedule="constant")
    assert [lr_at(s, cfg) for s in range(4)] == pytest.approx([1.25e-4, 2.5e-4, 3.75e-4, 5e-4])
    assert all(lr_at(s, cfg) == 5e-4 for s in range(4, 21))
    assert lr_at(0, tcfg(warmup_steps=0, schedule="constant", lr=5e-4)) == 5e-4


def test_logged_lr_follows_schedule() -> None:
    trainer = Trainer(tiny_model(), _windows(), tcfg(max_steps=5, warmup_steps=2, min_lr_ratio=0.0))
    history = trainer.fit()
    logged = [r["train/lr"] for r in history if "train/lr" in r]
    assert logged == pytest.approx([lr_at(s, trainer.cfg) for s in range(5)])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(4, trainer.cfg))


def test_wsd_schedule_key_steps() -> None:
    """Warmup 10, stable until 80 (the last 20% of 100 steps decay), linear to lr * 0.1 at 100."""
    cfg = tcfg(max_steps=100, lr=1e-3, warmup_steps=10, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps + 1)]
    assert lrs[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert all(lr == 1e-3 for lr in lrs[9:81])  # peak from the end of warmup to the decay's start
    assert lrs[90] == pytest.approx(5.5e-4)  # half-way through the decay: the mean of lr and min_lr
    assert lrs[99] == pytest.approx(1e-4 + 9e-4 / 20)  # the last trained step
    assert lrs[100] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:], strict=False))  # strictly decreasing while it decays
    # a decay that would start inside the warmup starts when the warmup ends
    short = tcfg(max_steps=10, lr=1e-3, warmup_steps=5, schedule="wsd", decay_fraction=1.0, min_lr_ratio=0.0)
    assert [lr_at(s, short) for s in range(11)] == pytest.approx(
        [2e-4, 4e-4, 6e-4, 8e-4, 1e-3, 1e-3, 8e-4, 6e-4, 4e-4, 2e-4, 0.0]
    )


def test_unknown_schedule_or_optimizer_is_an_error() -> None:
    with pytest.raises(ValueError, match="schedule"):
        lr_at(3, tcfg(schedule="linear"))
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(tiny_model(), tcfg(optimizer="sgd"), torch.device("cpu"))


# ------------------------------------------------------------------------------ Muon


def test_muon_split_hidden_matrices_vs_the_rest() -> None:
    model = tiny_model()
    hidden, rest = muon_split(model)
    assert [n for n, _ in hidden] == [
        f"transformer.h.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    rest_names = [n for n, _ in rest]
    assert rest_names[:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert all(p.ndim == 1 for _, p in rest[2:])  # norm gains and biases
    assert "lm_head.weight" not in rest_names  # tied to wte: the one tensor appears once
    everything = [id(p) for _, p in hidden + rest]
    assert sorted(everything) == sorted(id(p) for p in model.parameters())  # each exactly once

    opt = make_optimizer(model, tcfg(optimizer="muon", weight_decay=0.1), torch.device("cpu"))
    assert isinstance(opt, MuonWithAdamW)
    muon, adamw = opt.optimizers["muon"], opt.optimizers["adamw"]
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert [id(p) for p in muon.param_groups[0]["params"]] == [id(p) for _, p in hidden]
    assert muon.param_groups[0]["weight_decay"] == 0.1
    assert muon.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    decay, no_decay = adamw.param_groups
    assert [id(p) for p in decay["params"]] == [id(model.transformer.wte.weight), id(model.transformer.wpe.weight)]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in no_decay["params"]] == [id(p) for _, p in rest[2:]]
    assert opt.param_groups == muon.param_groups + adamw.param_groups


def test_muon_skips_frozen_parameters() -> None:
    """LoRA fine-tuning: the frozen base weights go to neither optimizer, the adapters to Muon."""
    from part4_sft.lora import LoRAConfig, apply_lora, lora_parameters

    model = tiny_model()
    apply_lora(model, LoRAConfig(r=4, targets=("c_attn",)))
    hidden, rest = muon_split(model)
    assert {n for n, _ in hidden} == set(lora_parameters(model)) and rest == []
    trainer = Trainer(model, _windows(), tcfg(optimizer="muon", max_steps=2))
    before = params(trainer.model)
    trainer.fit()
    after = params(trainer.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(lora_parameters(model))


def _periodic_windows() -> TokenWindows:
    """A stream that repeats a 40-token sequence: learnable, unlike ``random_stream``."""
    period = np.random.default_rng(0).integers(0, V, 40)
    return TokenWindows(np.tile(period, 50).astype(np.uint16), BLOCK, batch_size=8, seed=0)


def test_muon_trains_a_tiny_model() -> None:
    trainer = Trainer(
        tiny_model(),
        _periodic_windows(),
        tcfg(optimizer="muon", max_steps=30, warmup_steps=3, lr=1e-2, weight_decay=0.1),
    )
    losses = [r["train/loss"] for r in trainer.fit() if "train/loss" in r]
    assert losses[0] > math.log(V) - 0.3  # starts near chance (4.16)
    assert sum(losses[-5:]) / 5 < 2.0, losses  # measured 0.84 (AdamW at the same settings: 0.79)
    # every group (Muon's, AdamW's two) follows the one schedule
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([lr_at(29, trainer.cfg)] * 3)


# ------------------------------------------------------------------------------ DDP


def _run_killing_group(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` that, on timeout, kills the whole process group (torchrun's workers
    included) instead of orphaning them."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _torchrun_pretrain_cmd(out: Path) -> list[str]:
    """``torchrun --nproc_per_node=2`` of a tiny 6-step CPU pretraining run writing to ``out``."""
    # block 64: the summary's sample prompt must fit in the context (see pretrain.greedy_reply)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "part3_pretrain.pretrain",
        "--n-docs",
        "200",
        "--vocab-size",
        "300",
        "--n-layer",
        "1",
        "--n-embd",
        "32",
        "--n-head",
        "2",
        "--block-size",
        "64",
        "--batch-size",
        "4",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--eval-batches",
        "2",
        "--warmup-steps",
        "1",
        "--log-every",
        "1",
        "--no-progress",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--out-dir",
        str(out),
    ]


def _assert_one_record_per_step(out: Path) -> None:
    """metrics.jsonl holds one train record per step and one val record per eval: rank 1 wrote none."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train/loss" in r]
    val_steps = [r["step"] for r in records if "val/loss" in r]
    assert train_steps == [1, 2, 3, 4, 5, 6]  # one record per step: rank 1 wrote nothing
    assert val_steps == [3, 6]
    assert len(records) == 8


def _assert_summary_and_checkpoint(out: Path) -> None:
    """summary.json and model.pt: 6 steps, finite losses, a source index counting both ranks' batches."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6
    assert math.isfinite(summary["final_train_loss"]) and math.isfinite(summary["final_val_loss"])
    model, tok, ckpt = load_model(out / "model.pt")
    assert ckpt["trainer"]["step"] == 6
    assert ckpt["trainer"]["source"]["index"] == 6 * 4 * 2  # both ranks' shares of every batch
    assert model.config.vocab_size == tok.vocab_size <= 300


def test_torchrun_two_processes_only_rank0_writes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = _torchrun_pretrain_cmd(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = _run_killing_group(cmd, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("wrote:") == 1  # only rank 0 summarises
    assert proc.stdout.count("model: ") == 1
    expected = {"model.pt", "tokenizer.json", "metrics.jsonl", "loss_curve.png", "summary.json", "train.bin", "val.bin"}
    assert {p.name for p in out.iterdir()} == expected  # no temp files, nothing per rank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing outside --out-dir
    _assert_one_record_per_step(out)
    _assert_summary_and_checkpoint(out)


def test_native_bf16_means_the_instructions_not_onednn_emulation(monkeypatch) -> None:
    """An AVX-512 core without AVX-512 BF16 and AMX runs bf16 emulated (2x slower than fp32 on
    such a Xeon): ``--dtype auto`` must see no native bf16 there, whatever oneDNN says it can run."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    for bf16, amx, native in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert trainer_mod.cpu_has_fast_bf16() is native
        want = torch.bfloat16 if native else torch.float32
        assert trainer_mod.resolve_dtype("auto", torch.device("cpu"), 960) == want
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # an older torch: /proc/cpuinfo decides
    monkeypatch.setattr(trainer_mod, "_cpuinfo_flags", lambda: {"avx512f", "avx512bw"})
    assert trainer_mod.cpu_has_fast_bf16() is False
    monkeypatch.setattr(trainer_mod, "_cpuinfo_flags", lambda: {"avx512f", "avx512_bf16"})
    assert trainer_mod.cpu_has_fast_bf16() is True


def test_auto_dtype_runs_small_cpu_steps_in_fp32(monkeypatch) -> None:
    """``--dtype auto`` on a CPU with native bf16: bf16 for large steps (pretraining), fp32 for
    steps under AUTO_BF16_MIN_TOKENS (batch-1 fine-tuning), where bench/speed_paths.py measured
    fp32 faster; an explicit dtype and a CPU without native bf16 are not affected."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer_mod, "cpu_has_fast_bf16", lambda: True)
    small, large = trainer_mod.AUTO_BF16_MIN_TOKENS - 1, trainer_mod.AUTO_BF16_MIN_TOKENS
    assert trainer_mod.resolve_dtype("auto", cpu, 6 * 160) == torch.bfloat16
    assert trainer_mod.resolve_dtype("auto", cpu, large) == torch.bfloat16
    assert trainer_mod.resolve_dtype("auto", cpu, small) == torch.float32
    assert trainer_mod.resolve_dtype("auto", cpu, 1 * 160) == torch.float32
    assert trainer_mod.resolve_dtype("auto", cpu) == torch.bfloat16  # step size unknown
    assert trainer_mod.resolve_dtype("bfloat16", cpu, 160) == torch.bfloat16
    assert trainer_mod.resolve_dtype("float32", cpu, 960) == torch.float32
    assert "faster in fp32" in trainer_mod.describe_dtype("auto", torch.float32, cpu, 160)
    assert "native bf16" in trainer_mod.describe_dtype("auto", torch.bfloat16, cpu, 960)
    assert trainer_mod.describe_dtype("bfloat16", torch.bfloat16, cpu, 160) == "bfloat16 (--dtype bfloat16)"
    monkeypatch.setattr(trainer_mod, "cpu_has_fast_bf16", lambda: False)
    assert trainer_mod.resolve_dtype("auto", cpu, 960) == torch.float32
    assert "no native bf16" in trainer_mod.describe_dtype("auto", torch.float32, cpu, 960)
