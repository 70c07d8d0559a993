"""Yardsticks for your own data without training anything: what replies that are real answers score.

The two replies of ``part4_sft/yardsticks.py`` (which ``python -m part4_sft.sft --data ...`` also
scores beside the model in every evaluation), built from the TRAINING file only and scored with
``metrics.rouge_l`` (best of the references) on the test file:

- nearest training answer: the training answer of the training message with the most words in
  common with the test message (Jaccard), a human answer to a similar question;
- best fixed answer: the training answer that scores best against the OTHER training answers
  (chosen on training data only), given to every test message.

The job's own evaluation scores them on its test split after ``--drop-test-overlap`` and with
its validation rows left out of the training rows, so its figures can differ a little from these.

    python bench/own_data_yardsticks.py bench/support_sample/train.jsonl bench/support_sample/test.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from part4_sft.metrics import rouge_l  # noqa: E402
from part4_sft.user_data import load_pairs  # noqa: E402
from part4_sft.yardsticks import LABELS, Yardsticks  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train")
    p.add_argument("test")
    args = p.parse_args()
    train, test = load_pairs(args.train), load_pairs(args.test)
    refs = [r["response"] for r in test]
    scores = {name: statistics.mean(rouge_l(refs, texts)) for name, texts in Yardsticks(train).texts(test).items()}
    print(f"{len(test)} test rows, ROUGE-L: " + ", ".join(f"{LABELS[n]} {s:.3f}" for n, s in scores.items()))


if __name__ == "__main__":
    main()
