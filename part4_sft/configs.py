"""Part 4's typed config parts: the data a fine-tuning sees and how its replies are evaluated.

``DataConfig`` (the synthetic data's sizes and seed, or the user's files and how to read them) and
``EvalConfig`` (reply length, sampling, bootstrap, examples kept) are defined, documented and
checked here once, and nested with ``cli.part`` in ``sft.SFTConfig`` and the experiment mode's
config, each with its own defaults and the options it leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from part3_pretrain.cli import below, option

TRAIN_SETS = ("hq", "random", "all")  # the quality-filter ablation: best-rated, random, everything
DEFAULT_DATASET_PATH = "data/sft_dataset.json"


@dataclass
class DataConfig:
    """The training, validation and test data: generated, or the user's own files."""

    dataset_path: str = option(DEFAULT_DATASET_PATH, "where the generated 5,000-pair dataset is written")
    data: str | None = option(None, "your own JSON/JSONL/CSV pairs instead of the synthetic data", metavar="PATH")
    test_data: str | None = option(None, "your own held-out test file (else a seeded split of --data)", metavar="PATH")
    context_field: str | None = option(None, "context field of --data (auto-detected if omitted)")
    response_field: str | None = option(None, "response field of --data (auto-detected if omitted)")
    quality_field: str | None = option(None, "quality/rating field of --data (auto-detected if omitted)")
    min_quality: float = option(4.0, "keep pairs whose quality/rating is >= this (0/1 labels: use 1)")
    test_fraction: float = option(0.1, "share of --data held out for testing when --test-data is absent")
    val_fraction: float = option(0.1, "share of --data (after the test split) used for validation loss")
    n_pairs: int = option(5000, "synthetic pairs generated")
    n_high_quality: int = option(500, "best-rated synthetic pairs kept for training")
    train_set: str = option(
        "hq", "synthetic training pairs: the best-rated (hq), as many at random, or all", choices=TRAIN_SETS
    )
    n_val: int = option(100, "synthetic validation contexts")
    n_test: int = option(250, "synthetic held-out test contexts")
    data_seed: int = option(0, "seed of the synthetic data and of --data splits")
    drop_test_overlap: bool = option(
        False,
        "drop the --test-data rows whose message also occurs in --data (else such overlap stops the run)",
    )

    @property
    def name(self) -> str:
        """The file training reads: the user's, or the generated dataset."""
        return self.data if self.data is not None else self.dataset_path

    def problems(self) -> list[str]:
        p = below(self, ("n_pairs", "n_high_quality", "n_val", "n_test"), 1)
        if self.n_high_quality > self.n_pairs:
            p.append(f"--n-high-quality ({self.n_high_quality}) cannot exceed --n-pairs ({self.n_pairs})")
        for name in ("test_fraction", "val_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                p.append(f"--{name.replace('_', '-')} must be in (0, 0.5) (got {getattr(self, name)})")
        for name in ("data", "test_data"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                p.append(f"--{name.replace('_', '-')} {path}: no such file")
        if self.test_data is not None and self.data is None:
            p.append("--test-data needs --data")
        if self.drop_test_overlap and self.data is None:
            p.append("--drop-test-overlap applies to --data (the generated test sets never overlap training)")
        if self.data is not None and self.train_set != "hq":
            p.append("--train-set applies to the synthetic data (use --min-quality with --data)")
        return p


AUTO = "auto"


def _as_tokens(value: int | str) -> int | str:
    """``--max-new-tokens`` as given: "auto", or an integer (from the command line's text too)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return value


@dataclass
class EvalConfig:
    """How replies are generated and scored on held-out data."""

    max_new_tokens: str = option(
        AUTO,
        "longest generated reply in tokens; auto: 90 for the generated data, for --data the 99th "
        "percentile of the training replies + EOS (leaving the prompt at least 32 tokens)",
        metavar="N|auto",
    )
    temperature: float = option(0.7, "sampling temperature of the sampled evaluation (greedy is always run)")
    top_k: int = option(0, "top-k for sampling (0: off)")
    top_p: float = option(1.0, "nucleus top-p for sampling (1: off)")
    no_repeat_ngram: int = option(
        4,
        "ban any token that would repeat an n-gram of this many tokens within a reply, or say a shorter one a "
        "third time in a row, reading through punctuation (0: off; what the message holds may be repeated). "
        "4: chosen on validation data (README), it stops loops",
        metavar="N",
    )
    copy_mix: float = option(
        0.2,
        "blend this share of copying from the message into each next-token distribution, where the reply's last "
        "--copy-min tokens or more occur in the message (0: off). 0.2: chosen on validation data (README), it "
        "mends values the model starts to restate and garbles",
        metavar="W",
    )
    copy_min: int = option(
        1, "shortest run of reply tokens found in the message that the copy blend follows", metavar="N"
    )
    ground_values: bool = option(
        True,
        "hold the order ids a reply writes after '#' and the amounts after a currency sign to those the message "
        "holds, spelled as it spells them, each once, and ban the mark where it holds none (--no-ground-values: "
        "off). Chosen on validation data (README)",
    )
    ground_names: bool = option(
        True,
        "let a reply write a capitalised word (a name, a product, a carrier) only as the message has it or as the "
        "model's training replies write it of their own (--no-ground-names: off). Chosen on validation data (README)",
    )
    n_boot: int = option(1000, "bootstrap resamples for the confidence intervals")
    n_examples: int = option(
        12, "examples in evaluation.json: SFT wins, losses and ties (every reply is in generations.jsonl)"
    )

    def __post_init__(self) -> None:
        self.max_new_tokens = _as_tokens(self.max_new_tokens)

    def problems(self) -> list[str]:
        p = below(self, ("n_boot",), 1) + below(self, ("temperature", "top_k", "n_examples", "no_repeat_ngram"), 0)
        n = self.max_new_tokens
        if n != AUTO and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            p.append(f"--max-new-tokens must be an integer >= 1 or auto (got {n!r})")
        if not 0 < self.top_p <= 1:
            p.append(f"--top-p must be in (0, 1] (got {self.top_p})")
        if not 0 <= self.copy_mix < 1:
            p.append(f"--copy-mix must be in [0, 1) (got {self.copy_mix})")
        if self.copy_min < 1:
            p.append(f"--copy-min must be >= 1 (got {self.copy_min})")
        return p

    def new_tokens(self) -> int:
        """``max_new_tokens`` as a number; "auto" must have been resolved first (``resolved``)."""
        if not isinstance(self.max_new_tokens, int):
            raise ValueError(f"max_new_tokens {self.max_new_tokens!r} is not resolved to a number of tokens")
        return self.max_new_tokens

    def resolved(self, auto: int) -> EvalConfig:
        """A copy whose ``max_new_tokens`` is a number: ``auto`` where it is "auto"."""
        return replace(self, max_new_tokens=auto if self.max_new_tokens == AUTO else self.max_new_tokens)
