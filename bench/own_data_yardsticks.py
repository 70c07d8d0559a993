"""Yardsticks for ROUGE-L on your own data (run by hand): what replies that are real answers score.

Two replies that need no model, scored like the fine-tuned model's (``metrics.rouge_l``, best of
the references) on the held-out test rows:

- nearest neighbour: the training answer of the training message with the most words in common
  with the test message (Jaccard), a human answer to a similar question;
- one answer for all: the training answer that scores best against the OTHER training answers
  (chosen on training data only), given to every test message.

On data whose answers are long and varied these bound what ROUGE-L can say about a model: a reply
can be right and share few words with the reference.

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


def _words(text: str) -> set[str]:
    return set(text.lower().split())


def nearest_answers(train: list[dict], test: list[dict]) -> list[str]:
    """For each test row, the answer of the training row whose message shares most words with it."""

    def similarity(a: str, b: str) -> float:
        wa, wb = _words(a), _words(b)
        return len(wa & wb) / max(1, len(wa | wb))

    return [max(train, key=lambda t: similarity(t["context"], r["context"]))["response"] for r in test]


def one_answer_for_all(train: list[dict]) -> str:
    """The training answer with the best mean ROUGE-L against the other training answers."""
    answers = [t["response"] for t in train]

    def score(i: int) -> float:
        others = answers[:i] + answers[i + 1 :]
        return statistics.mean(rouge_l(others, [answers[i]] * len(others)))

    return answers[max(range(len(answers)), key=score)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train")
    p.add_argument("test")
    args = p.parse_args()
    train, test = load_pairs(args.train), load_pairs(args.test)
    refs = [r["response"] for r in test]
    nn = statistics.mean(rouge_l(refs, nearest_answers(train, test)))
    const = statistics.mean(rouge_l(refs, [one_answer_for_all(train)] * len(refs)))
    print(f"{len(test)} test rows: ROUGE-L nearest-neighbour answer {nn:.3f}, one answer for all {const:.3f}")


if __name__ == "__main__":
    main()
