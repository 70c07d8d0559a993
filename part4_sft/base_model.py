"""Getting a part-3 base model: the checkpoint if it exists, else part 3 pretrains it in a child process.

``python -m part4_sft.sft`` and the experiment mode both get a missing base here, the same way:
only a base's default path is pretrained on demand (any other missing path is an error), and
part 3 runs as ``python -m part3_pretrain.pretrain`` in a child process, its settings passed as
command-line flags. Its corpus, tokenizer trainer, activations and random state go when it
exits, so the caller's memory peak is the larger of the two stages, not their sum, and the
caller's global RNG is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from part3_pretrain import corpus as corpus_mod
from part3_pretrain.checkpoint import CheckpointError, load_checkpoint
from part3_pretrain.cli import flag, leaf_names
from part3_pretrain.fileio import write_text_atomic
from part3_pretrain.flops import flops_per_token
from part3_pretrain.pretrain import DEFAULT_OUT_DIR, PretrainConfig
from part3_pretrain.pretrain import PROG as PART3_PROG
from part3_pretrain.tokenizer import train_tokenizer
from part3_pretrain.trainer import resolve_device, resolve_dtype

from .fit import MAX_DATA_BLOCK, round_up  # a longer context costs more attention than the budget buys

PART3_MODULE = "part3_pretrain.pretrain"
_PART3_OPTIONS = frozenset(leaf_names(PretrainConfig))
DEFAULT_PRETRAINED = f"{DEFAULT_OUT_DIR}/model.pt"  # part 3's default run, the base ``sft`` uses
# how the child runs: set from the caller's own settings, never by a base's pretraining settings
_EXECUTION = ("out_dir", "device", "dtype", "progress")


def pretrain_flags(pretrain_args: dict[str, Any]) -> list[str]:
    """Part 3's command-line flags for ``PretrainConfig`` overrides: ``{"n_layer": 2}`` ->
    ``["--n-layer", "2"]``; booleans as ``--x`` / ``--no-x``, sequences as several values."""
    out: list[str] = []
    for key, value in pretrain_args.items():
        if key not in _PART3_OPTIONS or key in _EXECUTION:
            raise ValueError(f"{key!r} is not a part-3 pretraining setting a base may set")
        if isinstance(value, bool):
            out.append(flag(key) if value else "--no-" + flag(key)[2:])
        elif isinstance(value, (list, tuple)):
            out += [flag(key), *map(str, value)] if value else []
        else:
            out += [flag(key), str(value)]
    return out


def pretrain_command(
    out_dir: str | Path, pretrain_args: dict[str, Any], device: str, dtype: str, progress: bool
) -> list[str]:
    """The child process's command line: part 3 with ``pretrain_args`` writing to ``out_dir``."""
    return [
        sys.executable,
        "-m",
        PART3_MODULE,
        "--out-dir",
        str(out_dir),
        *pretrain_flags(pretrain_args),
        "--device",
        device,
        "--dtype",
        dtype,
        "--progress" if progress else "--no-progress",
    ]


def _rerun_hint(out_dir: Path, pretrain_args: dict[str, Any]) -> str:
    """The command a user reruns to see why part 3 failed (``--out-dir`` when not part 3's own)."""
    own_dir = Path(DEFAULT_OUT_DIR) == out_dir
    return " ".join([PART3_PROG, *([] if own_dir else ["--out-dir", str(out_dir)]), *pretrain_flags(pretrain_args)])


def pretrain_seconds(path: Path) -> float | None:
    """Part 3's total wall time for the checkpoint at ``path``, from its summary.json (None if unknown)."""
    summary = path.parent / "summary.json"
    if not summary.is_file():
        return None
    try:
        return json.loads(summary.read_text(encoding="utf-8"))["seconds"]["total"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def unfinished(path: Path) -> tuple[int, int] | None:
    """(step, max_steps) of a part-3 checkpoint whose run stopped before its last step (a
    periodic checkpoint left by an interrupted pretraining); None for a finished or absent one."""
    if not path.is_file():
        return None
    trainer = load_checkpoint(path).get("trainer")
    if not isinstance(trainer, dict):
        return None
    step, max_steps = trainer.get("step"), (trainer.get("config") or {}).get("max_steps")
    if isinstance(step, int) and isinstance(max_steps, int) and step < max_steps:
        return step, max_steps
    return None


def _pretrain_child(path: Path, pretrain_args: dict[str, Any], device: str, dtype: str, progress: bool, threads: int):
    """Run part 3 in a child process writing ``path``; a CheckpointError when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads > 0 else None
    code = subprocess.run(pretrain_command(path.parent, pretrain_args, device, dtype, progress), env=env).returncode
    if code != 0 or not path.is_file() or unfinished(path) is not None:
        args = {k: v for k, v in pretrain_args.items() if k != "resume"}
        raise CheckpointError(
            f"{path}: part 3 pretraining failed (exit code {code}); run {_rerun_hint(path.parent, args)} to see why"
        )


def ensure_base(
    path: str | Path,
    default_path: str | Path | None,
    pretrain_args: dict[str, Any] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = True,
    announce: str | None = None,
    threads: int = 0,
) -> dict:
    """The base checkpoint at ``path``. When it is missing and ``path`` is ``default_path``, part 3
    pretrains it first, in a child process, with ``pretrain_args`` (``PretrainConfig`` overrides,
    passed as flags) and the caller's ``device``, ``dtype`` and ``progress``; ``announce`` is the
    line printed before (default: one naming the path), ``threads`` > 0 sets the child's
    OMP_NUM_THREADS. Any other missing path is a CheckpointError, and so is a failed child.

    Returns ``{"path", "pretrained_now", "pretrain_seconds"}`` (seconds from part 3's summary.json).
    """
    path, pretrain_args = Path(path), dict(pretrain_args or {})
    pretrained_now = False
    stopped = unfinished(path)
    if stopped is not None:
        if default_path is None or Path(default_path) != path:
            raise CheckpointError(
                f"{path}: its pretraining stopped at step {stopped[0]} of {stopped[1]}; finish it with "
                f"{_rerun_hint(path.parent, pretrain_args)} --resume"
            )
        print(f"the pretraining in {path.parent} stopped at step {stopped[0]} of {stopped[1]}: resuming it", flush=True)
        pretrain_args["resume"] = True
        _pretrain_child(path, pretrain_args, device, dtype, progress, threads)
        pretrained_now = True
    elif not path.is_file():
        if default_path is None or Path(default_path) != path:
            raise CheckpointError(f"{path}: no such checkpoint file")
        print(announce or f"no checkpoint at {path}: pretraining it with part 3 first", flush=True)
        _pretrain_child(path, pretrain_args, device, dtype, progress, threads)
        pretrained_now = True
    return {"path": str(path), "pretrained_now": pretrained_now, "pretrain_seconds": pretrain_seconds(path)}


# ---------------------------------------------------------------------------------------------
# a base fitted to the user's data: `python -m part4_sft.sft --data pairs.jsonl` without --pretrained

DATA_BASES_DIR = "checkpoints/pretrain_data"
PRETRAIN_BUDGET_TFLOP = 30.0  # part 3's default run: the data-fitted base gets the same compute
TOKENIZER_SAMPLE_DOCS = 3000  # generated documents beside the user's text when measuring token lengths
# Generated documents per token of the user's training text: 3 makes that text a quarter of the
# corpus, whatever its size. Measured on bench/support_sample (README, one seed each): all 30,000
# generated documents (3% own text) gave SFT ROUGE-L 0.171, EOS stop 96%; a quarter own text
# 0.174 / 100% and 0.173 / 99% (two corpus sizes): no measurable difference in quality, and the
# invented share swung from 15% to 56% between bases. The rule keeps the user's text from being
# drowned as a data set grows, and generating 2-3k documents instead of 30k saves a few seconds.
GENERATED_PER_OWN_TOKEN = 3.0
GENERATED_DOCS_RANGE = (1000, 30000)
# Where the data-fitted base's training windows begin. Part 3's default starts them at documents
# (which lifted the generated job's intent accuracy); on bench/support_sample's validation split
# (30 rows, one seed, README) the base with the stream cut every window scored ROUGE-L 0.182 and
# invented in 10% of replies, the one with document windows 0.174 and 27%: the cut stream stays.
DATA_WINDOW_START = "any"
# What a training token attends to in the data-fitted base: its whole window, across document
# ends (part 3's default keeps it inside its document; not measured on the user's kind of data,
# whose windows are cut anywhere, so the previous behaviour stays here).
DATA_ATTENTION_SCOPE = "window"


def dialogue_text(row: dict) -> str:
    """A training row as pretraining text in the corpus's own format: "Customer: ...\\nAgent: ..."
    (every turn of a chat row, a system message first), as ``--corpus`` writes pair files."""
    turns = row.get("turns") or [
        {"role": "user", "content": row["context"]},
        {"role": "assistant", "content": row["response"]},
    ]
    return corpus_mod.dialogue_document(turns)


def retrieval_room(lengths: list[int], retrieve: int) -> int:
    """Context tokens for ``retrieve`` retrieved exchanges (``--retrieve``): each as long as the
    90th percentile (nearest rank) of the training exchanges, so most fit whole."""
    if retrieve <= 0 or not lengths:
        return 0
    ordered = sorted(lengths)
    return retrieve * ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


def data_base_plan(train_rows: list[dict], defaults: PretrainConfig | None = None, retrieve: int = 0) -> dict:
    """The part-3 overrides of a base for ``train_rows``, measured with a tokenizer trained like
    part 3's: a context that holds the longest training exchange and, with ``retrieve`` > 0, room
    for that many retrieved exchanges before it (``retrieval_room``; capped at
    ``MAX_DATA_BLOCK``); generated documents ``GENERATED_PER_OWN_TOKEN`` times the training text's
    tokens (within ``GENERATED_DOCS_RANGE``), so the user's text is a quarter of the corpus; and as
    many steps as fit the default run's ``PRETRAIN_BUDGET_TFLOP``."""
    defaults = defaults or PretrainConfig()
    texts = [dialogue_text(r) for r in train_rows]
    sample = corpus_mod.generate_corpus(TOKENIZER_SAMPLE_DOCS, seed=defaults.corpus_seed)
    tok = train_tokenizer(sample + texts, defaults.vocab_size, defaults.split_digits)
    lengths = [len(tok.encode(t)) + 1 for t in texts]  # + EOS
    per_generated_doc = sum(len(tok.encode(d)) for d in sample) / len(sample)
    low, high = GENERATED_DOCS_RANGE
    n_docs = min(high, max(low, round(GENERATED_PER_OWN_TOKEN * sum(lengths) / per_generated_doc)))
    longest = max(lengths) + retrieval_room(lengths, retrieve)
    block = min(MAX_DATA_BLOCK, max(defaults.model.block_size, round_up(longest)))
    model = replace(defaults.model, vocab_size=defaults.vocab_size, block_size=block)
    per_step = defaults.optim.batch_size * block * flops_per_token(model)["total"]
    steps = max(1, int(PRETRAIN_BUDGET_TFLOP * 1e12 // per_step))
    plan = {"block_size": block, "max_steps": steps, "n_docs": n_docs, "longest_exchange_tokens": max(lengths)}
    # part of the hash: a base trained otherwise is not reused
    plan |= {"window_start": DATA_WINDOW_START, "attention_scope": DATA_ATTENTION_SCOPE}
    return plan | ({"retrieval_room_tokens": retrieval_room(lengths, retrieve)} if retrieve else {})


def data_base_dir(train_rows: list[dict], plan: dict) -> Path:
    """Where the base for these training rows lives: named by a hash of their text and the plan,
    so the same data reuses it and other data gets its own."""
    digest = hashlib.sha256(json.dumps([[dialogue_text(r) for r in train_rows], plan]).encode()).hexdigest()
    return Path(DATA_BASES_DIR) / digest[:12]


def pretrain_precision(plan: dict, device: str, dtype: str) -> str:
    """The precision part 3 will pretrain the planned base in (``--dtype auto`` resolved as the
    child resolves it: this machine's device, rows x context per step), e.g. "cpu float32"."""
    dev = resolve_device(device)
    step_tokens = PretrainConfig().optim.batch_size * plan["block_size"]
    return f"{dev.type} {str(resolve_dtype(dtype, dev, step_tokens)).removeprefix('torch.')}"


def ensure_data_base(train_rows: list[dict], device: str, dtype: str, progress: bool, retrieve: int = 0) -> dict:
    """A base fitted to ``train_rows`` (pretrained first when missing): the generated corpus plus
    the training split's text (never validation or test), with a context that holds its longest
    exchange (and ``retrieve`` retrieved exchanges), at the default run's compute. Returns
    ``ensure_base``'s dict plus the plan."""
    plan = data_base_plan(train_rows, retrieve=retrieve)
    plan["precision"] = pretrain_precision(plan, device, dtype)  # a bf16 base is not an fp32 one
    out = data_base_dir(train_rows, plan)
    corpus = out / "train_text.jsonl"
    if not (out / "model.pt").is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic("".join(json.dumps({"text": dialogue_text(r)}) + "\n" for r in train_rows), corpus)
    keys = ("block_size", "max_steps", "n_docs", "window_start", "attention_scope")
    args = {k: plan[k] for k in keys} | {"corpus": [str(corpus)]}
    args["mix_generated"] = True
    announce = (
        f"no --pretrained: pretraining a base for your data in {out} (part 3, in a child process): "
        f"{plan['n_docs']:,} generated documents + your {len(train_rows)} training pairs, context "
        f"{plan['block_size']} tokens (longest training exchange {plan['longest_exchange_tokens']}"
        + (f", + {plan['retrieval_room_tokens']} for --retrieve {retrieve}" if retrieve else "")
        + "), "
        f"{plan['max_steps']} steps = "
        f"{PRETRAIN_BUDGET_TFLOP:g} TFLOP like the default base"
    )
    info = ensure_base(out / "model.pt", out / "model.pt", args, device, dtype, progress, announce)
    return {**info, "plan": plan}
