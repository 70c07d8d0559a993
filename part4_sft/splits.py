"""Train / validation / test splits for SFT, from the synthetic generator or the user's files.

Synthetic: 5,000 pairs rated by the rubric are written to ``data/sft_dataset.json``; the 500
best-rated train (or, for the filter ablation, a random 500 or all of them); validation contexts
use train slot values, test contexts held-out ones, a second test set also held-out phrasing, and a
third (``test_handwritten``, ``handwritten.py``) is written by hand, in formats the generator does
not use. User data: ``--data`` (pairs and conversations) filtered by its quality column, with ``--test-data`` or a
seeded held-out split by distinct context (``contexts.row_key``); ``--test-data`` rows whose
message occurs in the training data stop the run, or are dropped and counted with
``--drop-test-overlap``. Either way the test set is checked against the training data before
anything trains.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from part3_pretrain.domain import template_leaks
from part3_pretrain.fileio import write_text_atomic
from part3_pretrain.records import is_json_file
from part3_pretrain.slots import find_heldout_leaks

from . import synthetic
from .configs import TRAIN_SETS, DataConfig
from .contexts import row_key
from .handwritten import load_handwritten
from .user_data import DataError, filter_by_quality, load_pairs

# The test sets besides "test" (synthetic data only), in the order they are evaluated and reported;
# evaluation.json keeps each under its name.
OTHER_TEST_SETS: tuple[str, ...] = ("test_unseen", "test_handwritten")


class LeakError(ValueError):
    """Evaluation data that overlaps the training data."""


def check_disjoint(
    train_pairs: Sequence[dict], eval_rows: Sequence[dict], name: str, check_heldout_values: bool
) -> dict:
    """Refuse an evaluation set that shares a context (``contexts.row_key``) with training, or (for
    the synthetic data) training text that contains a held-out slot value. Returns the counts that
    were checked."""
    train_ctx = {row_key(p) for p in train_pairs}
    shared = [r["context"] for r in eval_rows if row_key(r) in train_ctx]
    if shared:
        raise LeakError(f"{len(shared)} {name} contexts also appear in the training data, e.g. {shared[0]!r}")
    result = {f"{name}_contexts": len(eval_rows), "train_contexts": len(train_ctx), "shared_contexts": 0}
    if check_heldout_values:
        leaks = find_heldout_leaks(p["context"] + "\n" + p["response"] for p in train_pairs)
        if leaks:
            raise LeakError(f"training data contains held-out slot values reserved for {name}: {leaks[:5]}")
        result["heldout_values_in_train"] = 0
    return result


@dataclass
class DatasetSplits:
    train: list[dict]  # {"context", "response", ...}
    val: list[dict]  # {"context", "reference", ...}
    test: list[dict]  # {"context", "reference"[, "reference_2"], ...}
    test_unseen: list[dict] = field(default_factory=list)  # unseen phrasing (synthetic data only)
    summary: dict = field(default_factory=dict)
    test_handwritten: list[dict] = field(default_factory=list)  # written by hand (synthetic data only)

    def test_sets(self) -> dict[str, list[dict]]:
        """The held-out test sets by name: "test", then "test_unseen" and "test_handwritten" where
        they are not empty (``OTHER_TEST_SETS``)."""
        others = {"test_unseen": self.test_unseen, "test_handwritten": self.test_handwritten}
        return {"test": self.test, **{name: others[name] for name in OTHER_TEST_SETS if others[name]}}


def choose_train(pairs: list[dict], train_set: str, n_keep: int, seed: int) -> list[dict]:
    """The training pairs: the rubric's best-rated ("hq"), a seeded random sample of the same
    size ("random"), or every generated pair ("all")."""
    if train_set == "hq":
        return [p for p in pairs if p["high_quality"] == 1]
    if train_set == "random":
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
        return [pairs[i] for i in sorted(order[:n_keep])]
    if train_set == "all":
        return list(pairs)
    raise ValueError(f"unknown train set {train_set!r}; choose from {TRAIN_SETS}")


def synthetic_splits(cfg: DataConfig) -> DatasetSplits:
    """Generate, write and rate the synthetic pairs; choose the training pairs; build val and the
    three test sets (unseen slot values; unseen values and phrasing; written by hand); check
    disjointness."""
    pairs = synthetic.generate_pairs(cfg.n_pairs, cfg.n_high_quality, seed=cfg.data_seed)
    write_text_atomic(json.dumps(pairs, indent=1) + "\n", cfg.dataset_path)
    report = synthetic.filter_report(pairs)
    train = choose_train(pairs, cfg.train_set, cfg.n_high_quality, cfg.data_seed)
    print(
        f"quality filter: {report['total']} pairs rated by the rubric ({report['rated_at_least_4']} >= 4.0); "
        f"the {report['high_quality']} best-rated kept (lowest kept {report['kept_min_rating']}); "
        f"training on {cfg.train_set}: {len(train)} pairs",
        flush=True,
    )
    print("  ratings: " + ", ".join(f"{r}: {n}" for r, n in report["rating_histogram"].items()), flush=True)
    all_contexts = [p["context"] for p in pairs]
    val = synthetic.generate_eval_set("val", cfg.n_val, seed=cfg.data_seed, exclude_contexts=all_contexts)
    test = synthetic.generate_eval_set("test", cfg.n_test, seed=cfg.data_seed)
    unseen = synthetic.generate_eval_set("test_unseen", cfg.n_test, seed=cfg.data_seed)
    handwritten = load_handwritten()
    disjoint = {
        "test": check_disjoint(train, test, "test", check_heldout_values=True),
        "test_unseen": check_disjoint(train, unseen, "test_unseen", check_heldout_values=True),
        # hand-written values are not the held-out pool's, so only contexts are checked
        "test_handwritten": check_disjoint(train, handwritten, "test_handwritten", check_heldout_values=False),
        "validation": check_disjoint(train, val, "validation", check_heldout_values=False),
    }
    leaks = template_leaks(p["context"] + "\n" + p["response"] for p in train)
    if leaks:
        raise LeakError(f"training pairs contain held-out phrasing reserved for test_unseen: {leaks[:3]}")
    disjoint["test_unseen"]["heldout_templates_in_train"] = 0
    summary = {
        "source": "synthetic",
        "path": str(cfg.dataset_path),
        "filter": report,
        "train_set": cfg.train_set,
        "train": len(train),
        "val": len(val),
        "test": len(test),
        "test_unseen": len(unseen),
        "test_handwritten": len(handwritten),
        "disjointness": disjoint,
    }
    return DatasetSplits(train, val, test, unseen, summary, test_handwritten=handwritten)


def _as_eval_rows(rows: list[dict]) -> list[dict]:
    """Rows to evaluate on: the context (a conversation's last user message, its "turns" kept),
    the reference reply, the line in the file."""
    return [{"context": r["context"], "reference": r["response"], "line": r.get("line"), **_turns(r)} for r in rows]


def _turns(row: dict) -> dict:
    return {"turns": row["turns"]} if row.get("turns") else {}


def _seeded_split(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(rest, held): a seeded random ``fraction`` of the DISTINCT contexts, with all their rows,
    is held out, so a context repeated in the file never lands on both sides."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(row_key(r), []).append(r)
    keys = list(groups)
    if len(keys) < 3:
        raise DataError("--data", f"need at least 3 distinct contexts to split off held-out data, got {len(keys)}")
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    held_keys = {keys[i] for i in order[: max(1, round(len(keys) * fraction))]}
    rest = [r for k in keys if k not in held_keys for r in groups[k]]
    held = [r for k in keys if k in held_keys for r in groups[k]]
    return rest, held


def remove_test_overlap(cfg: DataConfig, train_rows: list[dict], test_rows: list[dict]) -> tuple[list[dict], int]:
    """The test rows without those whose message (``row_key``) occurs in the training data, and how
    many went: dropped with ``--drop-test-overlap`` (and said so), else refused in one line naming
    the first such row and the flag."""
    train_keys = {row_key(r) for r in train_rows}
    shared = [r for r in test_rows if row_key(r) in train_keys]
    if not shared:
        return test_rows, 0
    where = cfg.test_data if cfg.test_data is not None else cfg.data
    if not cfg.drop_test_overlap:
        raise DataError(
            where,
            f"{len(shared)} of {len(test_rows)} test rows have a message that also occurs in the training "
            f"data {cfg.data} (this row: {shared[0]['context']!r}); pass --drop-test-overlap to drop them",
            shared[0].get("line"),
            record=is_json_file(where),
        )
    kept = [r for r in test_rows if row_key(r) not in train_keys]
    if not kept:
        raise DataError(where, f"all {len(test_rows)} test rows have a message that also occurs in {cfg.data}")
    print(
        f"dropped {len(shared)} of {len(test_rows)} test rows whose message also occurs in the training data "
        "(--drop-test-overlap)",
        flush=True,
    )
    return kept, len(shared)


def user_splits(cfg: DataConfig) -> DatasetSplits:
    """The user's pairs: quality filter, test (file or split), validation split, disjointness."""
    fields = dict(context_field=cfg.context_field, response_field=cfg.response_field, quality_field=cfg.quality_field)
    rows = load_pairs(cfg.data, **fields)
    kept, report = filter_by_quality(rows, cfg.min_quality)
    if not kept:
        raise DataError(
            cfg.data,
            f"the quality filter kept 0 of {len(rows)} rows (--min-quality {cfg.min_quality}); "
            + _quality_hint([r["quality"] for r in rows]),
        )
    if cfg.test_data is not None:
        test_rows = load_pairs(cfg.test_data, context_field=cfg.context_field, response_field=cfg.response_field)
        train_rows = kept
    else:
        train_rows, test_rows = _seeded_split(kept, cfg.test_fraction, cfg.data_seed)
    test_rows, overlap = remove_test_overlap(cfg, train_rows, test_rows)
    train_rows, val_rows = _seeded_split(train_rows, cfg.val_fraction, cfg.data_seed + 1)
    test, val = _as_eval_rows(test_rows), _as_eval_rows(val_rows)
    # Own data has no slot partition to check, but contexts must still not repeat across splits.
    disjoint = {
        "test": check_disjoint(train_rows, test, "test", check_heldout_values=False),
        "validation": check_disjoint(train_rows, val, "validation", check_heldout_values=False),
    }
    summary = {
        "source": "user",
        "path": str(cfg.data),
        "test_path": cfg.test_data,
        "filter": report,
        "conversations": sum(bool(r.get("turns")) for r in kept),
        "train": len(train_rows),
        "val": len(val),
        "test": len(test),
        "test_overlap_dropped": overlap,
        "disjointness": disjoint,
    }
    print(
        f"data: {cfg.data}: {report['total']} rows, {report['kept']} kept by quality ({summary['conversations']} "
        f"of them conversations); {len(train_rows)} train, {len(val)} validation, {len(test)} test",
        flush=True,
    )
    return DatasetSplits(train_rows, val, test, summary=summary)


def _quality_hint(qualities: list) -> str:
    """What --min-quality would keep rows, judged from the labels' range."""
    values = sorted({q for q in qualities if q is not None})
    if set(values) <= {0, 1}:
        return "labels look like 0/1: use --min-quality 1"
    return f"labels range {values[0]:g}..{values[-1]:g}: use a --min-quality in that range"


def load_splits(cfg: DataConfig) -> DatasetSplits:
    return user_splits(cfg) if cfg.data is not None else synthetic_splits(cfg)
