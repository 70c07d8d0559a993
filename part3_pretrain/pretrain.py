"""``python -m part3_pretrain.pretrain``: corpus -> tokenizer -> GPT -> pretrained checkpoint.

Generates the retail corpus (or reads ``--corpus`` files), trains the byte-level BPE, writes the
token streams, pretrains the hand-written GPT with the shared trainer and writes, into
``--out-dir``: ``model.pt`` (resumable checkpoint), ``tokenizer.json``, ``metrics.jsonl``,
``loss_curve.png`` and ``summary.json`` (corpus size, losses, wall time, a sample reply).
Runs unchanged under ``torchrun --nproc_per_node=N``; only rank 0 writes.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import corpus as corpus_mod
from .checkpoint import CheckpointError, load_checkpoint, write_text_atomic
from .cli import ConfigError, below, check_config, option, run_main
from .data import (TokenWindows, encode_documents, mean_loss, read_tokens, sequential_batches,
                   split_documents, write_tokens)
from .generate import generate
from .model import GPT, GPTConfig
from .plot import plot_losses
from .sink import MetricsSink, read_metrics
from .slots import find_heldout_leaks
from .tokenizer import RetailTokenizer, TokenizerError, train_tokenizer
from .trainer import (DEVICES, DTYPES, OPTIMIZERS, Trainer, TrainerConfig, TrainingDiverged, barrier,
                      dist_info)

PROG = "python -m part3_pretrain.pretrain"
SAMPLE_PROMPT = "Customer: Hi, my order #A1234 still hasn't arrived and it was due on Monday.\nAgent:"


@dataclass
class PretrainConfig:
    """Everything ``python -m part3_pretrain.pretrain`` does; defaults finish in ~4 min on 2 CPU cores."""

    out_dir: str = option("checkpoints/pretrain", "directory for model.pt, tokenizer.json, metrics and plots")
    corpus: tuple[str, ...] = option((), "your own .txt/.jsonl files instead of the generated corpus", metavar="PATH")
    n_docs: int = option(corpus_mod.DEFAULT_N_DOCS, "documents in the generated corpus")
    corpus_seed: int = option(0, "seed of the generated corpus")
    val_fraction: float = option(0.02, "share of documents held out for validation loss")
    vocab_size: int = option(4096, "BPE vocabulary size, special tokens included")
    block_size: int = option(128, "context length in tokens")
    n_layer: int = option(4, "transformer blocks")
    n_head: int = option(4, "attention heads")
    n_embd: int = option(256, "embedding width")
    dropout: float = option(0.0, "dropout probability")
    batch_size: int = option(16, "sequences per micro-batch (per process)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    max_steps: int = option(1400, "optimizer steps")
    lr: float = option(2e-3, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final LR as a fraction of --lr (cosine decay)")
    warmup_steps: int = option(50, "linear warmup steps")
    weight_decay: float = option(0.1, "AdamW weight decay (matrices only)")
    grad_clip: float = option(1.0, "gradient-norm clip; 0 disables")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    eval_every: int = option(200, "steps between validation losses")
    log_every: int = option(10, "steps between train-loss records in metrics.jsonl")
    eval_batches: int = option(8, "validation batches per evaluation")
    checkpoint_every: int = option(200, "steps between checkpoints (also written at the end and on Ctrl-C)")
    device: str = option("auto", "device", choices=DEVICES)
    dtype: str = option("auto", "autocast dtype (auto: bf16 where the hardware has it)", choices=DTYPES)
    compile: bool = option(False, "torch.compile the model")
    seed: int = option(0, "seed for init and data order")
    resume: bool = option(False, "continue the run in --out-dir from its checkpoint")
    progress: bool = option(True, "show a progress bar")

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout)

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(
            max_steps=self.max_steps, lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps, schedule="cosine", min_lr_ratio=self.min_lr_ratio,
            grad_clip=self.grad_clip, grad_accum=self.grad_accum, eval_every=self.eval_every,
            log_every=self.log_every,
            checkpoint_every=self.checkpoint_every, device=self.device, dtype=self.dtype,
            compile=self.compile, progress=self.progress, desc="pretrain")

    def problems(self) -> list[str]:
        p = below(self, ("n_docs", "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "batch_size",
                         "grad_accum", "max_steps", "eval_batches", "log_every"), 1)
        p += below(self, ("warmup_steps", "weight_decay", "grad_clip", "eval_every", "checkpoint_every"), 0)
        p += below(self, ("lr",), 0, strict=True)
        if not 0 <= self.min_lr_ratio <= 1:
            p.append(f"--min-lr-ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if not 0 < self.val_fraction < 0.5:
            p.append(f"--val-fraction must be in (0, 0.5) (got {self.val_fraction})")
        if self.n_head >= 1 and self.n_embd % self.n_head:
            p.append(f"--n-embd ({self.n_embd}) must be divisible by --n-head ({self.n_head})")
        if not 0 <= self.dropout < 1:
            p.append(f"--dropout must be in [0, 1) (got {self.dropout})")
        if not 260 <= self.vocab_size <= 65536:
            p.append(f"--vocab-size must be in [260, 65536] (got {self.vocab_size})")
        return p


# ---------------------------------------------------------------------------------------------
# steps of a run


def load_documents(cfg: PretrainConfig) -> tuple[list[str], str]:
    if cfg.corpus:
        return corpus_mod.load_corpus_files(cfg.corpus), "files: " + ", ".join(cfg.corpus)
    return corpus_mod.generate_corpus(cfg.n_docs, seed=cfg.corpus_seed), f"generated (seed {cfg.corpus_seed})"


def prepare_tokenizer(cfg: PretrainConfig, train_docs: list[str], out: Path,
                      resume_ckpt: dict | None) -> RetailTokenizer:
    """Train the BPE on rank 0 (others wait and read it), or reuse the one a resumed run saved."""
    if resume_ckpt is not None:
        return RetailTokenizer.from_str(resume_ckpt["tokenizer"])
    if dist_info()[0] == 0:
        train_tokenizer(train_docs, cfg.vocab_size).save(out / "tokenizer.json")
    barrier()
    return RetailTokenizer.load(out / "tokenizer.json")


def prepare_streams(train_docs: list[str], val_docs: list[str], tok: RetailTokenizer, out: Path):
    if dist_info()[0] == 0:
        write_tokens(encode_documents(train_docs, tok), out / "train.bin")
        write_tokens(encode_documents(val_docs, tok), out / "val.bin")
    barrier()
    return read_tokens(out / "train.bin"), read_tokens(out / "val.bin")


def check_resumable(cfg: PretrainConfig, ckpt: dict, path: Path) -> None:
    """Refuse to resume with settings that would make the continued run a different run."""
    saved = ckpt.get("pretrain_config", {})
    same = ("n_docs", "corpus", "corpus_seed", "val_fraction", "vocab_size", "block_size", "n_layer",
            "n_head", "n_embd", "batch_size", "grad_accum", "max_steps", "lr", "seed")
    diff = [k for k in same if k in saved and _norm(saved[k]) != _norm(getattr(cfg, k))]
    if diff:
        raise ConfigError(f"{path}: cannot resume with changed settings: " +
                          ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {getattr(cfg, k)!r}" for k in diff))


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def greedy_reply(model: GPT, tok: RetailTokenizer, prompt: str = SAMPLE_PROMPT, n: int = 48) -> str:
    """The model's greedy continuation of an agent turn (prompt cut from the left to fit)."""
    n = min(n, model.config.block_size // 2)
    ids = tok.encode(prompt)[-(model.config.block_size - n):]
    res = generate(model, [ids], eos_id=tok.eos_id, pad_id=tok.pad_id, max_new_tokens=n, temperature=0.0)[0]
    return tok.decode(res.tokens).split("\nCustomer:")[0].strip()


# ---------------------------------------------------------------------------------------------


def run(cfg: PretrainConfig) -> dict:
    """Pretrain as configured; returns the summary dict (also written to summary.json)."""
    check_config(cfg)
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    ckpt_path = out / "model.pt"
    resume_ckpt = None
    if cfg.resume:
        resume_ckpt = load_checkpoint(ckpt_path)
        check_resumable(cfg, resume_ckpt, ckpt_path)
    rank = dist_info()[0]
    docs, source_desc = load_documents(cfg)
    train_docs, val_docs = split_documents(docs, cfg.val_fraction, cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    tok = prepare_tokenizer(cfg, train_docs, out, resume_ckpt)
    train_tokens, val_tokens = prepare_streams(train_docs, val_docs, tok, out)
    t_data = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(tok.vocab_size))
    if rank == 0:
        print(f"model: {model.num_params():,} parameters ({model.num_params(non_embedding=True):,} "
              f"without position embeddings); corpus: {len(docs):,} docs, {len(train_tokens):,} train "
              f"tokens, {len(val_tokens):,} val tokens", flush=True)
    world = dist_info()[1]
    source = TokenWindows(train_tokens, cfg.block_size, cfg.batch_size, cfg.seed, rank, world)
    val_batches = sequential_batches(val_tokens, cfg.block_size, cfg.batch_size, cfg.eval_batches)
    sink = MetricsSink(out / "metrics.jsonl", enabled=rank == 0,
                       resume_step=resume_ckpt["trainer"]["step"] if resume_ckpt else None)
    # Part 4 evaluates on held-out slot values: record that this corpus holds none of them
    # (checked on the text, whatever its source), so fine-tuning can refuse a leaky base model.
    leaks = find_heldout_leaks(docs) if rank == 0 else []
    meta = {"model_config": model.config.to_dict(), "tokenizer": tok.to_str(),
            "pretrain_config": {k: _norm(v) for k, v in asdict(cfg).items()}, "corpus_heldout_leaks": leaks}
    trainer = Trainer(model, source, cfg.trainer_config(), sink=sink, checkpoint_path=ckpt_path,
                      checkpoint_meta=meta, evaluate=lambda m: mean_loss(m, val_batches))
    if resume_ckpt is not None:
        trainer.load_state_dict(resume_ckpt)
    t_train = time.perf_counter()
    trainer.fit()
    t_train = time.perf_counter() - t_train
    sink.close()
    if rank != 0:
        return {}
    return _finish(cfg, out, model, tok, docs, source_desc, train_tokens, val_tokens,
                   t_data, t_train, time.perf_counter() - t0)


def _finish(cfg, out, model, tok, docs, source_desc, train_tokens, val_tokens,
            t_data, t_train, t_total) -> dict:
    plot_losses([(out / "metrics.jsonl", "Pretraining", "validation loss")], out / "loss_curve.png")
    # The metrics file, not this process's history: after --resume it holds the whole run.
    records = read_metrics(out / "metrics.jsonl")
    train_losses = [r["train/loss"] for r in records if "train/loss" in r]
    val_losses = [r["val/loss"] for r in records if "val/loss" in r]
    stats = corpus_mod.corpus_stats(docs)
    summary = {
        "corpus": {"source": source_desc, **stats, "train_tokens": int(len(train_tokens)),
                   "val_tokens": int(len(val_tokens))},
        "model": {"parameters": model.num_params(), **model.config.to_dict()},
        "steps": records[-1]["step"] if records else 0,
        "final_train_loss": sum(train_losses[-20:]) / max(1, len(train_losses[-20:])) if train_losses else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
        "seconds": {"data_and_tokenizer": round(t_data, 1), "training": round(t_train, 1),
                    "total": round(t_total, 1)},
        "sample": {"prompt": SAMPLE_PROMPT, "greedy_reply": greedy_reply(model, tok)},
        "config": {k: _norm(v) for k, v in asdict(cfg).items()},
    }
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict, out: Path) -> None:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"\ntrain loss (mean of last 20 steps) {fmt(summary['final_train_loss'])}, "
          f"val loss {fmt(summary['final_val_loss'])}, {summary['seconds']['total']:.0f} s total")
    print(f"sample reply: {summary['sample']['greedy_reply']!r}")
    print("wrote:")
    for name in ("model.pt", "tokenizer.json", "metrics.jsonl", "loss_curve.png", "summary.json"):
        print(f"  {out / name}")


USER_ERRORS = (ConfigError, CheckpointError, TokenizerError, corpus_mod.CorpusError, TrainingDiverged)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PretrainConfig, argv, PROG, __doc__.splitlines()[0], run, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
