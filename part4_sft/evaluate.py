"""Pretrained-vs-SFT evaluation on held-out contexts only.

For one model: generate replies to the test contexts (greedy is the headline, temperature
sampling too, same prompts and seed for every model), score them against the references (BLEU,
ROUGE-L with bootstrap CIs), count how generation stopped, and compute the teacher-forced loss,
perplexity and token accuracy of the references. For two models: paired bootstrap CIs of the
differences on the same rows. The oracle ceiling scores a second, independent reference against
the first, so a score can be read against what the data allows.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from part3_pretrain.data import mean_loss
from part3_pretrain.generate import generate
from part3_pretrain.model import GPT
from part3_pretrain.tokenizer import RetailTokenizer

from . import metrics
from .data import build_examples, fixed_batches
from .prompts import PromptScheme


@dataclass
class EvalSettings:
    max_new_tokens: int = 64
    temperature: float = 0.7  # the sampled run; greedy (0.0) is always run too
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64
    n_boot: int = 1000


def encode_prompts(tok: RetailTokenizer, scheme: PromptScheme, contexts: Sequence[str],
                   max_prompt_len: int) -> list[list[int]]:
    """Prompt ids as in training (too-long prompts lose tokens from the left)."""
    return [tok.encode(scheme.prompt(c))[-max_prompt_len:] for c in contexts]


def generate_replies(model: GPT, tok: RetailTokenizer, scheme: PromptScheme, contexts: Sequence[str],
                     settings: EvalSettings, temperature: float) -> dict:
    """Replies (text), whether each stopped at EOS, and their lengths in tokens."""
    max_prompt = model.config.block_size - settings.max_new_tokens
    if max_prompt < 1:
        raise ValueError(f"max_new_tokens {settings.max_new_tokens} leaves no room for a prompt "
                         f"in block_size {model.config.block_size}")
    prompts = encode_prompts(tok, scheme, contexts, max_prompt)
    results = generate(model, prompts, eos_id=tok.eos_id, pad_id=tok.pad_id,
                       max_new_tokens=settings.max_new_tokens, temperature=temperature,
                       top_k=settings.top_k, top_p=settings.top_p, seed=settings.seed,
                       batch_size=settings.batch_size)
    return {"texts": [tok.decode(r.tokens).strip() for r in results],
            "stopped_by_eos": [r.stopped_by_eos for r in results],
            "lengths": [len(r.tokens) for r in results]}


def reference_loss(model: GPT, tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[dict],
                   batch_size: int = 32) -> dict:
    """Teacher-forced loss / perplexity / token accuracy of the references (response + EOS only)."""
    pairs = [{"context": r["context"], "response": r["reference"]} for r in rows]
    examples, _ = build_examples(tok, scheme, pairs, model.config.block_size)
    result = mean_loss(model, fixed_batches(examples, batch_size, tok.pad_id, model.config.block_size))
    return {"loss": result["loss"], "perplexity": math.exp(min(result["loss"], 50.0)),
            "token_accuracy": result["token_acc"]}


def score(references: Sequence[str], replies: dict, n_boot: int, seed: int) -> dict:
    return {**metrics.text_metrics(references, replies["texts"], n_boot=n_boot, seed=seed),
            **metrics.stop_stats(replies["stopped_by_eos"], replies["lengths"])}


@torch.no_grad()
def evaluate_model(model: GPT, tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[dict],
                   settings: EvalSettings) -> tuple[dict, dict]:
    """(metrics, outputs) of one model on the test rows: greedy, sampled and reference loss."""
    t0 = time.perf_counter()
    contexts = [r["context"] for r in rows]
    refs = [r["reference"] for r in rows]
    greedy = generate_replies(model, tok, scheme, contexts, settings, temperature=0.0)
    sampled = generate_replies(model, tok, scheme, contexts, settings, temperature=settings.temperature)
    report = {"greedy": score(refs, greedy, settings.n_boot, settings.seed),
              "sampled": {"temperature": settings.temperature,
                          **score(refs, sampled, settings.n_boot, settings.seed)},
              "reference_loss": reference_loss(model, tok, scheme, rows),
              "seconds": round(time.perf_counter() - t0, 1)}
    return report, {"greedy": greedy["texts"], "sampled": sampled["texts"]}


def compare(rows: Sequence[dict], base_out: dict, sft_out: dict, n_boot: int, seed: int) -> dict:
    """SFT minus pretrained on the same rows, with paired bootstrap 95% CIs."""
    refs = [r["reference"] for r in rows]
    out = {}
    for mode in ("greedy", "sampled"):
        out[mode] = {m: metrics.paired_bootstrap_diff(refs, base_out[mode], sft_out[mode], m,
                                                      n_boot=n_boot, seed=seed)
                     for m in ("rouge_l", "bleu", "sentence_bleu")}
    return out


def oracle(rows: Sequence[dict], n_boot: int, seed: int) -> dict | None:
    """Scores of an independent second high-quality reference (None when the data has none)."""
    if not rows or any("reference_2" not in r for r in rows):
        return None
    return metrics.text_metrics([r["reference"] for r in rows], [r["reference_2"] for r in rows],
                                n_boot=n_boot, seed=seed)


def qualitative(rows: Sequence[dict], base_out: dict, sft_out: dict, n: int) -> list[dict]:
    """The first ``n`` test rows side by side (the order is the test set's, not cherry-picked)."""
    return [{"context": r["context"], "reference": r["reference"],
             "pretrained_greedy": base_out["greedy"][i], "sft_greedy": sft_out["greedy"][i],
             "sft_sampled": sft_out["sampled"][i]} for i, r in enumerate(rows[:n])]
