"""``python -m part3_pretrain.pretrain``: corpus -> tokenizer -> GPT -> pretrained checkpoint.

Generates the retail corpus (``--corpus-kind``: by default "dialogue", documents in the SFT
generator's wording with open-ended slot values; see ``corpus``) or reads ``--corpus`` files,
trains the byte-level BPE, writes the
token streams, pretrains the hand-written GPT with the shared trainer and writes, into
``--out-dir``: ``model.pt`` (resumable checkpoint), ``tokenizer.json``, ``metrics.jsonl``,
``loss_curve.png`` and ``summary.json`` (corpus size, losses, wall time, a sample reply).
Runs unchanged under ``torchrun --nproc_per_node=N``; only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import corpus as corpus_mod
from .checkpoint import CheckpointError, load_checkpoint
from .cli import ConfigError, below, check_config, flat_dict, option, part, refuse_changed, run_main
from .configs import ExecConfig, OptimConfig
from .data import (
    TokenWindows,
    document_starts,
    encode_documents,
    mean_loss,
    read_tokens,
    sequential_batches,
    split_documents,
    write_tokens,
)
from .datafile import DataError
from .fileio import remove_stale_temps, write_text_atomic
from .flops import FORMULA, flops_per_token, training_flops
from .generate import generate
from .model import GPT, GPTConfig
from .plot import plot_losses
from .sink import MetricsSink, read_metrics
from .slots import find_heldout_leaks
from .tokenizer import RetailTokenizer, TokenizerError, train_tokenizer
from .trainer import (
    Trainer,
    TrainerConfig,
    TrainingDiverged,
    barrier,
    close_distributed,
    dist_info,
)

PROG = "python -m part3_pretrain.pretrain"
DEFAULT_OUT_DIR = "checkpoints/pretrain"
SAMPLE_PROMPT = "Customer: Hi, my order #A1234 still hasn't arrived and it was due on Monday.\nAgent:"


WINDOW_STARTS = ("any", "document")
ATTENTION_SCOPES = ("window", "document")
MODEL_HELP = {
    "block_size": "context length in tokens",
    "n_layer": "transformer blocks",
    "n_head": "attention heads",
    "n_embd": "embedding width",
    "dropout": "dropout probability",
    "smear_keys": "smeared keys: each attention key mixes in its predecessor's, so one layer "
    "can copy what followed a token earlier in the message (model.py)",
    "smear_init": "initial gate logit of the smeared keys (sigmoid of it is the key's own share; "
    "negative: keys start as their predecessor's, the prior of a copying head)",
}
OPTIM_HELP = {
    "batch_size": "sequences per micro-batch (per process)",
    "schedule": "LR schedule after warmup (wsd: constant, then linear decay over the last "
    "--decay-fraction of the steps)",
    "decay_fraction": "share of --max-steps at the end in which wsd decays to --lr x --min-lr-ratio",
    "weight_decay": "decoupled weight decay of AdamW and Muon (matrices only)",
    "optimizer": "optimizer (muon: Muon for the blocks' weight matrices, AdamW for embeddings, "
    "norms and biases, at the same --lr)",
}


@dataclass
class PretrainConfig:
    """Everything ``python -m part3_pretrain.pretrain`` does; defaults: 30 TFLOP, ~5.5 min on 2 AVX-512 cores."""

    out_dir: str = option(DEFAULT_OUT_DIR, "directory for model.pt, tokenizer.json, metrics and plots")
    corpus: tuple[str, ...] = option(
        (),
        "your own files instead of the generated corpus: .txt (blank-line separated), .jsonl/.json/.csv "
        '({"text"} rows, support pairs or "messages" conversations)',
        metavar="PATH",
    )
    mix_generated: bool = option(False, "with --corpus: add the generated corpus (--n-docs documents) to your files")
    n_docs: int = option(corpus_mod.DIALOGUE_N_DOCS, "documents in the generated corpus")
    corpus_seed: int = option(0, "seed of the generated corpus")
    documents_share: float = option(
        corpus_mod.DOCUMENTS_SHARE,
        "share of the generated corpus that is other retail documents (confirmations, notices, tickets, "
        "forms, invoices, chats); the rest two thirds exchanges, one third drills",
    )
    val_fraction: float = option(0.02, "share of documents held out for validation loss")
    vocab_size: int = option(2048, "BPE vocabulary size, special tokens included")
    split_digits: bool = option(True, "tokenize every digit on its own (ids and amounts copy digit by digit)")
    model: GPTConfig = part(
        GPTConfig(
            vocab_size=2048,
            block_size=160,
            n_layer=4,
            n_head=4,
            n_embd=128,
            dropout=0.0,
            smear_keys=True,
            smear_init=-2.0,
        ),
        omit=("vocab_size", "bias", "layer_norm_epsilon"),  # the vocabulary is the tokenizer's
        help=MODEL_HELP,
        checked=False,  # problems() below names the flags
    )
    optim: OptimConfig = part(
        OptimConfig(lr=5e-3, warmup_steps=50, weight_decay=0.1, batch_size=6),
        help=OPTIM_HELP,
    )
    max_steps: int = option(4296, "optimizer steps")
    window_start: str = option(
        "document",
        "where training windows begin: document (at a document's first token, and every --block-size "
        "tokens into a longer one, so every prediction sees its document's start) or any (the stream "
        "cut every --block-size tokens, mostly inside a document)",
        choices=WINDOW_STARTS,
    )
    attention_scope: str = option(
        "document",
        "what a training token attends to: window (every earlier token of its window, across "
        "document ends) or document (only its own document, positions counted from the document's "
        "first token, as when the model answers one message)",
        choices=ATTENTION_SCOPES,
    )
    eval_every: int = option(200, "steps between validation losses")
    log_every: int = option(10, "steps between train-loss records in metrics.jsonl")
    eval_batches: int = option(8, "validation batches per evaluation")
    checkpoint_every: int = option(200, "steps between checkpoints (also written at the end and on Ctrl-C)")
    seed: int = option(0, "seed for init and data order")
    resume: bool = option(False, "continue the run in --out-dir from its checkpoint")
    execution: ExecConfig = part(
        ExecConfig(),
        omit=("threads", "eval_batch_size"),
        help={"progress": "show a progress bar"},
    )

    def model_config(self, vocab_size: int) -> GPTConfig:
        return replace(self.model, vocab_size=vocab_size)

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(
            max_steps=self.max_steps,
            **self.optim.trainer_fields(),
            eval_every=self.eval_every,
            log_every=self.log_every,
            checkpoint_every=self.checkpoint_every,
            **self.execution.trainer_fields(),
            step_tokens=self.optim.batch_size * self.model.block_size,
            desc="pretrain",
        )

    def problems(self) -> list[str]:
        p = (
            []
            if self.corpus or self.n_docs != 1
            else ["--n-docs 1: need at least 2 documents, one held out for validation; use --n-docs >= 2"]
        )
        p += below(self, ("n_docs", "vocab_size", "block_size", "n_layer", "n_head", "n_embd"), 1)
        if self.mix_generated and not self.corpus:
            p.append("--mix-generated adds the generated corpus to your --corpus files: give --corpus")
        p += below(self, ("max_steps", "eval_batches", "log_every"), 1)
        p += below(self, ("eval_every", "checkpoint_every"), 0)
        if not 0 < self.val_fraction < 0.5:
            p.append(f"--val-fraction must be in (0, 0.5) (got {self.val_fraction})")
        most = 1.0 - corpus_mod.DRILLS_SHARE
        if not 0 <= self.documents_share <= most:
            p.append(f"--documents-share must be in [0, {most:.2f}] (got {self.documents_share})")
        m = self.model
        if m.n_head >= 1 and m.n_embd % m.n_head:
            p.append(f"--n-embd ({m.n_embd}) must be divisible by --n-head ({m.n_head})")
        if not 0 <= m.dropout < 1:
            p.append(f"--dropout must be in [0, 1) (got {m.dropout})")
        if not 260 <= self.vocab_size <= 65536:
            p.append(f"--vocab-size must be in [260, 65536] (got {self.vocab_size})")
        return p


# ---------------------------------------------------------------------------------------------
# steps of a run


def load_documents(cfg: PretrainConfig) -> tuple[list[str], str]:
    """The documents and a line saying where they come from: the generated corpus, the user's
    files, or (``--mix-generated``) the generated corpus followed by the files."""
    generated = f"generated dialogue corpus (seed {cfg.corpus_seed})"
    if not cfg.corpus:
        return generated_corpus(cfg), generated
    docs, files = corpus_mod.load_corpus_files(cfg.corpus), "files: " + ", ".join(cfg.corpus)
    if cfg.mix_generated:
        return generated_corpus(cfg) + docs, f"{generated} + {files}"
    return docs, files


def generated_corpus(cfg: PretrainConfig) -> list[str]:
    """The generated corpus the config asks for."""
    return corpus_mod.generate_corpus(cfg.n_docs, seed=cfg.corpus_seed, documents_share=cfg.documents_share)


# what a run writes into --out-dir through fileio's temp files (besides metrics.jsonl, appended in place)
ATOMIC_OUTPUTS = ("model.pt", "tokenizer.json", "summary.json", "train.bin", "val.bin", "loss_curve.png")


def _source_name(cfg: PretrainConfig) -> str:
    """Who to blame for a corpus too small: the files, or the option that sized it."""
    return ", ".join(cfg.corpus) if cfg.corpus else f"--n-docs {cfg.n_docs}"


def _corpus_too_small(cfg: PretrainConfig, problem: str, fix: str) -> ValueError:
    if cfg.corpus:
        return DataError(_source_name(cfg), f"{problem}; {fix}")
    return ConfigError(f"{_source_name(cfg)}: {problem}; {fix}")


def split_for_validation(cfg: PretrainConfig, docs: list[str]) -> tuple[list[str], list[str]]:
    """``split_documents``, with a one-line error naming the files or ``--n-docs`` when there are
    too few documents to hold one out."""
    if len(docs) < 2:
        raise _corpus_too_small(
            cfg,
            f"holds {len(docs)} document; need at least 2, one held out for validation",
            "separate documents with a blank line (.txt) or give one row per document (.jsonl/.json/.csv)"
            if cfg.corpus
            else "use --n-docs >= 2",
        )
    return split_documents(docs, cfg.val_fraction, cfg.seed)


def window_starts(cfg: PretrainConfig, tokens: np.ndarray, eos_id: int) -> np.ndarray | None:
    """Where this run's windows begin: ``document_starts`` under ``--window-start document``,
    else None (``TokenWindows`` and ``sequential_batches`` then cut the stream every block)."""
    return document_starts(tokens, eos_id, cfg.model.block_size) if cfg.window_start == "document" else None


def check_streams(cfg: PretrainConfig, n_docs: int, train_tokens, val_tokens, world: int, eos_id: int) -> None:
    """Refuse token streams that cannot make one training batch or one validation window (the
    corpus is too small for --block-size/--batch-size), BEFORE anything is written."""
    block, need = cfg.model.block_size, cfg.optim.batch_size * world
    starts = window_starts(cfg, train_tokens, eos_id)
    windows = (len(train_tokens) - 1) // block if starts is None else len(starts)
    problems = []
    if windows < need:
        procs = f" x {world} processes" if world > 1 else ""
        problems.append(
            f"the training split has {len(train_tokens)} tokens = {windows} window(s) of --block-size "
            f"{block}, but one batch needs {need} (--batch-size {cfg.optim.batch_size}{procs})"
        )
    if len(val_tokens) < block + 1:
        problems.append(
            f"the validation split ({n_docs - _n_train(n_docs, cfg)} document(s), {len(val_tokens)} "
            f"tokens) is shorter than one --block-size window ({block} + 1 tokens)"
        )
    if not problems:
        return
    if cfg.corpus:
        fix = (
            "give more text, or a smaller --block-size"
            + ("/--batch-size" if windows < need else "")
            + ("" if len(val_tokens) >= block + 1 else " or a larger --val-fraction")
        )
    else:
        n = _enough_docs(cfg, n_docs, len(train_tokens) + len(val_tokens), need, len(val_tokens) >= block + 1)
        fix = f"use --n-docs >= {n} (about), or a smaller --block-size"
    raise _corpus_too_small(cfg, "; ".join(problems), fix)


def _n_train(n_docs: int, cfg: PretrainConfig) -> int:
    """Documents ``split_documents`` leaves for training."""
    return n_docs - min(n_docs - 1, max(1, round(n_docs * cfg.val_fraction)))


def _enough_docs(cfg: PretrainConfig, n_docs: int, n_tokens: int, need: int, val_ok: bool) -> int:
    """About how many generated documents make one training batch and one validation window,
    from the tokens per document seen now (with a 20% margin)."""
    per_doc = max(1.0, n_tokens / max(1, n_docs))
    # documents wanted in the validation split: as many as now when they are enough
    want_val = n_docs - _n_train(n_docs, cfg) if val_ok else math.ceil(1.2 * (cfg.model.block_size + 1) / per_doc)
    want_train = 1.2 * (need * cfg.model.block_size + 1) / per_doc
    n = max(n_docs + 1, 2)
    while _n_train(n, cfg) < want_train or n - _n_train(n, cfg) < want_val:
        n = max(n + 1, int(n * 1.05))
    return n


def prepare_data(
    cfg: PretrainConfig, train_docs: list[str], val_docs: list[str], out: Path, resume_ckpt: dict | None
) -> tuple[RetailTokenizer, np.ndarray, np.ndarray]:
    """Tokenizer and token streams. Rank 0 trains the BPE (or reuses the resumed run's), encodes
    both splits and checks they are big enough, all in memory; only then does it create
    ``out``, clear temp files a killed run left there and write tokenizer.json and the streams.
    The other ranks wait and read them."""
    rank, world, _ = dist_info()
    resumed_tok = RetailTokenizer.from_str(resume_ckpt["tokenizer"]) if resume_ckpt is not None else None
    if rank == 0:
        tok = resumed_tok or train_tokenizer(train_docs, cfg.vocab_size, cfg.split_digits)
        train_tokens, val_tokens = encode_documents(train_docs, tok), encode_documents(val_docs, tok)
        check_streams(cfg, len(train_docs) + len(val_docs), train_tokens, val_tokens, world, tok.eos_id)
        out.mkdir(parents=True, exist_ok=True)
        for name in ATOMIC_OUTPUTS:
            remove_stale_temps(out / name)
        if resumed_tok is None:
            tok.save(out / "tokenizer.json")
        write_tokens(train_tokens, out / "train.bin")
        write_tokens(val_tokens, out / "val.bin")
        del train_tokens, val_tokens  # read back through memmap below: never in RAM twice
    barrier()
    tok = resumed_tok or RetailTokenizer.load(out / "tokenizer.json")
    return tok, read_tokens(out / "train.bin"), read_tokens(out / "val.bin")


def check_metrics(path: Path) -> None:
    """A resumed run rewrites metrics.jsonl from what it reads: refuse a damaged file first."""
    try:
        read_metrics(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot resume: {str(e).splitlines()[0] if str(e) else path}; repair or delete {path}"
        ) from None


def check_resumable(cfg: PretrainConfig, ckpt: dict, path: Path) -> None:
    """Refuse to resume with settings that would make the continued run a different run."""
    saved = ckpt.get("pretrain_config", {})
    same = (
        "n_docs",
        "corpus",
        "mix_generated",
        "corpus_seed",
        "documents_share",
        "val_fraction",
        "vocab_size",
        "split_digits",
        "block_size",
        "n_layer",
        "n_head",
        "n_embd",
        "smear_keys",
        "smear_init",
        "batch_size",
        "grad_accum",
        "max_steps",
        "lr",
        "optimizer",
        "schedule",
        "seed",
        "window_start",
        "attention_scope",
    )
    same += ("decay_fraction",) if saved.get("schedule") == "wsd" else ()  # only wsd reads it
    refuse_changed(path, saved, flat_dict(cfg), same)


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def greedy_reply(model: GPT, tok: RetailTokenizer, prompt: str = SAMPLE_PROMPT, n: int = 48) -> str:
    """The model's greedy continuation of an agent turn (prompt cut from the left to fit)."""
    n = min(n, model.config.block_size // 2)
    ids = tok.encode(prompt)[-(model.config.block_size - n) :]
    res = generate(model, [ids], eos_id=tok.eos_id, pad_id=tok.pad_id, max_new_tokens=n, temperature=0.0)[0]
    return tok.decode(res.tokens).split("\nCustomer:")[0].strip()


# ---------------------------------------------------------------------------------------------


def run(cfg: PretrainConfig) -> dict:
    """Pretrain as configured; returns the summary dict (also written to summary.json)."""
    check_config(cfg)
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    resume_ckpt = load_resume(cfg, out)
    rank = dist_info().rank
    docs, source_desc = load_documents(cfg)
    train_docs, val_docs = split_for_validation(cfg, docs)
    # every check on the data is done before this writes the first file into --out-dir
    tok, train_tokens, val_tokens = prepare_data(cfg, train_docs, val_docs, out, resume_ckpt)
    t_data = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(tok.vocab_size))
    if rank == 0:
        print(
            f"model: {model.num_params():,} parameters ({model.num_params(non_embedding=True):,} "
            f"without position embeddings); corpus: {source_desc}, {len(docs):,} docs, {len(train_tokens):,} train "
            f"tokens, {len(val_tokens):,} val tokens",
            flush=True,
        )
    trainer = make_trainer(cfg, out, model, tok, docs, train_tokens, val_tokens, resume_ckpt)
    if rank == 0:
        print(f"training precision: {trainer.dtype_note}", flush=True)
    t_train = time.perf_counter()
    trainer.fit()
    t_train = time.perf_counter() - t_train
    trainer.sink.close()
    summary = (
        _finish(
            cfg,
            out,
            model,
            tok,
            docs,
            source_desc,
            train_tokens,
            val_tokens,
            t_data,
            t_train,
            time.perf_counter() - t0,
            trainer.tokens_seen,
        )
        if rank == 0
        else {}
    )
    close_distributed()
    return summary


def load_resume(cfg: PretrainConfig, out: Path) -> dict | None:
    """With ``--resume``: the checkpoint in ``out``, checked to continue the same run, after
    checking that metrics.jsonl can be rewritten from what it holds. None without ``--resume``."""
    if not cfg.resume:
        return None
    ckpt_path = out / "model.pt"
    resume_ckpt = load_checkpoint(ckpt_path)
    check_resumable(cfg, resume_ckpt, ckpt_path)
    check_metrics(out / "metrics.jsonl")
    return resume_ckpt


def make_trainer(
    cfg: PretrainConfig,
    out: Path,
    model: GPT,
    tok: RetailTokenizer,
    docs: list[str],
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    resume_ckpt: dict | None,
) -> Trainer:
    """The Trainer of this run: this rank's windows of the training stream, the validation loss,
    the metrics sink (rank 0), the checkpoint in ``out`` and its metadata; resumed if asked."""
    rank, world, _ = dist_info()
    block, batch, eos = cfg.model.block_size, cfg.optim.batch_size, tok.eos_id
    doc_eos = eos if cfg.attention_scope == "document" else None  # batches then carry doc_ids
    starts = window_starts(cfg, train_tokens, eos)
    source = TokenWindows(train_tokens, block, batch, cfg.seed, rank, world, starts, doc_eos)
    val_starts = window_starts(cfg, val_tokens, eos)
    val_batches = sequential_batches(val_tokens, block, batch, cfg.eval_batches, val_starts, doc_eos)
    sink = MetricsSink(
        out / "metrics.jsonl", enabled=rank == 0, resume_step=resume_ckpt["trainer"]["step"] if resume_ckpt else None
    )
    # Part 4 evaluates on held-out slot values: record that this corpus holds none of them
    # (checked on the text, whatever its source), so fine-tuning can refuse a leaky base model.
    leaks = find_heldout_leaks(docs) if rank == 0 else []
    meta = {
        "model_config": model.config.to_dict(),
        "tokenizer": tok.to_str(),
        "pretrain_config": {k: _norm(v) for k, v in flat_dict(cfg).items()},
        "corpus_heldout_leaks": leaks,
    }
    trainer = Trainer(
        model,
        source,
        cfg.trainer_config(),
        sink=sink,
        checkpoint_path=out / "model.pt",
        checkpoint_meta=meta,
        evaluate=lambda m: mean_loss(m, val_batches),
    )
    if resume_ckpt is not None:
        trainer.load_state_dict(resume_ckpt)
    return trainer


def _finish(
    cfg, out, model, tok, docs, source_desc, train_tokens, val_tokens, t_data, t_train, t_total, tokens_seen
) -> dict:
    plot_losses([(out / "metrics.jsonl", "Pretraining", "validation loss")], out / "loss_curve.png")
    # The metrics file, not this process's history: after --resume it holds the whole run.
    records = read_metrics(out / "metrics.jsonl")
    train_losses = [r["train/loss"] for r in records if "train/loss" in r]
    val_losses = [r["val/loss"] for r in records if "val/loss" in r]
    stats = corpus_mod.corpus_stats(docs)
    summary = {
        "corpus": {
            "source": source_desc,
            "kind": ("mixed" if cfg.mix_generated else "files") if cfg.corpus else "dialogue",
            **stats,
            "train_tokens": int(len(train_tokens)),
            "val_tokens": int(len(val_tokens)),
        },
        "model": {"parameters": model.num_params(), **model.config.to_dict()},
        "steps": records[-1]["step"] if records else 0,
        "final_train_loss": sum(train_losses[-20:]) / max(1, len(train_losses[-20:])) if train_losses else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
        "compute": {
            "training_tokens": tokens_seen,
            "flops_per_token": flops_per_token(model.config)["total"],
            "tflop": round(training_flops(model.config, tokens_seen) / 1e12, 3),
            "formula": FORMULA,
        },
        "seconds": {"data_and_tokenizer": round(t_data, 1), "training": round(t_train, 1), "total": round(t_total, 1)},
        "sample": {"prompt": SAMPLE_PROMPT, "greedy_reply": greedy_reply(model, tok)},
        "config": {k: _norm(v) for k, v in flat_dict(cfg).items()},
    }
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict, out: Path) -> None:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"\ntrain loss (mean of last 20 steps) {fmt(summary['final_train_loss'])}, "
        f"val loss {fmt(summary['final_val_loss'])}, {summary['seconds']['total']:.0f} s total, "
        f"{summary['compute']['tflop']:.1f} TFLOP of model compute"
    )
    print(f"sample reply: {summary['sample']['greedy_reply']!r}")
    print("wrote:")
    for name in ("model.pt", "tokenizer.json", "metrics.jsonl", "loss_curve.png", "summary.json"):
        print(f"  {out / name}")


USER_ERRORS = (ConfigError, CheckpointError, TokenizerError, DataError, TrainingDiverged)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PretrainConfig, argv, PROG, __doc__.splitlines()[0], run, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
