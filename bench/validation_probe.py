"""Probe (run by hand): job metrics of models on the synthetic validation split, for choosing
between variants without looking at a test set.

The validation contexts use train slot values and train phrasing, never a training context
(``synthetic.generate_eval_set("val", ...)``). With ``--split handwritten`` they are instead the
34 messages of ``part4_sft/handwritten_val.jsonl``: written by hand like ``test_handwritten`` but
with other messages and values, so variants meant for people's writing are chosen without looking
at the hand-written test split. (Its references are generic; only the job metrics mean anything.)
Each checkpoint (pretrained in the ``dialogue`` format, or SFT) answers them greedily; the table
shows the job metrics the main job reports and the seconds the replies took. ``--copy-mix`` (and
``--copy-min``) compares settings of the copy blend (``part3_pretrain/prompt_copy.py``), ``--ground-values
0 1`` the decoder without and with the value grounding (``part3_pretrain/value_grounding.py``),
``--ground-names 0 1`` without and with the name grounding (``part3_pretrain/name_grounding.py``,
held to the words the main job's 500 training replies write of their own).

    python bench/validation_probe.py checkpoints/abl/*/sft/sft_model.pt checkpoints/abl/*/pre/model.pt
    python bench/validation_probe.py --split handwritten checkpoints/abl/*/sft/sft_model.pt
    python bench/validation_probe.py --n 200 checkpoints/sft/sft_model.pt --copy-mix 0 0.1 0.2 0.3
    python bench/validation_probe.py --split handwritten checkpoints/sft/sft_model.pt --copy-mix 0.2 --ground-values 0 1
    python bench/validation_probe.py --n 1000 checkpoints/sft/sft_model.pt --copy-mix 0.2 \
        --ground-values 1 --ground-names 0 1
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from part3_pretrain.checkpoint import load_model  # noqa: E402
from part3_pretrain.cli import compose  # noqa: E402
from part3_pretrain.name_grounding import ReplyWords, reply_words  # noqa: E402
from part4_sft import evaluate as ev  # noqa: E402
from part4_sft import synthetic  # noqa: E402
from part4_sft.configs import EvalConfig  # noqa: E402
from part4_sft.handwritten import HANDWRITTEN_VAL_PATH, load_handwritten  # noqa: E402
from part4_sft.prompts import get_scheme  # noqa: E402
from part4_sft.splits import choose_train  # noqa: E402


def validation_rows(n: int, seed: int) -> list[dict]:
    """The main job's validation split (the default pairs' contexts excluded)."""
    pairs = synthetic.generate_pairs(seed=seed)
    return synthetic.generate_eval_set("val", n, seed=seed, exclude_contexts=[p["context"] for p in pairs])


def default_reply_words(seed: int = 0) -> ReplyWords:
    """The capitalised words the main job's 500 training replies write of their own (what its
    sft_model.pt stores for the name grounding)."""
    train = choose_train(synthetic.generate_pairs(seed=seed), "hq", 500, seed)
    return reply_words((r["context"], r["response"]) for r in train)


def probe(path: str, rows: list[dict], settings: EvalConfig, names: ReplyWords | None = None) -> dict:
    """Greedy job metrics of one checkpoint on ``rows`` in the ``dialogue`` format, and the
    seconds the generation took."""
    model, tok, _ = load_model(path)
    t0 = time.perf_counter()
    with torch.no_grad():
        replies = ev.generate_replies(model, tok, get_scheme("dialogue"), rows, settings, 0.0, 0, 32, names)
    seconds = time.perf_counter() - t0
    report, _ = ev.score(rows, replies, n_boot=200, seed=0)
    return ev.scalars(report) | {"seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--n", type=int, default=250, help="synthetic validation contexts (--split val; default 250)")
    parser.add_argument(
        "--split",
        choices=("val", "handwritten"),
        default="val",
        help="the synthetic validation split (default) or the hand-written validation messages",
    )
    parser.add_argument(
        "--copy-mix", type=float, nargs="+", default=[0.0], help="copy blends to compare (EvalConfig.copy_mix)"
    )
    parser.add_argument("--copy-min", type=int, nargs="+", default=[1], help="EvalConfig.copy_min values to compare")
    parser.add_argument(
        "--ground-values", type=int, nargs="+", choices=(0, 1), default=[0], help="value grounding off (0) / on (1)"
    )
    parser.add_argument(
        "--ground-names",
        type=int,
        nargs="+",
        choices=(0, 1),
        default=[0],
        help="name grounding off (0) / on (1), with the main job's training replies' words",
    )
    args = parser.parse_args(argv)
    rows = validation_rows(args.n, 0) if args.split == "val" else load_handwritten(HANDWRITTEN_VAL_PATH)
    keys = ("specifics_recall", "invented_share", "intent_accuracy", "rubric_pass", "loop_share", "eos_stop_rate")
    keys += ("seconds",)
    print(f"{'checkpoint':60s}{'mix/min/id':>11s}" + "".join(f"{k[:10]:>11s}" for k in keys))
    words = default_reply_words() if 1 in args.ground_names else None
    for path in args.checkpoints:
        for mix, ground, names in product(args.copy_mix, args.ground_values, args.ground_names):
            for least in args.copy_min if mix > 0 else [1]:
                settings = compose(
                    EvalConfig,
                    max_new_tokens=90,
                    copy_mix=mix,
                    copy_min=least,
                    ground_values=bool(ground),
                    ground_names=bool(names),
                )
                s = probe(path, rows, settings, words)
                cells = "".join(f"{s[k]:11.3f}" if s[k] is not None else f"{'-':>11s}" for k in keys)
                print(f"{path[-60:]:60s}{f'{mix:g}/{least}/{ground}{names}':>11s}" + cells, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
