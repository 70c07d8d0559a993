"""Probe (run by hand): does a pretraining corpus that demands reading teach the model to copy?

Writes a JSONL corpus of the generated retail corpus plus N documents in the SFT generator's own
wording ("Customer: <message>\\nAgent: <good reply>", train-side templates only) whose slot values
come from open-ended pools (pseudo-words, random ids), never a held-out value; then pretrains at a
FLOP budget and runs the default fine-tuning + evaluation on it.

    python bench/copy_corpus_probe.py --n-sft-docs 20000 --tflop 30 --out /tmp/probe
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from part3_pretrain import corpus as corpus_mod  # noqa: E402
from part3_pretrain import slots as slots_mod  # noqa: E402
from part4_sft import synthetic  # noqa: E402

_C, _V = "bcdfghjklmnprstvz", "aeiou"


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_C) + rng.choice(_V) + (rng.choice("nrls") if rng.random() < 0.3 else "")
                   for _ in range(syllables)).capitalize()


def open_pools(seed: int = 1, size: int = 20000) -> dict[str, tuple[str, ...]]:
    """Large value pools with no held-out value: what no model can memorise."""
    rng = random.Random(seed)
    held = set(slots_mod.heldout_values())
    train = slots_mod.slot_values("train")
    lines = set(v.split()[0] for v in train["product"]) | set(v.split()[0] for v in slots_mod.slot_values("heldout")["product"])

    def fill(make, n):
        out: set[str] = set()
        while len(out) < n:
            v = make()
            if v not in held:
                out.add(v)
        return tuple(sorted(out))

    names = fill(lambda: _word(rng, rng.choice((2, 2, 3))), size)
    brands = [b for b in fill(lambda: _word(rng, 2), 4000) if b not in lines]
    items = list(slots_mod.PRODUCT_ITEMS)
    return {
        "customer": names + train["customer"],
        "order_id": fill(lambda: f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randrange(1000, 10000)}", size * 3),
        "product": fill(lambda: f"{rng.choice(brands)} {rng.choice(items)}", size) + train["product"],
        "date": train["date"],
        "amount": fill(lambda: f"${rng.randrange(5, 900)}.{rng.randrange(100):02d}", size),
        "carrier": train["carrier"],
        "promo_code": fill(lambda: f"{_word(rng, 2).upper()}{rng.choice((5, 10, 15, 20, 25, 30))}", size),
    }


def sft_style_docs(n: int, seed: int) -> list[str]:
    pools = open_pools()
    real = synthetic.slot_values

    def patched(split: str):
        return pools if split == "open" else real(split)

    synthetic.slot_values = patched
    synthetic._products_by_category.cache_clear()
    rng = random.Random(f"probe-{seed}")
    docs = []
    for i in range(n):
        ctx = synthetic._make_context(synthetic.INTENTS[i % len(synthetic.INTENTS)], "open", rng)
        docs.append(f"Customer: {ctx.text}\nAgent: {synthetic._good_response(ctx, 'open', rng)}")
    synthetic.slot_values = real
    synthetic._products_by_category.cache_clear()
    return docs


def quick_eval(base: str, out: str, n_test: int = 250) -> dict:
    """Default fine-tuning of ``base``, then greedy SFT replies on both test sets: job metrics."""
    import copy

    import torch

    from part4_sft import evaluate as ev
    from part4_sft import sft
    from part4_sft.datasets import load_splits
    from part4_sft.prompts import get_scheme

    cfg = sft.SFTConfig(pretrained=base, out_dir=out, dataset_path=f"{out}/d.json", n_test=n_test,
                        progress=False, n_boot=200)
    splits = load_splits(cfg)
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
            with torch.no_grad():
                replies = ev.generate_replies(m, tok, get_scheme(scheme), [r["context"] for r in rows],
                                              cfg.eval_settings(), 0.0)
            report, judged = ev.score(rows, replies, 200, 0)
            key = name if label == "sft" else f"{name}_{label}"
            result[key] = {k: (round(v, 3) if v is not None else None) for k, v in ev.scalars(report).items()}
            with open(Path(out) / f"{key}.jsonl", "w") as f:
                for r, text in zip(rows, replies["texts"]):
                    f.write(json.dumps({"context": r["context"], "reply": text, "ref": r.get("response")}) + "\n")
    print(json.dumps(result, indent=1))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sft-docs", type=int, default=20000)
    p.add_argument("--n-corpus-docs", type=int, default=corpus_mod.DEFAULT_N_DOCS)
    p.add_argument("--out", default="/tmp/probe")
    p.add_argument("--evaluate", metavar="BASE", help="fine-tune BASE (model.pt) and print job metrics")
    args = p.parse_args()
    if args.evaluate:
        quick_eval(args.evaluate, args.out)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    docs = corpus_mod.generate_corpus(args.n_corpus_docs) if args.n_corpus_docs else []
    docs += sft_style_docs(args.n_sft_docs, 0)
    random.Random(0).shuffle(docs)
    leaks = slots_mod.find_heldout_leaks(docs)
    tleaks = synthetic.template_leaks(docs)
    print(f"{len(docs)} docs; held-out value leaks {leaks}; held-out template leaks {tleaks}")
    assert not leaks and not tleaks
    with open(out / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    print(out / "corpus.jsonl")


if __name__ == "__main__":
    main()
