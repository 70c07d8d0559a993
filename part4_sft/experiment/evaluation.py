"""Evaluation of a run: interval evaluation during training, and the final evaluation at its end.

Model selection never sees the test set:

- ``val/loss``, ``val/token_acc``: the validation pairs' teacher-forced loss and token accuracy,
  before training, every ``evals_per_epoch``-th of an epoch and at the end;
- ``val_gen/<key>``: greedy float32 replies to a fixed subset of the VALIDATION rows (the first
  ``val_gen_rows``) at the same times, scored by ``evaluate.score``; ``<key>`` is every
  ``evaluate.scalars`` value the data supports (specifics_recall, invented_share,
  intent_accuracy, rubric_pass, rubric_mean, rouge_l, bleu, eos_stop_rate) plus mean_length;
- ``final_val/<key>``: once, at the end, greedy replies to the WHOLE validation split, the same
  keys plus CIs (``<key>_ci_low``/``_ci_high``). This is what picks the best run (report.py);
- ``final/<key>``: once, at the end, greedy replies to the whole held-out TEST set, the same keys
  and CIs plus ``sentence_bleu``, ``ref_loss``/``ref_token_acc`` (teacher-forced loss of the first
  references) and ``eval_seconds``. Reported, never used to choose anything.

At the last step the subset's ``val_gen/`` values come from the whole-validation replies (same
model, same decoding), so the subset is not generated twice. Job metrics a dataset cannot support
(rows without ``intent``/``slots``) are absent, never logged as 0. ``evaluation.json`` keeps both
full reports (job metrics with CIs, text metrics, stop statistics) and the first test replies.
Every scalar goes to TensorBoard and metrics.jsonl through the one ``MetricsSink``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from part3_pretrain.checkpoint import model_checkpoint
from part3_pretrain.data import mean_loss
from part3_pretrain.fileio import save_atomic, write_text_atomic
from part3_pretrain.model import GPT
from part3_pretrain.name_grounding import ReplyWords
from part3_pretrain.sink import MetricsSink
from part3_pretrain.tokenizer import RetailTokenizer
from part3_pretrain.trainer import Trainer

from .. import evaluate as ev
from ..job_metrics import JOB_KEYS
from ..lora import save_adapter
from ..prompts import get_scheme
from .runs import AUTO_NEW_TOKENS, RunConfig, RunSettings


def greedy_replies(
    model: GPT,
    tok: RetailTokenizer,
    prompt: str,
    rows: list[dict],
    settings: RunSettings,
    batch_size: int,
    names: ReplyWords | None = None,
) -> dict:
    """Greedy replies to ``rows``, ``batch_size`` prompts at once, in float32 (as part4_sft.sft
    generates, even inside the trainer's autocast): ``evaluate.generate_replies``'s dict (texts,
    stopped_by_eos, lengths). ``names``: the run's training replies' own capitalised words
    (``evaluate.decoder_rules``)."""
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type=device_type, enabled=False):
        contexts = [r["context"] for r in rows]
        seed = settings.dataset.data_seed
        evaluation = settings.evaluation.resolved(AUTO_NEW_TOKENS)  # "auto": the synthetic data's 90
        return ev.generate_replies(model, tok, get_scheme(prompt), contexts, evaluation, 0.0, seed, batch_size, names)


def score_replies(rows: list[dict], replies: dict, settings: RunSettings) -> dict:
    """``evaluate.score``'s report of ``replies`` to ``rows``: job metrics (with CIs), text metrics
    against every reference of a row, stop statistics."""
    report, _ = ev.score(rows, replies, settings.evaluation.n_boot, settings.dataset.data_seed)
    return report


def flat_scalars(report: dict, with_ci: bool = True) -> dict[str, float]:
    """The scalars of one report that go to TensorBoard: every ``evaluate.scalars`` value the data
    supports (absent job metrics are left out, never 0), mean_length, and with ``with_ci`` the
    95% CI bounds of the job metrics, ROUGE-L and BLEU (``<key>_ci_low`` / ``<key>_ci_high``)."""
    out = {k: float(v) for k, v in ev.scalars(report).items() if v is not None}
    out["mean_length"] = float(report["mean_length"])
    if with_ci:
        cis = {k: (report["job"][k] or {}).get("ci") for k in JOB_KEYS}
        cis.update(rouge_l=report["rouge_l_ci"], bleu=report["bleu_ci"])
        for k, ci in cis.items():
            if ci is not None:
                out[f"{k}_ci_low"], out[f"{k}_ci_high"] = float(ci[0]), float(ci[1])
    return out


def _head(replies: dict, n: int) -> dict:
    return {k: v[:n] for k, v in replies.items()}


class IntervalEval:
    """The trainer's evaluate callback: validation loss/accuracy (returned, logged as ``val/``) and
    greedy generation metrics on a fixed subset of the VALIDATION rows (logged here as
    ``val_gen/``). The test set is never touched here. At the last step the subset's values come
    from the final whole-validation replies instead (same model, same decoding), so the subset is
    not generated twice. ``batch_size``: prompts generated at once (an execution setting)."""

    def __init__(
        self,
        run: RunConfig,
        tok: RetailTokenizer,
        val_batches: list,
        subset: list[dict],
        sink: MetricsSink,
        max_steps: int,
        batch_size: int,
        names: ReplyWords | None = None,
    ) -> None:
        self.run, self.tok, self.val_batches, self.subset, self.sink = run, tok, val_batches, subset, sink
        self.max_steps, self.batch_size, self.names = max_steps, batch_size, names
        self.trainer: Trainer | None = None
        self.last: dict = {}

    def __call__(self, model: GPT) -> dict:
        result = mean_loss(model, self.val_batches)
        step = self.trainer.step if self.trainer is not None else 0
        if step < self.max_steps:
            replies = greedy_replies(
                model, self.tok, self.run.knobs.prompt, self.subset, self.run.settings, self.batch_size, self.names
            )
            self.log_generation(score_replies(self.subset, replies, self.run.settings), step)
        return result

    def log_generation(self, report: dict, step: int) -> None:
        self.last = {f"val_gen/{k}": v for k, v in flat_scalars(report, with_ci=False).items()}
        self.sink.log(self.last, step)


@torch.no_grad()
def final_evaluation(
    model: GPT,
    tok: RetailTokenizer,
    run: RunConfig,
    val_rows: list[dict],
    test_rows: list[dict],
    batch_size: int,
    names: ReplyWords | None = None,
) -> dict:
    """The end of a run, greedy: the WHOLE validation split (what selects runs; its first
    ``val_gen_rows`` rows also give the last ``val_gen/`` point), then the whole held-out test
    set, once (reported, never used to choose), with the teacher-forced loss of its references.
    Both reports carry bootstrap CIs as part4_sft.sft's."""
    s = run.settings
    model.eval()
    t0 = time.perf_counter()
    val_replies = greedy_replies(model, tok, run.knobs.prompt, val_rows, s, batch_size, names)
    val_report = score_replies(val_rows, val_replies, s)
    n = min(s.val_gen_rows, len(val_rows))
    subset = score_replies(val_rows[:n], _head(val_replies, n), s)
    replies = greedy_replies(model, tok, run.knobs.prompt, test_rows, s, batch_size, names)
    report, judged = ev.score(test_rows, replies, s.evaluation.n_boot, s.dataset.data_seed)
    ref = ev.reference_loss(model, tok, get_scheme(run.knobs.prompt), test_rows)
    test_scalars = {
        **flat_scalars(report),
        "sentence_bleu": report["sentence_bleu"],
        "ref_loss": ref["loss"],
        "ref_token_acc": ref["token_accuracy"],
        "eval_seconds": time.perf_counter() - t0,
    }
    return {
        "selection": "runs are compared and the best is picked on validation only (final_val/); "
        "the test set is scored once per run, here, and never used to choose",
        "test_rows": len(test_rows),
        "val_rows": len(val_rows),
        "val_gen_rows": n,
        "test": {"greedy": report, "reference_loss": ref, "scalars": test_scalars},
        "validation": {"greedy": val_report, "scalars": flat_scalars(val_report)},
        "val_subset": subset,
        "examples": _examples(test_rows[: s.evaluation.n_examples], replies, judged),
        "generations": [{"split": "test", "row": i, **e} for i, e in enumerate(_examples(test_rows, replies, judged))],
    }


def _examples(rows: list[dict], replies: dict, judged: list[dict]) -> list[dict]:
    """The first test rows with their greedy reply, how it stopped and how it was judged."""
    return [
        {
            "context": r["context"],
            "references": refs,
            "intent": r.get("intent"),
            "greedy": replies["texts"][i],
            "stopped_by": "eos" if replies["stopped_by_eos"][i] else "length",
            "rating": judged[i]["rating"],
            "failed_rules": judged[i]["rules"],
            "specifics": judged[i]["specifics"],
            "specifics_hit": judged[i]["specifics_hit"],
            "invented": judged[i]["invented"],
        }
        for i, (r, refs) in enumerate(zip(rows, ev.references(rows), strict=False))
    ]


def finish_run(
    run: RunConfig,
    run_dir: Path,
    model: GPT,
    tok: RetailTokenizer,
    val_rows: list[dict],
    test_rows: list[dict],
    step: int,
    sink: MetricsSink,
    evaluator: IntervalEval,
) -> dict:
    """The end of a run: final evaluation (logged as final_val/, final/ and the subset's last
    val_gen/ point, generated as ``evaluator``'s are), weights for clones and users (adapter.pt,
    or model.pt for full fine-tuning), evaluation.json and every test reply in generations.jsonl.
    Returns the final scalars."""
    result = final_evaluation(model, tok, run, val_rows, test_rows, evaluator.batch_size, evaluator.names)
    evaluator.log_generation(result["val_subset"], step)
    final = {
        **{f"final_val/{k}": v for k, v in result["validation"]["scalars"].items()},
        **{f"final/{k}": v for k, v in result["test"]["scalars"].items()},
    }
    sink.log(final, step)
    if run.knobs.adapter.method == "lora":
        save_adapter(model, run.knobs.adapter.lora_config(), run_dir / "adapter.pt")
    else:
        words = evaluator.names.to_dict() if evaluator.names is not None else None
        save_atomic(model_checkpoint(model, tok, run_config=run.to_dict(), reply_words=words), run_dir / "model.pt")
    records = "".join(json.dumps(r) + "\n" for r in result["generations"])  # every test reply
    write_text_atomic(records, run_dir / "generations.jsonl")
    doc = {"run": run.to_dict(), **{k: v for k, v in result.items() if k not in ("val_subset", "generations")}}
    write_text_atomic(json.dumps(doc, indent=2) + "\n", run_dir / "evaluation.json")
    return final
