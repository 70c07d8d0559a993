"""Model evaluation on held-out contexts: generate, then score the job and the text.

For one model (:func:`evaluate_model`): generate replies to the rows' contexts (greedy is the
headline, temperature sampling too; same prompts and seed for every model), and score them:

- job metrics (``job_metrics.py``): specifics recall, invented specifics, intent accuracy and the
  rubric on every reply, with bootstrap CIs;
- text metrics against *all* of a row's references (multi-reference BLEU, best-of ROUGE-L);
- how generation stopped, and the teacher-forced loss of the first reference.

For two models (:func:`compare`, or any two sets of scored replies, :func:`compare_replies`, which
also pairs the SFT model with the yardsticks): paired bootstrap CIs of the differences on the same rows.
:func:`inter_reference_agreement` scores the second reference against the first: how much two
good replies agree, which is NOT a ceiling (a reply can be as good as a reference and share few
words with it). :func:`generation_records` lays every reply of every model side by side for
``generations.jsonl``; :func:`select_examples` picks wins, losses and ties for the report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from part3_pretrain.data import mean_loss
from part3_pretrain.generate import generate
from part3_pretrain.model import GPT
from part3_pretrain.name_grounding import ReplyWords, reply_words
from part3_pretrain.prompt_copy import CopyBlend
from part3_pretrain.tokenizer import RetailTokenizer
from part3_pretrain.value_grounding import ValueGrounding

from . import job_metrics, metrics
from .configs import EvalConfig
from .examples import build_examples, fixed_batches, prompt_ids
from .prompts import PromptScheme

MODES = ("greedy", "sampled")


def references(rows: Sequence[Mapping]) -> list[list[str]]:
    """Every row's references: "reference" and, where present, "reference_2"."""
    return [[r["reference"]] + ([r["reference_2"]] if r.get("reference_2") else []) for r in rows]


def encode_prompts(
    tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[Mapping | str], max_prompt_len: int
) -> list[list[int]]:
    """Prompt ids as in training, of rows (a conversation row, one with "turns", up to its final
    reply) or bare contexts; too-long prompts lose tokens from the left (conversations: whole
    oldest turns first)."""
    return [prompt_ids(tok, scheme, r, max_prompt_len)[0] for r in rows]


def cut_prompts(tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[Mapping], max_prompt_len: int) -> int:
    """How many of the rows' prompts lose tokens (or turns) to fit ``max_prompt_len``."""
    return sum(prompt_ids(tok, scheme, r, max_prompt_len)[1] for r in rows)


def training_reply_words(rows: Sequence[Mapping]) -> ReplyWords:
    """The capitalised words a model's training replies write of their own (``reply_words`` of its
    training rows' context and response): what the name grounding allows beside a prompt's words.
    Stored with the model (sft_model.pt, an experiment run's weights) so that the chat holds names
    as the evaluation does."""
    return reply_words((str(r.get("context", "")), str(r.get("response", ""))) for r in rows)


def decoder_rules(tok: RetailTokenizer, settings: EvalConfig | object, names: ReplyWords | None = None) -> dict:
    """The decoder's rules as ``generate`` takes them, from settings that name them (``EvalConfig``,
    the chat's ``Settings``): the n-gram ban read through punctuation, the copy blend and the
    grounding of values and, where ``names`` (the capitalised words the model's training replies
    write of their own, ``name_grounding.reply_words``) is known, of names. Every generation path
    decodes with these."""
    names = names if getattr(settings, "ground_names", False) else None
    return {
        "no_repeat_ngram": settings.no_repeat_ngram,
        "repeat_skip": tok.punctuation_ids,
        "copy": CopyBlend.for_tokenizer(tok, settings.copy_mix, settings.copy_min),
        "ground": ValueGrounding.for_tokenizer(tok, names, values=settings.ground_values)
        if settings.ground_values or names is not None
        else None,
    }


def generate_replies(
    model: GPT,
    tok: RetailTokenizer,
    scheme: PromptScheme,
    rows: Sequence[Mapping | str],
    settings: EvalConfig,
    temperature: float,
    seed: int,
    batch_size: int,
    names: ReplyWords | None = None,
) -> dict:
    """Replies (text) to the rows (or bare contexts), whether each stopped at EOS, and their
    lengths in tokens. ``settings.max_new_tokens`` must be resolved (an int, not "auto"); ``names``:
    ``decoder_rules``."""
    max_new = settings.new_tokens()
    max_prompt = model.config.block_size - max_new
    if max_prompt < 1:
        raise ValueError(
            f"max_new_tokens {max_new} leaves no room for a prompt in block_size {model.config.block_size}"
        )
    prompts = encode_prompts(tok, scheme, rows, max_prompt)
    results = generate(
        model,
        prompts,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        max_new_tokens=max_new,
        temperature=temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        seed=seed,
        batch_size=batch_size,
        **decoder_rules(tok, settings, names),
    )
    return {
        "texts": [tok.decode(r.tokens).strip() for r in results],
        "stopped_by_eos": [r.stopped_by_eos for r in results],
        "lengths": [len(r.tokens) for r in results],
        "prompt_lengths": [len(p) for p in prompts],
    }


def reference_loss(
    model: GPT, tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[dict], batch_size: int = 32
) -> dict:
    """Teacher-forced loss / perplexity / token accuracy of the references (response + EOS only; a
    conversation's final reply, after its earlier turns)."""
    pairs = [
        {"context": r["context"], "response": r["reference"], "turns": r.get("turns"), "retrieved": r.get("retrieved")}
        for r in rows
    ]
    examples, _ = build_examples(tok, scheme, pairs, model.config.block_size, final_only=True)
    # batched by length: a third less padding than in the rows' order (the mean does not depend on it)
    examples = sorted(examples, key=lambda e: len(e.input_ids))
    result = mean_loss(model, fixed_batches(examples, batch_size, tok.pad_id, model.config.block_size))
    return {
        "loss": result["loss"],
        "perplexity": math.exp(min(result["loss"], 50.0)),
        "token_accuracy": result["token_acc"],
        "tokens": sum(len(e.input_ids) for e in examples),
    }


def score(rows: Sequence[Mapping], replies: dict, n_boot: int, seed: int) -> tuple[dict, list[dict]]:
    """(report, per-row judgements) of generated ``replies`` to ``rows``: job metrics, text
    metrics against every reference, and stop statistics."""
    judged = [job_metrics.judge_reply(text, row) for text, row in zip(replies["texts"], rows, strict=False)]
    report = {
        "job": job_metrics.job_metrics(rows, replies["texts"], n_boot, seed, judged=judged),
        **metrics.text_metrics(references(rows), replies["texts"], n_boot=n_boot, seed=seed),
        **metrics.stop_stats(replies["stopped_by_eos"], replies["lengths"]),
    }
    return report, judged


def scalars(report: Mapping) -> dict[str, float | None]:
    """The headline numbers of one :func:`score` report, flat (None where absent)."""
    return {
        **job_metrics.headline(report["job"]),
        "rouge_l": report["rouge_l"],
        "bleu": report["bleu"],
        "eos_stop_rate": report["eos_stop_rate"],
    }


@torch.no_grad()
def evaluate_model(
    model: GPT,
    tok: RetailTokenizer,
    scheme: PromptScheme,
    rows: Sequence[dict],
    settings: EvalConfig,
    seed: int,
    batch_size: int,
    names: ReplyWords | None = None,
) -> tuple[dict, dict]:
    """(report, outputs) of one model on the rows: greedy, sampled and reference loss (``names``:
    ``decoder_rules``).

    ``outputs[mode]`` holds the replies, stop flags, lengths and per-row judgements.
    """
    t0 = time.perf_counter()
    report: dict = {"prompt_scheme": scheme.name}
    outputs: dict = {}
    for mode in MODES:
        temperature = 0.0 if mode == "greedy" else settings.temperature
        replies = generate_replies(model, tok, scheme, rows, settings, temperature, seed, batch_size, names)
        report[mode], replies["judged"] = score(rows, replies, settings.n_boot, seed)
        if mode == "sampled":
            report[mode] = {"temperature": settings.temperature, **report[mode]}
        outputs[mode] = replies
    report["reference_loss"] = reference_loss(model, tok, scheme, rows)
    # every forward token: prompts, generated tokens (one cached step each), scored references
    report["forward_tokens"] = report["reference_loss"]["tokens"] + sum(
        sum(outputs[m]["prompt_lengths"]) + sum(outputs[m]["lengths"]) for m in MODES
    )
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report, outputs


def compare_replies(rows: Sequence[dict], a: dict, b: dict, n_boot: int, seed: int) -> dict:
    """B minus A for two sets of scored replies (``texts`` and ``judged``) to the same rows, with
    paired bootstrap 95% CIs: every job metric and the text metrics against all references."""
    refs = references(rows)
    return {
        "job": job_metrics.paired_job_diff(rows, a["judged"], b["judged"], n_boot=n_boot, seed=seed),
        **{
            m: metrics.paired_bootstrap_diff(refs, a["texts"], b["texts"], m, n_boot=n_boot, seed=seed)
            for m in ("rouge_l", "bleu", "sentence_bleu")
        },
    }


def compare(rows: Sequence[dict], base_out: dict, sft_out: dict, n_boot: int, seed: int) -> dict:
    """SFT minus pretrained on the same rows, per decoding mode (:func:`compare_replies`)."""
    return {mode: compare_replies(rows, base_out[mode], sft_out[mode], n_boot, seed) for mode in MODES}


def inter_reference_agreement(rows: Sequence[dict], n_boot: int, seed: int) -> dict | None:
    """The second reference scored as a reply: text metrics against the first reference (how much
    two good replies agree; not a ceiling) and its job metrics (what a good reply scores)."""
    if not rows or any(not r.get("reference_2") for r in rows):
        return None
    second = [r["reference_2"] for r in rows]
    return {
        "note": "reference_2 scored against reference: agreement between two good replies, not a ceiling",
        **metrics.text_metrics([r["reference"] for r in rows], second, n_boot=n_boot, seed=seed),
        "job": job_metrics.job_metrics(rows, second, n_boot, seed),
    }


def _row_score(judged: dict, text_score: float) -> float:
    """One number per reply for picking examples: the rubric rating, else ROUGE-L."""
    return judged["rating"] if judged["rating"] is not None else text_score


def select_examples(rows: Sequence[dict], base_out: dict, sft_out: dict, n: int) -> list[dict]:
    """About n/3 rows where SFT beats the pretrained model most, n/3 where it loses most and the
    rest ties (greedy, by rubric rating or else ROUGE-L), each labelled; not the first rows."""
    if n <= 0 or not rows:
        return []
    refs = references(rows)
    b_text = metrics.rouge_l(refs, base_out["greedy"]["texts"])
    s_text = metrics.rouge_l(refs, sft_out["greedy"]["texts"])
    diff = np.array(
        [
            _row_score(s, st) - _row_score(b, bt)
            for s, b, st, bt in zip(
                sft_out["greedy"]["judged"], base_out["greedy"]["judged"], s_text, b_text, strict=False
            )
        ]
    )
    order = np.argsort(-diff, kind="stable")
    k = max(1, n // 3)
    wins = [int(i) for i in order[:k] if diff[i] > 0]
    losses = [int(i) for i in order[::-1][:k] if diff[i] < 0]
    ties = [int(i) for i in np.flatnonzero(diff == 0)][: n - len(wins) - len(losses)]
    picks = [(i, "sft_better") for i in wins] + [(i, "pretrained_better") for i in losses] + [(i, "tie") for i in ties]
    return [
        {
            "row": i,
            "outcome": outcome,
            "context": rows[i]["context"],
            "reference": rows[i]["reference"],
            "pretrained_greedy": base_out["greedy"]["texts"][i],
            "sft_greedy": sft_out["greedy"]["texts"][i],
            "sft_sampled": sft_out["sampled"]["texts"][i],
            "pretrained_rating": base_out["greedy"]["judged"][i]["rating"],
            "sft_rating": sft_out["greedy"]["judged"][i]["rating"],
        }
        for i, outcome in picks
    ]


def generation_records(rows: Sequence[dict], outputs: Mapping[str, dict], split: str) -> list[dict]:
    """One record per row: the context, its references and every model's greedy and sampled reply
    with how it stopped and how it was judged (rating, failed rules, specifics hit, invented)."""
    records = []
    for i, row in enumerate(rows):
        rec = {
            "split": split,
            "row": i,
            "context": row["context"],
            "references": references([row])[0],
            "intent": row.get("intent"),
            "slots": row.get("slots"),
        }
        if row.get("turns"):  # a conversation: what the model read before its reply
            rec["conversation"] = row["turns"][:-1]
        if row.get("retrieved"):  # training exchanges put before the message (--retrieve)
            rec["retrieved"] = row["retrieved"]
        for name, out in outputs.items():
            for mode in MODES:
                j = out[mode]["judged"][i]
                rec[f"{name}_{mode}"] = {
                    "reply": out[mode]["texts"][i],
                    "stopped_by": "eos" if out[mode]["stopped_by_eos"][i] else "length",
                    "tokens": out[mode]["lengths"][i],
                    "rating": j["rating"],
                    "failed_rules": j["rules"],
                    "intent_ok": j["intent_ok"],
                    "specifics": j["specifics"],
                    "specifics_hit": j["specifics_hit"],
                    "invented": j["invented"],
                }
        records.append(rec)
    return records
