"""How the data fits the base's context: the reply budget and what had to be dropped or cut.

* ``--max-new-tokens auto`` resolves here, once the data and the base are known: 90 for the
  generated data (its good replies are up to 82 tokens with split digits), and for ``--data`` the
  99th percentile of the training replies' token length + 1 (EOS), both capped so that a prompt
  keeps at least ``MIN_PROMPT_TOKENS`` of the base's context.
* Training rows whose reply does not fit the context are dropped, and long prompts (conversations:
  whole oldest turns) are cut; test prompts are cut to leave room for the reply. None of it is
  silent: past ``WARN_SHARE`` of the rows, one warning line each says how many, why, and the
  fix, with a ``--block-size`` that would fit (``block_size_hint``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from part3_pretrain.tokenizer import RetailTokenizer

from .configs import AUTO, EvalConfig
from .evaluate import cut_prompts
from .examples import fit_with_retrieved, own_turns, prompt_ids
from .prompts import PromptScheme
from .splits import DatasetSplits

AUTO_SYNTHETIC = 90  # the generated data's reply budget (README: replies need room)
MIN_PROMPT_TOKENS = 32  # "auto" never leaves a prompt less of the context than this
WARN_SHARE = 0.01  # more than this share of rows dropped or cut is warned about
MAX_DATA_BLOCK = 1024  # the longest context a base is pretrained with for --data (base_model)
HINT_MARGIN = 64  # a suggested context holds the longest reply + EOS and this much prompt
# the training counts of what did not fit (``examples.build_examples``), kept in evaluation.json
TRAIN_DROPS = ("pairs", "examples", "dropped_response_too_long", "context_truncated", "turns_dropped")


def reply_lengths(tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[dict]) -> list[int]:
    """Tokens of every trained reply of the rows (each assistant turn of a conversation), EOS included."""
    return [
        len(scheme.encode_response(tok, turn["content"]))
        for row in rows
        for turn in (row.get("turns") or [{"role": "assistant", "content": row["response"]}])
        if turn["role"] == "assistant"
    ]


def round_up(n: int, multiple: int = 32) -> int:
    return -(-n // multiple) * multiple


def block_size_hint(lengths: Sequence[int]) -> int:
    """A ``--block-size`` that holds the longest reply + EOS and ``HINT_MARGIN`` tokens of prompt,
    rounded up to a multiple of 32."""
    return round_up(max(lengths, default=0) + HINT_MARGIN)


def percentile_99(values: Sequence[int]) -> int:
    """The nearest-rank 99th percentile: the smallest value at least 99% of ``values`` are <= to."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def resolve_max_new_tokens(evaluation: EvalConfig, synthetic: bool, lengths: Sequence[int], block: int) -> dict:
    """``{"setting", "value", "why"}``: ``--max-new-tokens`` as given, or "auto" resolved for this
    data and a base with a ``block``-token context."""
    setting = evaluation.max_new_tokens
    if setting != AUTO:
        return {"setting": setting, "value": int(setting), "why": "--max-new-tokens"}
    cap = max(1, block - MIN_PROMPT_TOKENS)
    if synthetic:
        wanted, why = AUTO_SYNTHETIC, f"auto: {AUTO_SYNTHETIC} for the generated data"
    else:
        wanted = percentile_99(lengths)
        why = f"auto: the 99th percentile of the {len(lengths)} training replies, {wanted - 1} tokens, + EOS"
    if wanted > cap:
        why += f", capped at {cap} to leave a prompt {MIN_PROMPT_TOKENS} of the base's {block}-token context"
    return {"setting": setting, "value": min(wanted, cap), "why": why}


def fix_hint(needed: int, own_data: bool = True, fitted: bool = False) -> str:
    """The fix for data that does not fit the base's context when ``needed`` tokens would: a base
    with that context (rounded up to 32; ``fitted``: the base was already pretrained for the data),
    or, past ``MAX_DATA_BLOCK``, that no context fits and what to do instead."""
    size = round_up(needed)
    if size > MAX_DATA_BLOCK:
        return (
            f"no context fits: that takes {needed:,} tokens, more than the {MAX_DATA_BLOCK:,} a base is "
            "pretrained with here; shorten or split the longest messages (a cut message keeps its last tokens)"
        )
    if not own_data:
        return f"a base pretrained with --block-size {size}"
    if fitted:
        return (
            f"pretrain a base with --block-size {size} (python -m part3_pretrain.pretrain) and pass it as --pretrained"
        )
    return (
        "run without --pretrained so a base with a longer context is pretrained for your data, "
        f"or pretrain one with --block-size {size}"
    )


def example_lengths(tok: RetailTokenizer, scheme: PromptScheme, rows: Sequence[dict]) -> list[int]:
    """Tokens of every training row whole (its own messages, every reply with its EOS; retrieved
    exchanges not counted): the context that would hold it uncut."""
    return [sum(len(ids) for _, ids in scheme.encode_conversation(tok, own_turns(r))) for r in rows]


def train_warnings(
    counts: dict, block: int, hint: int, cut_hint: int, own_data: bool = True, fitted: bool = False
) -> list[str]:
    """Warning lines for training rows dropped (reply too long; ``hint``: the tokens that would
    hold the longest reply) or cut (context too long; ``cut_hint``: the longest row whole), past
    ``WARN_SHARE`` of them."""
    rows, lines = counts["pairs"], []
    dropped, cut = counts["dropped_response_too_long"], counts["context_truncated"]
    if dropped > WARN_SHARE * rows:
        lines.append(
            f"warning: {dropped} of {rows} training rows dropped: their reply + EOS does not fit the base's "
            f"{block}-token context; fix: {fix_hint(hint, own_data, fitted)}"
        )
    if cut > WARN_SHARE * rows:
        turns = f" ({counts.get('turns_dropped', 0)} whole messages of conversations among them)"
        lines.append(
            f"warning: {cut} of {rows} training rows had their context cut to fit the base's {block}-token "
            f"context{turns if counts.get('turns_dropped') else ''}; the model learns replies without "
            f"all of what they answer; fix: {fix_hint(cut_hint, own_data, fitted)}"
        )
    return lines


def cut_test_prompts(
    tok: RetailTokenizer,
    scheme: PromptScheme,
    test_sets: dict[str, list[dict]],
    block: int,
    max_new: int,
    own_data: bool = True,
    fitted: bool = False,
) -> tuple[dict, list[str]]:
    """How many test prompts (per test set) lose tokens or turns to leave ``max_new`` tokens for
    the reply, and a warning line per set past ``WARN_SHARE`` of its rows."""
    cut, lines = {}, []
    for name, rows in test_sets.items():
        cut[name] = cut_prompts(tok, scheme, rows, block - max_new)
        if cut[name] > WARN_SHARE * len(rows):
            longest = max(len(prompt_ids(tok, scheme, r, 10**9)[0]) for r in rows)
            lines.append(
                f"warning: {cut[name]} of {len(rows)} {name} prompts cut to fit the base's {block}-token context "
                f"less {max_new} tokens for the reply; fix: a smaller --max-new-tokens, or "
                + fix_hint(longest + max_new, own_data, fitted)
            )
    return cut, lines


def _keeps_retrieved(tok: RetailTokenizer, scheme: PromptScheme, row: dict, budget: int, with_reply: bool) -> bool:
    """Whether all of ``row``'s retrieved exchanges fit ``budget`` tokens beside its own turns
    (with its final reply for training, without it for a generation prompt)."""
    turns = own_turns(row, "response" if with_reply else "reference")
    own = scheme.encode_conversation(tok, turns if with_reply else turns[:-1])
    extra = scheme.encode_conversation(tok, row.get("retrieved") or [])
    fitted = fit_with_retrieved(own, extra, budget)
    return fitted is not None and len(fitted.retrieved) == len(extra)


def retrieval_kept(
    tok: RetailTokenizer, scheme: PromptScheme, splits: DatasetSplits, block: int, max_new: int, k: int
) -> dict:
    """How many training examples and test prompts keep all ``k`` of their retrieved exchanges
    in the base's ``block``-token context (a test prompt leaves ``max_new`` tokens for the reply);
    the others lose the least similar first (``examples.fit_with_retrieved``)."""
    train = sum(_keeps_retrieved(tok, scheme, r, block + 1, True) for r in splits.train)
    tests = {
        name: sum(_keeps_retrieved(tok, scheme, r, block - max_new, False) for r in rows)
        for name, rows in splits.test_sets().items()
    }
    return {
        "k": k,
        "train_all_kept": train,
        "train_rows": len(splits.train),
        "test_all_kept": tests,
        "test_rows": {name: len(rows) for name, rows in splits.test_sets().items()},
    }


def retrieval_line(report: dict) -> str:
    """One line saying how often the retrieved exchanges fit whole."""
    kept, rows = report["test_all_kept"], report["test_rows"]
    tests = ", ".join(f"{kept[n]} of {rows[n]} {n} prompts" for n in rows)
    return (
        f"retrieval: the {report['k']} most similar training exchanges before each message; all kept in "
        f"{report['train_all_kept']} of {report['train_rows']} training examples and {tests} (the others lose "
        "the least similar first to fit the context)"
    )
