"""``python -m part4_sft.sft``: supervised fine-tuning on 500 high-quality pairs, honestly evaluated.

1. data: 5,000 synthetic (context, response) pairs rated by a rubric (``data/sft_dataset.json``),
   the 500 best-rated kept; a validation split and two held-out test sets: contexts with slot
   values that no training text contains, and contexts that also use phrasing no training text
   contains (both checked, not assumed). ``--data`` uses your own file.
2. model: the part-3 checkpoint (pretrained first if it is missing), loaded strictly; an
   untouched copy is kept as the baseline.
3. training: prompt + response + EOS, context masked out of the loss (audited; a conversation of
   your own trains every assistant turn), 5 epochs of Adam at LR 5e-5 through the shared trainer;
   ``--max-new-tokens auto`` fitted to the data, and whatever does not fit the context counted
   and warned about (``fit.py``).
4. evaluation: the SFT model, and the pretrained one both in the fine-tuning prompt and in its
   own corpus format, on the same held-out prompts and seed: job metrics (specifics recall,
   invented specifics, intent accuracy, rubric) and text metrics, beside two yardsticks that need no
   model (``yardsticks.py``: the nearest training answer, the best fixed answer) -> ``evaluation.json``;
   every reply -> ``generations.jsonl``; ``loss_curve.png``; ``sft_model.pt``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from part3_pretrain.checkpoint import CheckpointError, load_checkpoint, load_model
from part3_pretrain.cli import (
    ConfigError,
    below,
    check_config,
    flat_dict,
    leaf_names,
    option,
    part,
    refuse_changed,
    run_main,
)
from part3_pretrain.configs import ExecConfig, OptimConfig
from part3_pretrain.data import mean_loss
from part3_pretrain.fileio import write_text_atomic
from part3_pretrain.flops import FORMULA, forward_flops, training_flops
from part3_pretrain.model import GPT
from part3_pretrain.name_grounding import ReplyWords
from part3_pretrain.plot import plot_losses
from part3_pretrain.sink import MetricsSink, read_metrics
from part3_pretrain.tokenizer import TokenizerError
from part3_pretrain.trainer import (
    Trainer,
    TrainerConfig,
    TrainingDiverged,
    close_distributed,
    dist_info,
)

from . import evaluate as ev
from . import fit, job_metrics
from .base_model import DEFAULT_PRETRAINED, ensure_base, ensure_data_base, unfinished
from .configs import AUTO, DataConfig, EvalConfig
from .examples import LabelAuditError, SFTBatches, audit_labels, build_examples, fixed_batches, mean_step_tokens
from .prompts import SCHEMES, get_scheme
from .report_html import write_report_html_or_note
from .retrieval import add_retrieved
from .splits import OTHER_TEST_SETS, DatasetSplits, LeakError, load_splits
from .user_data import DataError
from .yardsticks import LABELS as YARDSTICK_LABELS
from .yardsticks import YARDSTICKS, Yardsticks, yardstick_replies

PROG = "python -m part4_sft.sft"


@dataclass
class SFTConfig:
    """``python -m part4_sft.sft``; defaults fine-tune and evaluate in ~2 min on 2 CPU cores."""

    pretrained: str = option(
        DEFAULT_PRETRAINED,
        "part-3 checkpoint (the default one is pretrained first if missing; with --data and no "
        "--pretrained, a base with a context that fits your data is pretrained on the generated "
        "corpus plus your training split, at the default base's compute)",
    )
    out_dir: str = option("checkpoints/sft", "directory for sft_model.pt, loss_curve.png, evaluation.json")
    dataset: DataConfig = part(DataConfig())
    prompt_scheme: str = option(
        "dialogue",
        "prompt template (dialogue: the pretraining corpus's own Customer:/Agent: format)",
        choices=tuple(SCHEMES),
    )
    retrieve: int = option(
        0,
        "with --data: put the K training exchanges most similar to each message before it in the prompt, "
        "in training (never the row's own) and evaluation alike (0: off)",
        metavar="K",
    )
    epochs: int = option(5, "passes over the training pairs")
    max_steps: int = option(0, "optimizer steps (0: --epochs passes; set it to compare data sets at equal steps)")
    optim: OptimConfig = part(
        OptimConfig(lr=5e-5, optimizer="adam", schedule="constant", beta2=0.999, batch_size=1),
        help={
            "lr": "learning rate",
            "batch_size": "pairs per optimizer step (small: at LR 5e-5 the model needs many Adam steps to move)",
        },
    )
    evaluation: EvalConfig = part(EvalConfig())
    seed: int = option(0, "seed for data order and sampling")
    resume: bool = option(False, "continue an interrupted fine-tuning in --out-dir")
    execution: ExecConfig = part(ExecConfig(), omit=("compile", "threads"))

    def problems(self) -> list[str]:
        p = below(self, ("epochs",), 1) + below(self, ("max_steps", "retrieve"), 0)
        if self.retrieve and self.dataset.data is None:
            p.append("--retrieve applies to --data (the generated data's 160-token context has no room for it)")
        if self.pretrained != DEFAULT_PRETRAINED and not Path(self.pretrained).is_file():
            p.append(f"--pretrained {self.pretrained}: no such checkpoint file")
        return p

    def trainer_config(self, max_steps: int, steps_per_epoch: int, step_tokens: int) -> TrainerConfig:
        return TrainerConfig(
            max_steps=max_steps,
            **self.optim.trainer_fields(),
            eval_every=steps_per_epoch,
            checkpoint_every=steps_per_epoch,
            **self.execution.trainer_fields(),
            step_tokens=step_tokens,
            desc="sft",
        )


# ---------------------------------------------------------------------------------------------


def fits_data(cfg: SFTConfig) -> bool:
    """``--data`` without ``--pretrained``: the base is one pretrained for the user's data."""
    return cfg.dataset.data is not None and cfg.pretrained == DEFAULT_PRETRAINED


def ensure_pretrained(cfg: SFTConfig, train_rows: list[dict]) -> Path:
    """The base checkpoint, pretrained first when missing: ``--pretrained`` (the default one only
    is pretrained on demand) or, for ``--data`` without ``--pretrained``, a base fitted to the
    training split (``base_model.ensure_data_base``).

    Part 3 runs as a child process (``base_model.ensure_base``, as in the experiment mode): its
    corpus, tokenizer trainer and activations are freed when it exits, so the peak memory of the
    whole job is the larger of the two stages, not their sum.
    """
    ex = cfg.execution
    if fits_data(cfg):
        return Path(ensure_data_base(train_rows, ex.device, ex.dtype, ex.progress, cfg.retrieve)["path"])
    announce = f"no pretrained checkpoint at {Path(cfg.pretrained)}: running part 3 pretraining first (defaults)"
    info = ensure_base(cfg.pretrained, DEFAULT_PRETRAINED, {}, ex.device, ex.dtype, ex.progress, announce)
    return Path(info["path"])


def load_baseline(path: Path, synthetic: bool = True) -> tuple[GPT, object, dict]:
    """The pretrained model (strict, weights_only). For an evaluation on the synthetic test sets
    (``synthetic``), a corpus that held one of their held-out slot values is refused; the user's
    own data has no such partition (its text may well hold "Amara" or "$34.50")."""
    model, tok, ckpt = load_model(path)
    leaks = ckpt.get("corpus_heldout_leaks")
    if leaks and synthetic:
        raise LeakError(f"{path}: its pretraining corpus contains held-out slot values {leaks[:5]}")
    return model, tok, ckpt


def assert_untouched(model: GPT, ckpt: dict) -> None:
    """The baseline we report must be exactly the checkpoint's weights."""
    state = model.state_dict()
    changed = [k for k, v in ckpt["model"].items() if not torch.equal(state[k].cpu(), v.cpu())]
    if changed:
        raise RuntimeError(f"the pretrained baseline was modified during fine-tuning: {changed[:3]}")


def weight_change(base: GPT, tuned: GPT) -> float:
    """Largest absolute change of any weight (0 would mean SFT changed nothing)."""
    b, t = base.state_dict(), tuned.state_dict()
    return max(float((t[k].float().cpu() - b[k].float().cpu()).abs().max()) for k in b)


def check_examples(cfg: SFTConfig, counts: dict, block_size: int, world: int, hint: int, cut_hint: int) -> None:
    """Refuse training data that leaves less than one batch; warn when more than 1% of the rows are
    dropped (reply too long) or cut (context too long). ``hint``: the tokens that would hold the
    longest reply with a prompt; ``cut_hint``: the longest training row whole."""
    dropped, pairs = counts["dropped_response_too_long"], counts["pairs"]
    own, fitted = cfg.dataset.data is not None, fits_data(cfg)
    if counts["examples"] < cfg.optim.batch_size * world:
        raise DataError(
            cfg.dataset.name,
            f"{counts['examples']} of {pairs} training pairs are usable, fewer than one "
            f"batch of {cfg.optim.batch_size * world}: {dropped} dropped because the response and EOS "
            f"do not fit the model's {block_size}-token context; use shorter responses or a base with a "
            f"longer --block-size ({fit.fix_hint(hint, own, fitted)})",
        )
    for line in fit.train_warnings(counts, block_size, hint, cut_hint, own, fitted):
        print(line, flush=True)


def fit_to_base(cfg: SFTConfig, splits: DatasetSplits, tok, block: int) -> tuple[SFTConfig, dict]:
    """The config evaluation runs with (``--max-new-tokens auto`` resolved for this data and base,
    and printed) and evaluation.json's ``data_fit``: the reply budget, the test prompts cut to fit
    beside it (warned about past 1%), and a --block-size that would hold every training reply."""
    scheme = get_scheme(cfg.prompt_scheme)
    lengths = fit.reply_lengths(tok, scheme, splits.train)
    new_tokens = fit.resolve_max_new_tokens(cfg.evaluation, cfg.dataset.data is None, lengths, block)
    print(f"max new tokens: {new_tokens['value']} ({new_tokens['why']})", flush=True)
    own = cfg.dataset.data is not None
    cut, warnings = fit.cut_test_prompts(
        tok, scheme, splits.test_sets(), block, new_tokens["value"], own, fits_data(cfg)
    )
    for line in warnings:
        print(line, flush=True)
    report = {"max_new_tokens": new_tokens, "test_prompts_cut": cut, "block_size_hint": fit.block_size_hint(lengths)}
    if cfg.retrieve:
        report["retrieval"] = fit.retrieval_kept(tok, scheme, splits, block, new_tokens["value"], cfg.retrieve)
        print(fit.retrieval_line(report["retrieval"]), flush=True)
    return replace(cfg, evaluation=cfg.evaluation.resolved(new_tokens["value"])), report


def _val_batches(tok, scheme, splits: DatasetSplits, block_size: int) -> list[dict[str, torch.Tensor]]:
    """The validation loss's fixed batches: the val split's contexts with their references."""
    val_examples, _ = build_examples(tok, scheme, [{**r, "response": r["reference"]} for r in splits.val], block_size)
    return fixed_batches(val_examples, 32, tok.pad_id, block_size)


def _checkpoint_meta(
    cfg: SFTConfig, model: GPT, tok, scheme_name: str, base_path: Path | None, train: list[dict]
) -> dict:
    """What sft_model.pt says about itself besides its tensors: enough for the chat to load it
    alone, the words its replies may write of their own (the name grounding) included."""
    return {
        "model_config": model.config.to_dict(),
        "tokenizer": tok.to_str(),
        "prompt_scheme": scheme_name,
        "sft_config": flat_dict(cfg),
        "base_checkpoint": str(base_path) if base_path is not None else None,
        "reply_words": ev.training_reply_words(train).to_dict(),
    }


def _checked_examples(cfg: SFTConfig, tok, scheme, train: list[dict], block_size: int) -> tuple[list, dict, dict]:
    """The training examples, their counts (stopping on data that does not fit) and the label audit."""
    examples, ex_counts = build_examples(tok, scheme, train, block_size)
    hint = fit.block_size_hint(fit.reply_lengths(tok, scheme, train))
    cut_hint = max(fit.example_lengths(tok, scheme, train))
    check_examples(cfg, ex_counts, block_size, dist_info().world, hint, cut_hint)
    return examples, ex_counts, audit_labels(examples, tok)


def fine_tune(
    cfg: SFTConfig,
    model: GPT,
    tok,
    splits: DatasetSplits,
    out: Path,
    scheme_name: str,
    resume: dict | None = None,
    base_path: Path | None = None,
):
    """Audit the examples, then train in ``out`` (the checkpoint names ``base_path``); returns (the
    run's whole metrics history, even after a resume; audit/example counts; seconds)."""
    scheme = get_scheme(scheme_name)
    examples, ex_counts, audit = _checked_examples(cfg, tok, scheme, splits.train, model.config.block_size)
    val_batches = _val_batches(tok, scheme, splits, model.config.block_size)
    rank, world, _ = dist_info()
    source = SFTBatches(examples, cfg.optim.batch_size, tok.pad_id, cfg.seed, rank, world, model.config.block_size)
    steps_per_epoch = -(-source.steps_per_epoch // cfg.optim.grad_accum)
    step_tokens = mean_step_tokens(examples, cfg.optim.batch_size)
    tcfg = cfg.trainer_config(cfg.max_steps or cfg.epochs * steps_per_epoch, steps_per_epoch, step_tokens)
    ckpt_path = out / "sft_model.pt"
    sink = MetricsSink(
        out / "metrics.jsonl", enabled=rank == 0, resume_step=resume["trainer"]["step"] if resume else None
    )
    meta = _checkpoint_meta(cfg, model, tok, scheme_name, base_path, splits.train)
    trainer = Trainer(
        model,
        source,
        tcfg,
        sink=sink,
        evaluate=lambda m: mean_loss(m, val_batches),
        checkpoint_path=ckpt_path,
        checkpoint_meta=meta,
    )
    if resume is not None:
        trainer.load_state_dict(resume)
    if rank == 0:
        print(f"fine-tuning precision: {trainer.dtype_note}", flush=True)
    t0 = time.perf_counter()
    trainer.fit()
    sink.close()
    counts = {
        **ex_counts,
        "audit": audit,
        "steps": tcfg.max_steps,
        "steps_per_epoch": steps_per_epoch,
        "tokens_processed": trainer.tokens_seen,
        "precision": trainer.dtype_note,
    }
    return read_metrics(out / "metrics.jsonl"), counts, time.perf_counter() - t0


STAGE = ".incomplete"  # a run lives in OUT/.incomplete until it succeeds, then replaces OUT's files
OUTPUTS = ("sft_model.pt", "metrics.jsonl", "evaluation.json", "generations.jsonl", "loss_curve.png", "report.html")
# Settings that --resume may change: where and how it runs, and how the result is evaluated.
# Everything else decides what is trained, and a change would make the resumed run another run.
RESUME_FREE = frozenset({"out_dir", "dataset_path", "resume", *leaf_names(ExecConfig), *leaf_names(EvalConfig)})


def _resume_checkpoint(cfg: SFTConfig, out: Path) -> dict | None:
    """The checkpoint --resume continues (an interrupted run's, else a finished one's), checked
    to be the same run; None without --resume."""
    if not cfg.resume:
        return None
    stage, final = out / STAGE / "sft_model.pt", out / "sft_model.pt"
    path = stage if stage.is_file() else final
    if not path.is_file():
        raise ConfigError(f"--resume: nothing to resume in {out} (no {stage} or {final})")
    ckpt = load_checkpoint(path)
    current = flat_dict(cfg)
    refuse_changed(path, ckpt.get("sft_config") or {}, current, [k for k in current if k not in RESUME_FREE])
    return ckpt


def check_against_base(cfg: SFTConfig, model: GPT, tok, path: Path, resume: dict | None) -> None:
    """Limits that need the checkpoint, checked before anything is written."""
    block = model.config.block_size
    if cfg.evaluation.max_new_tokens != AUTO and cfg.evaluation.max_new_tokens >= block:
        raise ConfigError(
            f"--max-new-tokens {cfg.evaluation.max_new_tokens} leaves no room for a prompt in the "
            f"{block}-token context of {path}; use at most {block // 2}"
        )
    if resume is not None and (
        resume.get("model_config") != model.config.to_dict() or resume.get("tokenizer") != tok.to_str()
    ):
        raise CheckpointError(
            f"--resume: the run in {cfg.out_dir} was fine-tuned from a different base than "
            f"{path} (model config or tokenizer differ); resume with the base it started from"
        )


def _prepare_stage(out: Path, resume: dict | None) -> Path:
    """OUT/.incomplete, emptied for a new run; for --resume of a finished run, seeded with its files."""
    stage = out / STAGE
    if resume is None and stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    for name in ("sft_model.pt", "metrics.jsonl"):
        if resume is not None and not (stage / name).exists() and (out / name).exists():
            shutil.copy2(out / name, stage / name)
    return stage


def _publish(stage: Path, out: Path) -> None:
    """Move the finished run's files over OUT's (each an atomic rename), then drop the stage."""
    for name in OUTPUTS:
        if (stage / name).exists():
            os.replace(stage / name, out / name)
    shutil.rmtree(stage)


def _load_base(cfg: SFTConfig, path: Path, resume: dict | None):
    base, tok, ckpt = load_baseline(path, synthetic=cfg.dataset.data is None)
    check_against_base(cfg, base, tok, path, resume)
    return path, base, tok, ckpt


def _base_and_splits(cfg: SFTConfig, resume: dict | None) -> tuple[tuple, DatasetSplits]:
    """The base (path, model, tokenizer, checkpoint) and the data splits. A finished base given
    by path is loaded before the data is read, so its problems come first; a missing, unfinished
    or data-fitted one is made by ``ensure_pretrained`` once the training rows are known."""
    given = Path(cfg.pretrained)
    ready = given.is_file() and unfinished(given) is None and not fits_data(cfg)
    loaded = _load_base(cfg, given, resume) if ready else None
    splits = load_splits(cfg.dataset)  # every data problem surfaces here, before any model work
    if loaded is None:
        loaded = _load_base(cfg, ensure_pretrained(cfg, splits.train), resume)
    return loaded, splits


def run(cfg: SFTConfig) -> dict:
    """Fine-tune and evaluate as configured; returns the evaluation dict (also written to disk).

    Every check comes before any output is touched; the run trains and writes in OUT/.incomplete
    and its files replace OUT's only when it has succeeded (a failing run leaves the last ones).
    """
    check_config(cfg)
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    resume = _resume_checkpoint(cfg, out)
    (pretrained_path, base, tok, base_ckpt), splits = _base_and_splits(cfg, resume)
    splits = add_retrieved(splits, cfg.retrieve)
    eval_cfg, data_fit = fit_to_base(cfg, splits, tok, base.config.block_size)
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(base)  # the object we fine-tune; `base` is never handed to the trainer
    stage = _prepare_stage(out, resume)
    history, train_counts, t_train = fine_tune(
        cfg, model, tok, splits, stage, cfg.prompt_scheme, resume, pretrained_path
    )
    if dist_info().rank != 0:
        close_distributed()  # rank 0 evaluates and publishes alone, then leaves the group too
        return {}
    assert_untouched(base, base_ckpt)
    model.cpu()
    t_eval = time.perf_counter()
    evaluation, records = evaluate_all(eval_cfg, base, model, tok, splits)
    evaluation["timings_seconds"] = {
        "training": round(t_train, 1),
        "evaluation": round(time.perf_counter() - t_eval, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    evaluation.update(
        config=flat_dict(cfg),
        pretrained_checkpoint=str(pretrained_path),
        dataset=splits.summary,
        data_fit={**data_fit, "train": {k: train_counts[k] for k in fit.TRAIN_DROPS}},
        training=_training_summary(history, train_counts),
        max_abs_weight_change=weight_change(base, model),
        compute=compute_budget(base.config, base_ckpt, train_counts["tokens_processed"], evaluation),
    )
    _write_outputs(stage, evaluation, records, pretrained_path)
    _publish(stage, out)
    _print_report(cfg, out, evaluation)
    close_distributed()
    return evaluation


def compute_budget(config, base_ckpt: dict, sft_tokens: int, evaluation: dict) -> dict:
    """Model TFLOP of the whole job: pretraining (from the base checkpoint's token count; None
    for a base written before tokens were counted), fine-tuning, and every forward pass of the
    evaluation (prompts, generated tokens, scored references) of every model on every test set."""
    pre_tokens = base_ckpt.get("trainer", {}).get("tokens_seen")
    eval_tokens = sum(
        r["forward_tokens"]
        for split in (evaluation, *(evaluation.get(name) or {} for name in OTHER_TEST_SETS))
        for r in split.values()
        if isinstance(r, dict) and "forward_tokens" in r
    )
    parts = {
        "pretraining": training_flops(config, pre_tokens) / 1e12 if pre_tokens else None,
        "fine_tuning": training_flops(config, sft_tokens) / 1e12,
        "evaluation": forward_flops(config, eval_tokens) / 1e12,
    }
    known = [v for v in parts.values() if v is not None]
    return {
        **{f"{k}_tflop": (round(v, 3) if v is not None else None) for k, v in parts.items()},
        "total_tflop": round(sum(known), 3) if parts["pretraining"] is not None else None,
        "tokens": {"pretraining": pre_tokens, "fine_tuning": sft_tokens, "evaluation_forward": eval_tokens},
        "formula": FORMULA,
    }


BASELINE_SCHEME = "dialogue"  # the corpus's own "Customer: ...\nAgent:" format


def eval_models(cfg: SFTConfig, base: GPT, tuned: GPT) -> dict[str, tuple[GPT, str]]:
    """Name -> (model, prompt scheme): the pretrained model in the fine-tuning prompt and, as a
    fairer baseline, in the format it was pretrained on; then the SFT model."""
    models = {"pretrained": (base, cfg.prompt_scheme)}
    if cfg.prompt_scheme != BASELINE_SCHEME:
        models["pretrained_dialogue"] = (base, BASELINE_SCHEME)
    models["sft"] = (tuned, cfg.prompt_scheme)
    return models


def _baseline_strength(report: dict) -> float:
    """Greedy mean rubric rating (ROUGE-L where the data has no rubric inputs)."""
    rubric = report["greedy"]["job"]["rubric_mean"]
    return rubric["value"] if rubric else report["greedy"]["rouge_l"]


def score_yardsticks(cfg: SFTConfig, texts: dict[str, list[str]], tok, rows: list[dict], sft_greedy: dict) -> dict:
    """The yardsticks' replies ``texts`` (``yardsticks.py``: from the training rows, no model)
    scored like the SFT model's greedy replies, the paired SFT-minus-yardstick differences, and
    whether SFT beats the better yardstick (rubric mean where rows have rubric inputs, else
    ROUGE-L), that is whether the difference's 95% CI lies above 0."""
    n_boot, seed = cfg.evaluation.n_boot, cfg.seed
    out: dict = {}
    for name in YARDSTICKS:
        replies = yardstick_replies(texts[name], lambda t: len(tok.encode(t)))
        report, replies["judged"] = ev.score(rows, replies, n_boot, seed)
        out[name] = {"greedy": report}
        out[f"sft_minus_{name}"] = {"greedy": ev.compare_replies(rows, replies, sft_greedy, n_boot, seed)}
    rated = out[YARDSTICKS[0]]["greedy"]["job"]["rubric_mean"] is not None
    metric = "rubric_mean" if rated else "rouge_l"

    def value(name: str) -> float:
        report = out[name]["greedy"]
        return report["job"][metric]["value"] if rated else report["rouge_l"]

    better = max(YARDSTICKS, key=value)
    diff = out[f"sft_minus_{better}"]["greedy"]
    d = diff["job"][metric] if rated else diff["rouge_l"]
    out["verdict"] = {"metric": metric, "better_yardstick": better, **d, "sft_beats_better_yardstick": d["ci_low"] > 0}
    return out


def evaluate_test_set(
    cfg: SFTConfig,
    models: dict[str, tuple[GPT, str]],
    tok,
    rows: list[dict],
    split: str,
    sticks: Yardsticks | None = None,
    names: ReplyWords | None = None,
) -> tuple[dict, list[dict]]:
    """Every model on one test set: reports, paired SFT-minus-baseline differences, the stronger
    baseline, inter-reference agreement, the ignoring-the-message control, the yardsticks (with
    ``sticks``), examples; plus one generations record per row. ``names``: the SFT model's
    training replies' own capitalised words, which every model's names are held to (the same
    decoding for each, so the comparison stays paired)."""
    reports, outputs = {}, {}
    for name, (model, scheme) in models.items():
        reports[name], outputs[name] = ev.evaluate_model(
            model, tok, get_scheme(scheme), rows, cfg.evaluation, cfg.seed, cfg.execution.eval_batch_size, names
        )
    baselines = [n for n in models if n != "sft"]
    best = max(baselines, key=lambda n: _baseline_strength(reports[n]))  # the harder comparison
    result = {"test_rows": len(rows), **reports, "best_baseline": best}
    for name in baselines:
        suffix = "" if name == "pretrained" else name.removeprefix("pretrained")
        result[f"sft_minus_pretrained{suffix}"] = ev.compare(
            rows, outputs[name], outputs["sft"], cfg.evaluation.n_boot, cfg.seed
        )
    result["inter_reference_agreement"] = ev.inter_reference_agreement(rows, cfg.evaluation.n_boot, cfg.seed)
    result["ignoring_the_message_control"] = {
        "note": "SFT greedy replies judged against the next row's message: what replies that ignore "
        "the message would score",
        **job_metrics.shuffled_control(rows, outputs["sft"]["greedy"]["texts"], cfg.evaluation.n_boot, cfg.seed),
    }
    records = ev.generation_records(rows, outputs, split)
    if sticks is not None:
        texts = sticks.texts(rows)
        scored = score_yardsticks(cfg, texts, tok, rows, outputs["sft"]["greedy"])
        result["yardsticks"] = {"built_from": sticks.summary(), **scored}
        for i, rec in enumerate(records):  # their replies live in generations.jsonl
            rec["yardsticks"] = {name: texts[name][i] for name in YARDSTICKS}
    result["examples"] = ev.select_examples(rows, outputs[best], outputs["sft"], cfg.evaluation.n_examples)
    return result, records


def evaluate_all(cfg: SFTConfig, base: GPT, tuned: GPT, tok, splits: DatasetSplits) -> tuple[dict, list[dict]]:
    """The main test set's results at the top level, other test sets under their names; each
    with the yardsticks built from the training rows (``yardsticks.py``)."""
    models = eval_models(cfg, base, tuned)
    sticks = Yardsticks(splits.train)
    names = ev.training_reply_words(splits.train)
    evaluation: dict = {"name_grounding": {"on": cfg.evaluation.ground_names, "reply_words": names.to_dict()}}
    records: list[dict] = []
    for split, rows in splits.test_sets().items():
        result, recs = evaluate_test_set(cfg, models, tok, rows, split, sticks, names)
        records += recs
        if split == "test":
            evaluation.update(result)
        else:
            evaluation[split] = result
    return evaluation, records


def _training_summary(history: list[dict], counts: dict) -> dict:
    train = [r["train/loss"] for r in history if "train/loss" in r]
    val = [
        {"step": r["step"], "loss": r["val/loss"], "token_acc": r["val/token_acc"]} for r in history if "val/loss" in r
    ]
    return {
        **counts,
        "first_train_loss": train[0] if train else None,
        "final_train_loss": train[-1] if train else None,
        "val_per_epoch": val,
    }


def _write_outputs(stage: Path, evaluation: dict, records: list[dict], pretrained_path: Path) -> None:
    write_text_atomic("".join(json.dumps(r) + "\n" for r in records), stage / "generations.jsonl")
    write_text_atomic(json.dumps(evaluation, indent=2) + "\n", stage / "evaluation.json")
    plot_losses(
        [
            (stage / "metrics.jsonl", "Supervised fine-tuning", "validation loss (per epoch)"),
            (pretrained_path.parent / "metrics.jsonl", "Pretraining (part 3)", "validation loss"),
        ],
        stage / "loss_curve.png",
    )
    write_report_html_or_note(stage)  # report.html: all of the above as one page (embeds the curve)


def _print_report(cfg: SFTConfig, out: Path, evaluation: dict) -> None:
    what = "with unseen slot values" if cfg.dataset.data is None else "held out from your data"
    _print_headline(evaluation, "test", what)
    for split in OTHER_TEST_SETS:
        if split in evaluation:
            _print_headline(evaluation[split], split, _TEST_SET_WHAT[split])
    c = evaluation["compute"]
    pre = (
        "unknown (base written before tokens were counted)"
        if c["pretraining_tflop"] is None
        else f"{c['pretraining_tflop']:.1f}"
    )
    print(
        f"\nmodel compute (TFLOP): pretraining {pre}, fine-tuning {c['fine_tuning_tflop']:.1f}, "
        f"evaluation {c['evaluation_tflop']:.1f}"
        + ("" if c["total_tflop"] is None else f"; total {c['total_tflop']:.1f}")
    )
    print("wrote:")
    for p in (Path(cfg.dataset.dataset_path) if cfg.dataset.data is None else None, *(out / name for name in OUTPUTS)):
        if p is not None:
            print(f"  {p}")


_TEST_SET_WHAT = {
    "test_unseen": "with unseen slot values and phrasing",
    "test_handwritten": "written by hand, formats the generator does not use",
}
_HEAD = (
    ("specifics_recall", "specifics", "%"),
    ("invented_share", "invented", "%"),
    ("intent_accuracy", "intent", "%"),
    ("rubric_pass", "rubric>=4", "%"),
    ("loop_share", "loops", "%"),
    ("rouge_l", "ROUGE-L", "f"),
    ("eos_stop_rate", "EOS stop", "%"),
)


def _cell(value: float | None, kind: str) -> str:
    if value is None:
        return f"{'-':>10s}"
    return f"{value:10.1%}" if kind == "%" else f"{value:10.3f}"


def _print_headline(e: dict, split: str, what: str) -> None:
    """The job metrics (and ROUGE-L against both references) of every model, greedy decoding, and
    of the sampled replies of the pretrained and SFT models."""
    print(f"\nheld-out {split}: {e['test_rows']} contexts {what} (greedy decoding unless sampled)")
    print(f"  {'':28s}" + "".join(f"{label:>10s}" for _, label, _ in _HEAD))
    rows = [
        (f"{name} ({e[name]['prompt_scheme']} prompt)", ev.scalars(e[name]["greedy"]))
        for name in ("pretrained", "pretrained_dialogue", "sft")
        if name in e
    ]
    rows += [
        (f"{name}, sampled T={e[name]['sampled']['temperature']:g}", ev.scalars(e[name]["sampled"]))
        for name in ("pretrained", "sft")
    ]
    sticks = e.get("yardsticks")
    if sticks:  # replies from the training rows, no model: what a lookup scores
        rows += [(YARDSTICK_LABELS[name], ev.scalars(sticks[name]["greedy"])) for name in YARDSTICKS]
    agreement = e.get("inter_reference_agreement")
    if agreement:  # its ROUGE-L is against the first reference only: agreement, not a ceiling
        rows.append(
            ("2nd reference (vs 1st)", {**job_metrics.headline(agreement["job"]), "rouge_l": agreement["rouge_l"]})
        )
    for label, sc in rows:
        print(
            f"  {label.replace('pretrained_dialogue', 'pretrained'):28s}"
            + "".join(_cell(sc.get(key), kind) for key, _, kind in _HEAD)
        )
    best = e["best_baseline"]
    diff = e["sft_minus_pretrained" + best.removeprefix("pretrained")]["greedy"]
    print(f"  SFT - {best} (the stronger baseline), paired 95% CI:")
    for key in ("specifics_recall", "invented_share", "intent_accuracy", "rubric_pass", "loop_share"):
        d = diff["job"][key]
        if d is not None:
            print(f"    {key:18s}{d['diff']:+7.1%} ({d['ci_low']:+.1%} .. {d['ci_high']:+.1%})")
    d = diff["rouge_l"]
    print(f"    {'rouge_l':18s}{d['diff']:+7.3f} ({d['ci_low']:+.3f} .. {d['ci_high']:+.3f})")
    invented_ids = e["sft"]["greedy"]["job"].get("invented_order_id_count")
    if invented_ids is not None:
        print(f"  SFT greedy replies inventing an order id: {invented_ids} of {e['test_rows']}")
    if sticks:
        _print_yardstick_verdict(sticks)


def _print_yardstick_verdict(sticks: dict) -> None:
    """SFT minus each yardstick (paired 95% CI) and whether SFT beats the better one."""
    v = sticks["verdict"]
    metric = v["metric"]

    def diff(d: dict) -> str:
        return f"{d['diff']:+.3f} ({d['ci_low']:+.3f} .. {d['ci_high']:+.3f})"

    parts = []
    for name in YARDSTICKS:
        g = sticks[f"sft_minus_{name}"]["greedy"]
        parts.append(f"{YARDSTICK_LABELS[name]} {diff(g['job'][metric] if metric != 'rouge_l' else g['rouge_l'])}")
    label = {"rouge_l": "ROUGE-L", "rubric_mean": "rubric mean"}[metric]
    print(f"  SFT - yardstick ({label}, paired 95% CI): " + "; ".join(parts))
    if v["sft_beats_better_yardstick"]:
        verdict = "yes (the CI lies above 0)"
    else:
        verdict = "no: the yardstick is better (the CI lies below 0)" if v["ci_high"] < 0 else "no (the CI holds 0)"
    print(f"  SFT beats the better yardstick ({YARDSTICK_LABELS[v['better_yardstick']]}) on {label}: {verdict}")


USER_ERRORS = (ConfigError, CheckpointError, TokenizerError, DataError, LeakError, LabelAuditError, TrainingDiverged)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(SFTConfig, argv, PROG, __doc__.splitlines()[0], run, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
