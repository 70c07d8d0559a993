"""Decoding settings measured on the VALIDATION split of a fine-tuned model (run by hand).

Loads an ``sft_model.pt`` written by ``python -m part4_sft.sft``, rebuilds its data splits from
the settings stored in the checkpoint (the same seeded splits, the same ``--retrieve``), and
generates greedy replies to the validation rows (never the test rows) for each
``--no-repeat-ngram`` value (and ``--copy-mix`` and ``--ground-values`` value), scored like the job's
evaluation (``evaluate.score``): ROUGE-L,
loop share, EOS stop, specifics restated and invented, rubric where the rows have one; each
paired with the first value given. The yardsticks (``part4_sft/yardsticks.py``) are scored on
the same rows. Choices of decoding (and of fine-tuning settings, one checkpoint per setting) are
made on these numbers; the test set is scored once, by the job.

    python bench/decoding_probe.py checkpoints/od/plain/sft_model.pt --no-repeat-ngram 0 3 4 6
    python bench/decoding_probe.py checkpoints/od/plain/sft_model.pt --no-repeat-ngram 4 --copy-mix 0 0.2
    python bench/decoding_probe.py checkpoints/od/plain/sft_model.pt --no-repeat-ngram 4 --ground-values 0 1
    python bench/decoding_probe.py checkpoints/od/plain/sft_model.pt --no-repeat-ngram 4 --ground-names 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from part3_pretrain.checkpoint import load_model  # noqa: E402
from part3_pretrain.cli import compose  # noqa: E402
from part4_sft import evaluate as ev  # noqa: E402
from part4_sft import fit  # noqa: E402
from part4_sft.prompts import get_scheme  # noqa: E402
from part4_sft.retrieval import add_retrieved  # noqa: E402
from part4_sft.sft import SFTConfig  # noqa: E402
from part4_sft.splits import load_splits  # noqa: E402
from part4_sft.yardsticks import Yardsticks, yardstick_replies  # noqa: E402

PROBE_DATASET = "checkpoints/probe_sft_dataset.json"  # the generated data's copy, not the job's file


def probe_config(ckpt: dict) -> SFTConfig:
    """The fine-tuning's settings from its checkpoint (generated data written to PROBE_DATASET)."""
    stored = dict(ckpt["sft_config"])
    if stored.get("data") is None:
        stored["dataset_path"] = PROBE_DATASET
    return compose(SFTConfig, **stored)


def summary(report: dict) -> dict:
    """The figures printed per setting."""
    sc = ev.scalars(report)
    keep = ("rouge_l", "loop_share", "eos_stop_rate", "specifics_recall", "invented_share", "rubric_pass")
    return {k: sc.get(k) for k in keep} | {"mean_length": report["mean_length"]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--no-repeat-ngram", type=int, nargs="+", default=[0, 3, 4, 6])
    p.add_argument("--copy-mix", type=float, nargs="+", default=None, help="copy blends (default: the model's setting)")
    p.add_argument(
        "--ground-values",
        type=int,
        nargs="+",
        choices=(0, 1),
        default=None,
        help="grounding 0/1 (default: the model's)",
    )
    p.add_argument(
        "--ground-names",
        type=int,
        nargs="+",
        choices=(0, 1),
        default=None,
        help="name grounding 0/1, with the training replies' own words (default: the model's setting)",
    )
    p.add_argument("--max-rows", type=int, default=0, help="first N validation rows (0: all)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", help="JSON file for the results")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    model, tok, ckpt = load_model(args.checkpoint)
    cfg = probe_config(ckpt)
    splits = add_retrieved(load_splits(cfg.dataset), cfg.retrieve)
    rows = splits.val[: args.max_rows or None]
    scheme = get_scheme(cfg.prompt_scheme)
    lengths = fit.reply_lengths(tok, scheme, splits.train)
    max_new = fit.resolve_max_new_tokens(cfg.evaluation, cfg.dataset.data is None, lengths, model.config.block_size)
    settings = cfg.evaluation.resolved(max_new["value"])
    results: dict = {"checkpoint": args.checkpoint, "val_rows": len(rows), "max_new_tokens": max_new["value"]}
    sticks = Yardsticks(splits.train)
    for name, texts in sticks.texts(rows).items():
        report, _ = ev.score(rows, yardstick_replies(texts, lambda t: len(tok.encode(t))), args.n_boot, cfg.seed)
        results[name] = summary(report)
        print(f"{name:16s} " + json.dumps(results[name]), flush=True)
    first = None
    grounds = [bool(g) for g in args.ground_values] if args.ground_values else [settings.ground_values]
    names = [bool(g) for g in args.ground_names] if args.ground_names else [settings.ground_names]
    words = ev.training_reply_words(splits.train)
    for n, mix, ground, held in product(args.no_repeat_ngram, args.copy_mix or [settings.copy_mix], grounds, names):
        name = f"no_repeat_ngram={n}" + (f" copy_mix={mix:g}" if args.copy_mix else "")
        name += f" ground_values={int(ground)}" if args.ground_values else ""
        name += f" ground_names={int(held)}" if args.ground_names else ""
        t0 = time.perf_counter()
        replies = ev.generate_replies(
            model,
            tok,
            scheme,
            rows,
            replace(settings, no_repeat_ngram=n, copy_mix=mix, ground_values=ground, ground_names=held),
            0.0,
            cfg.seed,
            cfg.execution.eval_batch_size,
            words,
        )
        report, replies["judged"] = ev.score(rows, replies, args.n_boot, cfg.seed)
        entry = summary(report) | {"seconds": round(time.perf_counter() - t0, 1)}
        if first is None:
            first = replies
        else:
            entry["rouge_l_minus_first"] = ev.compare_replies(rows, first, replies, args.n_boot, cfg.seed)["rouge_l"]
        results[name] = entry
        print(f"{name:32s} " + json.dumps(entry), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
