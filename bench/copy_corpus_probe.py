"""Probe (run by hand): does a pretraining corpus that demands reading teach the model to copy?

Writes a JSONL corpus of N documents in the SFT generator's own wording ("Customer:
<message>\\nAgent: <good reply>", train-side templates only, slot values from the open-ended
pools of ``part3_pretrain.open_values``: pseudo-words, random ids, never a held-out value);
``--evaluate BASE`` then runs the default fine-tuning of a base pretrained on it and prints the
job metrics.

Part 3 now writes such exchanges itself, with agents of every quality (``agents.agent_documents``;
``careful=True`` for good replies only). This script keeps its own seed stream ("probe-<seed>") and
shuffle for the README's probe table; since customers write with ``variety`` (issue 17), its
corpora are no longer byte-identical to those rows. (Its option to mix
in the old "generic" corpus went with that corpus; the probe rows that used it were measured at
commit f2ec52b.)

    python bench/copy_corpus_probe.py --n-sft-docs 20000 --out /tmp/probe
    python bench/copy_corpus_probe.py --evaluate /tmp/probe/base/model.pt --out /tmp/probe/sft
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from part3_pretrain import corpus as corpus_mod  # noqa: E402
from part3_pretrain import domain  # noqa: E402
from part3_pretrain import slots as slots_mod  # noqa: E402
from part3_pretrain.open_values import open_pools  # noqa: E402


def sft_style_docs(n: int, seed: int) -> list[str]:
    """``agents.agent_documents(n, careful=True)`` written from the probe's own RNG stream."""
    values, ph, rng = open_pools(), domain.phrasing("train"), random.Random(f"probe-{seed}")
    docs = []
    for i in range(n):
        ctx = domain.make_context(domain.INTENTS[i % len(domain.INTENTS)], values, rng, ph)
        docs.append(f"Customer: {ctx.text}\nAgent: {domain.good_reply(ctx, values, rng, ph)}")
    return docs


def _greedy_replies(model, tok, scheme: str, rows: list[dict], cfg) -> dict:
    """``evaluate.generate_replies`` for the contexts of ``rows``: temperature 0, no gradients."""
    import torch

    from part4_sft import evaluate as ev
    from part4_sft.prompts import get_scheme

    with torch.no_grad():
        return ev.generate_replies(
            model,
            tok,
            get_scheme(scheme),
            [r["context"] for r in rows],
            cfg.evaluation,
            0.0,
            cfg.seed,
            cfg.execution.eval_batch_size,
        )


def _write_replies(path: Path, rows: list[dict], replies: dict) -> None:
    """One JSON line per row: its context, the generated reply and the reference response."""
    with open(path, "w") as f:
        for r, text in zip(rows, replies["texts"], strict=False):
            f.write(json.dumps({"context": r["context"], "reply": text, "ref": r.get("response")}) + "\n")


def quick_eval(base: str, out: str, n_test: int = 250, max_new_tokens: int = 64) -> dict:
    """Default fine-tuning of ``base``, then greedy SFT replies on both test sets: job metrics."""
    import copy

    import torch

    from part3_pretrain.cli import compose
    from part4_sft import evaluate as ev
    from part4_sft import sft
    from part4_sft.splits import load_splits

    cfg = compose(
        sft.SFTConfig,
        pretrained=base,
        out_dir=out,
        dataset_path=f"{out}/d.json",
        n_test=n_test,
        progress=False,
        n_boot=200,
        max_new_tokens=max_new_tokens,
    )
    splits = load_splits(cfg.dataset)
    model, tok, _ = sft.load_baseline(Path(base))
    torch.manual_seed(cfg.seed)
    tuned = copy.deepcopy(model)
    Path(out).mkdir(parents=True, exist_ok=True)
    history, counts, secs = sft.fine_tune(cfg, tuned, tok, splits, Path(out), "chat")
    tuned.eval()
    result = {"val_loss": [r["val/loss"] for r in history if "val/loss" in r][-1], "sft_seconds": round(secs, 1)}
    for name, rows in splits.test_sets().items():
        for label, m, scheme in (("sft", tuned, "chat"), ("base_dialogue", model, "dialogue")):
            if label != "sft" and name != "test":
                continue
            replies = _greedy_replies(m, tok, scheme, rows, cfg)
            report, judged = ev.score(rows, replies, 200, 0)
            key = name if label == "sft" else f"{name}_{label}"
            result[key] = {k: (round(v, 3) if v is not None else None) for k, v in ev.scalars(report).items()}
            _write_replies(Path(out) / f"{key}.jsonl", rows, replies)
    print(json.dumps(result, indent=1))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sft-docs", type=int, default=corpus_mod.DIALOGUE_N_DOCS)
    p.add_argument("--out", default="/tmp/probe")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--evaluate", metavar="BASE", help="fine-tune BASE (model.pt) and print job metrics")
    args = p.parse_args()
    if args.evaluate:
        quick_eval(args.evaluate, args.out, max_new_tokens=args.max_new_tokens)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    docs = sft_style_docs(args.n_sft_docs, 0)
    random.Random(0).shuffle(docs)
    leaks = slots_mod.find_heldout_leaks(docs)
    tleaks = domain.template_leaks(docs)
    print(f"{len(docs)} docs; held-out value leaks {leaks}; held-out template leaks {tleaks}")
    assert not leaks and not tleaks
    with open(out / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    print(out / "corpus.jsonl")


if __name__ == "__main__":
    main()
