"""Ablation (run by hand): pretrain on a variant of the default corpus, same budget otherwise.

Each variant changes one or more knobs of the generated corpus in this process only, then runs
``python -m part3_pretrain.pretrain`` with the remaining arguments; fine-tune and evaluate the
base with ``python -m part4_sft.sft --pretrained OUT/model.pt``. Part 4's data (training pairs
and test sets) is never touched by a variant: only the pretraining text changes.

    python bench/corpus_ablation.py --variant no_variety -- --out-dir /tmp/abl/no_variety
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from part3_pretrain import agents, corpus, domain, pretrain  # noqa: E402


def _no_variety() -> None:
    """Customers write in the templates' own wording only (no composed requests, no noise)."""
    domain.COMPOSED_REQUEST_SHARE = 0.0
    domain.vary_message = lambda text, keep, rng, intent=None: text


def _old_mix() -> None:
    """Two thirds exchanges, one third drills, no other retail documents."""
    corpus.DOCUMENTS_SHARE, corpus.DRILLS_SHARE = 0.0, 1 / 3


def _drills_fifth() -> None:
    """A fifth drills, the rest exchanges (no other documents)."""
    corpus.DOCUMENTS_SHARE, corpus.DRILLS_SHARE = 0.0, 0.2


def _few_documents() -> None:
    """An eighth other retail documents, 30% drills, the rest exchanges."""
    corpus.DOCUMENTS_SHARE, corpus.DRILLS_SHARE = 0.125, 0.3


def _careful_agents() -> None:
    """Every agent replies well (the corpus before agents of every quality)."""
    original = agents.agent_documents
    corpus.agent_documents = lambda n, seed=0, values=None: original(n, seed, values, careful=True)


def _old_values() -> None:
    """Slot values in the generator's own shapes only (the pools before open formats), from the
    file named by OLD_OPEN_VALUES (e.g. ``git show 893e52f:part3_pretrain/open_values.py``)."""
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("old_open_values", os.environ["OLD_OPEN_VALUES"])
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    from part3_pretrain import documents

    for module in (agents, documents, domain):
        module.open_pools = old.open_pools


def _drills_first() -> None:
    """Curriculum: the drills at the head of the stream, and the first epoch's windows drawn
    roughly in stream order (each window's key its position plus uniform noise of width
    ``CURRICULUM_WIDTH``), so early batches are mostly drills and exchanges take over; later
    epochs are uniform as before. Same documents, same tokens, same steps."""
    import torch

    from part3_pretrain import data

    original = corpus._dialogue_corpus

    def drills_ahead(n_docs: int, seed: int, documents_share: float) -> list[str]:
        docs = original(n_docs, seed, documents_share)
        drills = set(domain.reference_drills(corpus.corpus_parts(n_docs, documents_share)["drills"], seed))
        return [d for d in docs if d in drills] + [d for d in docs if d not in drills]

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if epoch > 0:
            return torch.randperm(self.n_windows, generator=g)
        position = torch.arange(self.n_windows, dtype=torch.float64) / self.n_windows
        return torch.argsort(position + CURRICULUM_WIDTH * torch.rand(self.n_windows, generator=g, dtype=torch.float64))

    corpus._dialogue_corpus = drills_ahead
    data.TokenWindows._permutation = permutation


CURRICULUM_WIDTH = 0.5


VARIANTS = {
    "default": (),
    "no_variety": (_no_variety,),
    "old_mix": (_old_mix,),
    "few_documents": (_few_documents,),
    "no_variety_old_mix": (_no_variety, _old_mix),
    "careful_no_variety_old_mix": (_careful_agents, _no_variety, _old_mix),
    "no_variety_old_mix_old_values": (_no_variety, _old_mix, _old_values),
    "careful_no_variety_old_mix_old_values": (_careful_agents, _no_variety, _old_mix, _old_values),
    "old_mix_old_values": (_old_mix, _old_values),
    "no_variety_old_values": (_no_variety, _old_values),
    "drills_first": (_drills_first,),
    "drills_fifth": (_drills_fifth,),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("pretrain_args", nargs=argparse.REMAINDER, help="after --: arguments for pretrain")
    args = parser.parse_args(argv)
    for patch in VARIANTS[args.variant]:
        patch()
    rest = args.pretrain_args[1:] if args.pretrain_args[:1] == ["--"] else args.pretrain_args
    return pretrain.main(rest)


if __name__ == "__main__":
    sys.exit(main())
