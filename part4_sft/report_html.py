"""``report.html``: a finished SFT run as one page to look at, beside ``evaluation.json``.

:func:`write_report_html` reads ``evaluation.json``, ``generations.jsonl`` and ``loss_curve.png``
of an output directory (``part4_sft.sft`` calls it at the end of every run; ``python -m
part4_sft.report_html --out-dir DIR`` rebuilds it) and writes one self-contained file:
inline CSS, plain inline JavaScript, the loss curves as a base64 data URI, nothing from the
network, so it opens from disk, offline, on a laptop or a phone.

- At the top: the job metrics with their 95% CIs for every model (pretrained, SFT; greedy and
  sampled) on every test split present, the paired SFT-minus-baseline differences, compute and
  wall time, and the loss curves.
- Then every test message: the customer's message, the reference(s), the pretrained and SFT
  replies side by side, the specifics each reply restated marked in one colour and those it
  invented in another, its rubric rating and failed rules, and how it stopped (EOS or length).
  Who restated or invented what comes from the judgements in ``generations.jsonl`` (the one
  judge, ``job_metrics``); this module only finds where those values sit in the text.
- Filters (split, intent, SFT better / worse / same, invented, did not stop) and a search box,
  client-side; their state lives in the URL hash (``report.html#intent=refund_status&q=late``).

Every string from the data is HTML-escaped and rendered on the server; the script holds no data.
The experiment mode's page (``experiment/report_html.py``) shares the pieces below.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from part3_pretrain.cli import ConfigError, option, run_main
from part3_pretrain.domain import mention_pattern
from part3_pretrain.fileio import write_text_atomic

from . import job_metrics, metrics

REPORT_NAME = "report.html"
SPLIT_WHAT = {
    "test_unseen": "unseen slot values and unseen phrasing",
    "test_handwritten": "written by hand, in formats the generator does not use",
}
MODES = ("greedy", "sampled")
# metric key -> (column label, format kind, higher is better); job metrics live under report["job"]
METRIC_COLUMNS = (
    ("specifics_recall", "specifics restated", "rate", True),
    ("invented_share", "invented", "rate", False),
    ("intent_accuracy", "intent right", "rate", True),
    ("rubric_pass", "rubric ≥ 4", "rate", True),
    ("rubric_mean", "rubric mean", "mean", True),
    ("loop_share", "loops", "rate", False),
    ("rouge_l", "ROUGE-L", "score", True),
    ("bleu", "BLEU", "score", True),
    ("eos_stop_rate", "stopped at EOS", "rate", True),
)
DIFF_KEYS = [k for k, *_ in METRIC_COLUMNS if k != "eos_stop_rate"]


# ---------------------------------------------------------------------------- html primitives
def esc(value: object) -> str:
    """``value`` as HTML text (quotes too, so it is safe in attributes). A carriage return is
    written as a reference (an HTML parser turns a raw one into a newline), NUL as U+FFFD (as a
    parser would), and a lone surrogate from odd user data as "?" rather than failing the write."""
    text = html.escape(str(value), quote=True).replace("\r", "&#13;").replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def data_uri(path: Path) -> str | None:
    """A PNG as a ``data:`` URI, or None when the file is missing."""
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure(path: Path, caption: str, cls: str = "") -> str:
    """A PNG embedded in the page, with its caption ("``path`` was not written" when missing)."""
    uri = data_uri(path)
    if uri is None:
        return f'<p class="note">{esc(path.name)} was not written.</p>'
    return (
        f'<figure class="{esc(cls)}"><img src="{uri}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def page(title: str, body: str, script: str = "") -> str:
    """The whole document: inline CSS (responsive), ``body``, then the inline ``script``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main>{f'<script>{script}</script>' if script else ''}</body></html>\n"
    )


# ---------------------------------------------------------------------------- numbers
def fmt_value(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "rate":
        return f"{value:.1%}"
    return f"{value:.2f}" if kind == "mean" else f"{value:.3f}"


def fmt_ci(value: float | None, ci: Sequence[float] | None, kind: str) -> str:
    """ "84.0% [79.2, 88.4]": the value and its 95% CI in the value's unit."""
    text = fmt_value(value, kind)
    if value is None or not ci:
        return text
    lo, hi = (100 * c for c in ci) if kind == "rate" else ci
    digits = 1 if kind == "rate" else 2 if kind == "mean" else 3
    return f"{text} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_diff(d: Mapping | None, kind: str) -> str:
    """ "+12.0 pp [+5.1, +18.9]": a paired difference and its 95% CI."""
    if not d:
        return "–"
    scale, unit, digits = (100, " pp", 1) if kind == "rate" else (1, "", 2 if kind == "mean" else 3)
    lo, mid, hi = (scale * d[k] for k in ("ci_low", "diff", "ci_high"))
    return f"{mid:+.{digits}f}{unit} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def ci_html(text: str) -> str:
    """A formatted "value [low, high]" as HTML, the CI in its own (smaller, muted) line."""
    value, sep, ci = text.partition(" [")
    return esc(value) + (f' <span class="ci">[{esc(ci)}</span>' if sep else "")


def metric_of(report: Mapping, key: str) -> tuple[float | None, list | None]:
    """(value, CI) of one METRIC_COLUMNS key in an ``evaluate.score`` report."""
    job = report.get("job") or {}
    if key in job:
        entry = job[key]
        return (entry["value"], entry["ci"]) if entry else (None, None)
    return report.get(key), report.get(f"{key}_ci")


def diff_of(diffs: Mapping, key: str) -> Mapping | None:
    return (diffs.get("job") or {}).get(key) if key in (diffs.get("job") or {}) else diffs.get(key)


def diff_class(d: Mapping | None, higher_better: bool) -> str:
    """ "good" / "bad" when the CI excludes 0 (in the direction that helps / hurts), else ""."""
    if not d or d["ci_low"] <= 0 <= d["ci_high"]:
        return ""
    return "good" if (d["diff"] > 0) == higher_better else "bad"


# ---------------------------------------------------------------------------- reading a run
def read_run(out_dir: Path) -> tuple[dict, list[dict]]:
    """(evaluation.json, generations.jsonl records) of a finished run."""
    evaluation = json.loads((out_dir / "evaluation.json").read_text(encoding="utf-8"))
    lines = (out_dir / "generations.jsonl").read_text(encoding="utf-8").split("\n")
    return evaluation, [json.loads(line) for line in lines if line.strip()]


def split_reports(evaluation: Mapping) -> dict[str, Mapping]:
    """Split name -> its results: the main test set at the top level, the others under their names."""
    out = {"test": evaluation}
    out.update({k: v for k, v in evaluation.items() if k.startswith("test_") and isinstance(v, dict) and "sft" in v})
    return out


def model_names(result: Mapping) -> list[str]:
    """The models of one split's results, baselines first, SFT last."""
    names = [k for k in result if (k == "pretrained" or k.startswith("pretrained_")) and isinstance(result[k], dict)]
    return [n for n in names if "greedy" in result[n]] + (["sft"] if "sft" in result else [])


def model_label(name: str, result: Mapping) -> str:
    """ "SFT", or "pretrained" with its prompt scheme when there are two pretrained baselines."""
    if name == "sft":
        return "SFT"
    scheme = (result.get(name) or {}).get("prompt_scheme")
    several = len([n for n in model_names(result) if n != "sft"]) > 1
    return f"pretrained ({scheme} prompt)" if several and scheme else "pretrained"


# ---------------------------------------------------------------------------- metric tables
def _metric_cells(report: Mapping) -> str:
    cells = []
    for key, _, kind, _ in METRIC_COLUMNS:
        value, ci = metric_of(report, key)
        raw = "" if value is None else repr(value)
        cells.append(f'<td data-metric="{key}" data-value="{raw}">{ci_html(fmt_ci(value, ci, kind))}</td>')
    return "".join(cells)


def metrics_table(result: Mapping) -> str:
    """Every model, greedy then sampled: the job and text metrics with their CIs."""
    head = "".join(f"<th>{esc(label)}</th>" for _, label, _, _ in METRIC_COLUMNS)
    rows = []
    for mode in MODES:
        for name in model_names(result):
            report = result[name].get(mode)
            if not report:
                continue
            how = mode if mode == "greedy" else f"sampled, T={report.get('temperature', '?')}"
            label = f"{model_label(name, result)}, {how}"
            rows.append(
                f'<tr data-model="{esc(name)}" data-mode="{mode}"><th>{esc(label)}</th>{_metric_cells(report)}</tr>'
            )
    for name, report in yardsticks(result).items():
        label = f"yardstick: {name.replace('_', ' ')} (no model)"
        rows.append(f'<tr class="aside" data-yardstick="{esc(name)}"><th>{esc(label)}</th>{_metric_cells(report)}</tr>')
    agreement = result.get("inter_reference_agreement")
    if agreement:
        rows.append(f'<tr class="aside"><th>2nd reference (vs 1st)</th>{_metric_cells(agreement)}</tr>')
    return _table("metrics", "model, decoding", head, rows)


def yardsticks(result: Mapping) -> dict[str, Mapping]:
    """Name -> greedy report of the replies that need no model (``yardsticks.py``), where the
    run scored them."""
    found = result.get("yardsticks") or {}
    return {
        k: v["greedy"]
        for k, v in found.items()
        if not k.startswith("sft_minus_") and isinstance(v, dict) and isinstance(v.get("greedy"), dict)
    }


def _diff_cell(diffs: Mapping, key: str, kind: str, higher_better: bool) -> str:
    d = diff_of(diffs, key)
    raw = repr(d["diff"]) if d else ""
    cls = diff_class(d, higher_better)
    return f'<td class="{cls}" data-metric="{key}" data-value="{raw}">{ci_html(fmt_diff(d, kind))}</td>'


def diffs_table(result: Mapping) -> str:
    """SFT minus each baseline on the same rows, greedy and sampled, with paired 95% CIs."""
    columns = [c for c in METRIC_COLUMNS if c[0] in DIFF_KEYS]
    head = "".join(f"<th>{esc(label)}</th>" for _, label, _, _ in columns)
    rows = []
    baselines = model_names(result)[:-1]
    for name in baselines:
        diffs = result.get("sft_minus_pretrained" + name.removeprefix("pretrained")) or {}
        stronger = " (the stronger baseline)" if result.get("best_baseline") == name and len(baselines) > 1 else ""
        for mode in (m for m in MODES if m in diffs):
            cells = "".join(_diff_cell(diffs[mode], k, kind, hb) for k, _, kind, hb in columns)
            label = f"SFT − {model_label(name, result)}{stronger}, {mode}"
            rows.append(f'<tr data-baseline="{esc(name)}" data-mode="{mode}"><th>{esc(label)}</th>{cells}</tr>')
    for name in yardsticks(result):
        diffs = (result["yardsticks"].get(f"sft_minus_{name}") or {}).get("greedy")
        if diffs:
            cells = "".join(_diff_cell(diffs, k, kind, hb) for k, _, kind, hb in columns)
            label = f"SFT − yardstick: {name.replace('_', ' ')}, greedy"
            rows.append(f'<tr class="aside" data-yardstick="{esc(name)}"><th>{esc(label)}</th>{cells}</tr>')
    return _table("diffs", "difference", head, rows)


def _table(cls: str, corner: str, head: str, rows: Sequence[str]) -> str:
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr><th>{esc(corner)}</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def split_title(split: str, result: Mapping, own_data: bool) -> str:
    if split == "test":
        what = "held out from your data" if own_data else "unseen slot values"
    else:
        what = SPLIT_WHAT.get(split, "held-out contexts")
    return f"{split}: {result.get('test_rows', '?')} contexts, {what}"


def metrics_section(evaluation: Mapping) -> str:
    own = (evaluation.get("dataset") or {}).get("source") == "user"
    parts = ['<section id="metrics"><h2>Job metrics</h2>', METRICS_NOTE]
    for split, result in split_reports(evaluation).items():
        parts.append(
            f'<div class="split-metrics" data-split="{esc(split)}"><h3>{esc(split_title(split, result, own))}</h3>'
            f'{metrics_table(result)}<h4 class="sub">SFT minus baseline, paired 95% CI</h4>{diffs_table(result)}</div>'
        )
    return "".join(parts) + "</section>"


METRICS_NOTE = (
    '<p class="note">Each cell: the value and its 95% bootstrap CI over test rows. Differences are '
    "paired (same rows, same prompts, same seed); green: the CI excludes 0 in SFT's favour, red: "
    "against it (for invented and loops lower is better). – : the data cannot support the metric "
    "(rows without intent or slots).</p>"
)


# ---------------------------------------------------------------------------- compute and run
def _tflop(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} TFLOP"


def compute_section(evaluation: Mapping, out_dir: Path) -> str:
    """Compute (model TFLOP), wall time, what was trained, and the loss curves."""
    c = evaluation.get("compute") or {}
    t = evaluation.get("timings_seconds") or {}
    tr = evaluation.get("training") or {}
    cfg = evaluation.get("config") or {}
    facts = [
        ("compute, pretraining", _tflop(c.get("pretraining_tflop"))),
        ("compute, fine-tuning", _tflop(c.get("fine_tuning_tflop"))),
        ("compute, evaluation", _tflop(c.get("evaluation_tflop"))),
        ("compute, total", _tflop(c.get("total_tflop"))),
        ("wall time, training", f"{t.get('training', '?')} s"),
        ("wall time, evaluation", f"{t.get('evaluation', '?')} s"),
        ("wall time, total", f"{t.get('total', '?')} s"),
        ("base checkpoint", evaluation.get("pretrained_checkpoint", "?")),
        ("training pairs", (evaluation.get("dataset") or {}).get("train", "?")),
        ("prompt scheme", cfg.get("prompt_scheme", "?")),
        ("optimizer steps", tr.get("steps", "?")),
        ("train loss, first → last", _loss_pair(tr.get("first_train_loss"), tr.get("final_train_loss"))),
    ]
    rows = "".join(f'<tr><th>{esc(k)}</th><td data-fact="{esc(k)}">{esc(v)}</td></tr>' for k, v in facts)
    return (
        '<section id="compute"><h2>Compute, time and training</h2>'
        f'<div class="scroll"><table class="facts">{rows}</table></div>'
        '<h3 id="curves">Loss curves</h3>'
        + figure(out_dir / "loss_curve.png", "loss curves: fine-tuning and pretraining")
        + "</section>"
    )


def _loss_pair(first: float | None, last: float | None) -> str:
    return "?" if first is None or last is None else f"{first:.3f} → {last:.3f}"


# ---------------------------------------------------------------------------- marking replies
def value_spans(text: str, values: Iterable[str]) -> list[tuple[int, int]]:
    """Where each value occurs in ``text`` as whole tokens, case-insensitive (``domain.mentions``)."""
    spans = []
    for v in values:
        if v:
            spans += [m.span() for m in mention_pattern(v).finditer(text)]
    return spans


def invented_spans(reply: str, invented: Iterable[str]) -> list[tuple[int, int]]:
    """Where the judged-invented values (``"order_id:88231"``, ...) are written in ``reply``: each
    match of the judge's patterns that the judge (``find_specifics``) reads as one of them."""
    wanted = set(invented)
    if not wanted:
        return []
    spans = []
    for pattern, group in job_metrics.SPECIFIC_PATTERNS:
        for m in pattern.finditer(reply):
            found = job_metrics.find_specifics(m.group(0))
            if any(f"{kind}:{v}" in wanted for kind, vals in found.items() for v in vals):
                spans.append(m.span(group))
    return sorted(set(spans))  # several patterns may find the same value


def marked(text: str, spans_by_class: Mapping[str, list[tuple[int, int]]]) -> str:
    """``text`` escaped, the spans wrapped in ``<mark class=...>``; overlaps keep the earlier,
    then longer span (classes listed first win a tie)."""
    order = list(spans_by_class)
    spans = sorted(
        ((s, e, cls) for cls, found in spans_by_class.items() for s, e in found if e > s),
        key=lambda x: (x[0], -(x[1] - x[0]), order.index(x[2])),
    )
    out, pos = [], 0
    for s, e, cls in spans:
        if s < pos:
            continue
        out.append(esc(text[pos:s]) + f'<mark class="{cls}">{esc(text[s:e])}</mark>')
        pos = e
    return "".join(out) + esc(text[pos:])


# ---------------------------------------------------------------------------- one message
def stop_text(reply: Mapping) -> str:
    how = "stopped at EOS" if reply.get("stopped_by") == "eos" else "hit the length limit"
    return how if reply.get("tokens") is None else f"{how}, {reply['tokens']} tokens"


def invented_words(value: str) -> str:
    """The judge's "order_id:ZX-90000" as "order id ZX-90000"."""
    kind, _, what = value.partition(":")
    return f"{kind.replace('_', ' ')} {what}"


def reply_pane(title: str, key: str, reply: Mapping) -> str:
    """One model's reply: the text with its restated (hit) and invented specifics marked, then
    the judge's verdict: rating, failed rules, values restated / invented, and how it stopped."""
    text = reply.get("reply", "")
    body = marked(
        text,
        {
            "inv": invented_spans(text, reply.get("invented") or []),
            "hit": value_spans(text, reply.get("specifics_hit") or []),
        },
    )
    facts = []
    if reply.get("rating") is not None:
        failed = ", ".join(reply.get("failed_rules") or []) or "none"
        facts.append(f'<li>rating <b class="rating">{reply["rating"]:.1f}</b>; failed rules: {esc(failed)}</li>')
    if reply.get("specifics"):
        hits = reply.get("specifics_hit") or []
        facts.append(f"<li>restated {len(hits)} of {len(reply['specifics'])} specifics</li>")
    if reply.get("invented"):
        facts.append(f'<li class="inv-list">invented: {esc(", ".join(map(invented_words, reply["invented"])))}</li>')
    stop_cls = "eos" if reply.get("stopped_by") == "eos" else "length"
    facts.append(f'<li class="stop {stop_cls}">{esc(stop_text(reply))}</li>')
    return (
        f'<div class="pane" data-model="{esc(key)}"><h4>{esc(title)}</h4>'
        f'<p class="reply">{body or "<i>(empty reply)</i>"}</p><ul class="verdict">{"".join(facts)}</ul></div>'
    )


def customer_block(rec: Mapping, specifics: Sequence[str]) -> str:
    """The message the models answered (earlier turns of a conversation above it), with the
    specifics a reply should restate marked."""
    turns = list(rec.get("conversation") or [])
    if turns and turns[-1].get("role") == "user" and turns[-1].get("content") == rec["context"]:
        turns = turns[:-1]
    earlier = "".join(
        f'<p class="turn"><span class="role">{esc(t.get("role", "?"))}:</span> {esc(t.get("content", ""))}</p>'
        for t in turns
    )
    message = marked(rec["context"], {"given": value_spans(rec["context"], specifics)})
    return f'<div class="customer"><h4>Customer</h4>{earlier}<p class="context">{message}</p></div>'


def reference_pane(refs: Sequence[str]) -> str:
    body = "".join(f'<p class="reference">{esc(r)}</p>' for r in refs)
    return f'<div class="pane ref"><h4>Reference{"s" if len(refs) > 1 else ""}</h4>{body}</div>'


@dataclass
class RowView:
    """What a message card needs of its split: the baselines, the stronger one, every label."""

    baselines: list[str]
    best: str
    labels: dict[str, str]


def row_score(reply: Mapping, references: Sequence[str]) -> float:
    """One number per reply (``evaluate.select_examples``'s rule): the rubric rating, else
    ROUGE-L against the references (data without intents/slots has no rating)."""
    if reply.get("rating") is not None:
        return reply["rating"]
    return metrics.rouge_l([list(references)], [reply["reply"]])[0]


def outcome(rec: Mapping, best: str) -> str:
    """ "better" / "worse" / "same": SFT's greedy reply against the stronger baseline's."""
    base, sft = (row_score(rec[f"{name}_greedy"], rec["references"]) for name in (best, "sft"))
    return "better" if sft > base else "worse" if sft < base else "same"


def _who(rec: Mapping, view: RowView, test: Callable[[Mapping], bool]) -> str:
    """Space-separated "sft" / "base": whose greedy reply passes ``test``."""
    who = ["sft"] if test(rec["sft_greedy"]) else []
    return " ".join(who + (["base"] if any(test(rec[f"{b}_greedy"]) for b in view.baselines) else []))


def message_card(rec: Mapping, view: RowView) -> str:
    """One test message: customer, reference, every model's greedy reply side by side (sampled
    replies folded below), with the data-attributes the filters read."""
    models = [*view.baselines, "sft"]
    specifics = rec["sft_greedy"].get("specifics") or []
    greedy = "".join(reply_pane(view.labels[m], m, rec[f"{m}_greedy"]) for m in models)
    sampled = "".join(
        reply_pane(view.labels[m] + ", sampled", m, rec[f"{m}_sampled"]) for m in models if f"{m}_sampled" in rec
    )
    result = outcome(rec, view.best)
    attrs = {
        "split": rec["split"],
        "intent": rec.get("intent") or "",
        "outcome": result,
        "invented": _who(rec, view, lambda r: bool(r.get("invented"))),
        "nostop": _who(rec, view, lambda r: r.get("stopped_by") != "eos"),
    }
    data = " ".join(f'data-{k}="{esc(v)}"' for k, v in attrs.items())
    intent = f' · <span class="intent">{esc(rec["intent"])}</span>' if rec.get("intent") else ""
    badge = f'<span class="badge {result}">SFT {result}</span>'
    return (
        f'<article class="msg" id="m-{esc(rec["split"])}-{rec["row"]}" {data}>'
        f'<header><span class="where">{esc(rec["split"])} · row {rec["row"]}</span>{intent} {badge}</header>'
        f'{customer_block(rec, specifics)}<div class="panes">{reference_pane(rec["references"])}{greedy}</div>'
        + (
            f'<details><summary>sampled replies</summary><div class="panes">{sampled}</div></details>'
            if sampled
            else ""
        )
        + "</article>"
    )


# ---------------------------------------------------------------------------- the message list
def row_views(evaluation: Mapping, records: Sequence[Mapping]) -> dict[str, RowView]:
    """Per split: its baselines, the stronger one (evaluation.json's ``best_baseline``), labels."""
    views = {}
    for split, result in split_reports(evaluation).items():
        names = model_names(result)
        baselines = [n for n in names if n != "sft"]
        best = result.get("best_baseline") if result.get("best_baseline") in baselines else baselines[0]
        views[split] = RowView(baselines, best, {n: model_label(n, result) for n in names})
    for rec in records:  # a split the evaluation does not describe: read its models off the record
        if rec["split"] not in views:
            baselines = sorted({k[: -len("_greedy")] for k in rec if k.endswith("_greedy")} - {"sft"})
            views[rec["split"]] = RowView(baselines, baselines[0], {n: n for n in [*baselines, "sft"]} | {"sft": "SFT"})
    return views


def _select(name: str, label: str, options: Sequence[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(text)}</option>' for v, text in options)
    return f'<label>{esc(label)} <select id="f-{name}" data-filter="{name}">{opts}</select></label>'


def filters_bar(records: Sequence[Mapping]) -> str:
    """The filter controls: a select per filter (intent only where the data has intents), search."""
    splits = list(dict.fromkeys(r["split"] for r in records))
    intents = sorted({r["intent"] for r in records if r.get("intent")})
    controls = [_select("split", "split", [("", "all"), *((s, s) for s in splits)])]
    if intents:
        controls.append(_select("intent", "intent", [("", "all"), *((i, i) for i in intents)]))
    controls += [
        _select(
            "outcome",
            "SFT vs baseline",
            [("", "all"), ("better", "SFT better"), ("worse", "SFT worse"), ("same", "same")],
        ),
        _select("invented", "invented", WHO_OPTIONS),
        _select("nostop", "did not stop", WHO_OPTIONS),
        SEARCH_BOX,
    ]
    return f'<div class="filters" role="search">{"".join(controls)}<span id="f-count" aria-live="polite"></span></div>'


SEARCH_BOX = (
    '<label class="search">search <input type="search" id="f-q" data-filter="q" placeholder="words, order id…"></label>'
)
WHO_OPTIONS = (
    ("", "all"),
    ("sft", "SFT reply"),
    ("base", "a pretrained reply"),
    ("any", "any reply"),
    ("none", "no reply"),
)


def legend() -> str:
    return (
        '<p class="legend"><mark class="given">value in the message</mark> '
        '<mark class="hit">specific restated</mark> <mark class="inv">specific invented</mark> '
        '<span class="stop length">hit the length limit</span></p>'
    )


def messages_section(evaluation: Mapping, records: Sequence[Mapping]) -> str:
    views = row_views(evaluation, records)
    cards = "".join(message_card(r, views[r["split"]]) for r in records)
    return (
        f'<section id="messages"><h2>Every test message ({len(records)})</h2>{filters_bar(records)}{legend()}'
        f'<div id="cards">{cards}</div></section>'
    )


# ---------------------------------------------------------------------------- the page
def headline_lines(evaluation: Mapping) -> str:
    """The sentence under the title: what was fine-tuned on, and links to the sections."""
    ds = evaluation.get("dataset") or {}
    source = "your data" if ds.get("source") == "user" else "synthetic retail pairs"
    return (
        f'<p class="lede">Fine-tuned on {esc(ds.get("train", "?"))} {source}; compared with the pretrained '
        f"model on the same held-out prompts and seed. Jump to "
        '<a href="#metrics">metrics</a> · <a href="#compute">compute</a> · <a href="#curves">loss curves</a> · '
        '<a href="#messages">messages</a>.</p>'
    )


def build_report(evaluation: Mapping, records: Sequence[Mapping], out_dir: Path) -> str:
    body = (
        "<h1>Pretrained vs fine-tuned: held-out test messages</h1>"
        + headline_lines(evaluation)
        + metrics_section(evaluation)
        + compute_section(evaluation, out_dir)
        + messages_section(evaluation, records)
    )
    return page("SFT report", body, FILTER_JS)


def write_report_html(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` (atomically) from the run's files in ``out_dir``."""
    out_dir = Path(out_dir)
    evaluation, records = read_run(out_dir)
    return write_text_atomic(build_report(evaluation, records, out_dir), out_dir / REPORT_NAME)


def write_report_html_or_note(out_dir: str | Path) -> Path:
    """:func:`write_report_html` at the end of a run: a page that cannot be built must not cost
    the run its model and evaluation, so the error is printed and written in place of the page
    (never a previous run's page beside this run's files), with the command that rebuilds it."""
    try:
        return write_report_html(out_dir)
    except Exception as e:  # any bug of the page: the run's results stand
        why = f"{type(e).__name__}: {e}"
        print(f"warning: report.html could not be built ({why}); the run's other files are complete", flush=True)
        body = (
            f"<h1>report.html could not be built</h1><p>{esc(why)}</p><p>The run's evaluation.json and "
            "generations.jsonl are complete; rebuild the page with <code>python -m part4_sft.report_html "
            "--out-dir DIR</code>.</p>"
        )
        return write_text_atomic(page("SFT report", body), Path(out_dir) / REPORT_NAME)


# ---------------------------------------------------------------------------- static assets
CSS = """
:root{--fg:#1d2329;--muted:#5b6670;--line:#d9dee3;--bg:#fff;--soft:#f5f7f9;--hit:#c8f0d2;--inv:#ffd0cc;
--given:#d8e6ff;--good:#1a7f37;--bad:#b42318}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1280px;margin:0 auto;padding:16px 20px 48px}
h1{font-size:1.5rem;margin:.3em 0}h2{font-size:1.25rem;margin:1.6em 0 .4em;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem;margin:1.2em 0 .4em}h4{font-size:.8rem;margin:0 0 .3em;text-transform:uppercase;
letter-spacing:.04em;color:var(--muted)}
.lede,.note{color:var(--muted)}.note{font-size:.9rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.88rem;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap;vertical-align:top}
th:first-child,.facts th,.facts td{text-align:left}thead th{background:var(--soft);position:sticky;top:0}
tr.aside{color:var(--muted);font-style:italic}
.ci{display:block;font-size:.78rem;color:var(--muted);font-weight:400}
table.metrics tbody th,table.diffs tbody th{white-space:normal;min-width:11em;max-width:17em}
h4.sub{font-size:.95rem;text-transform:none;letter-spacing:0;color:var(--fg);margin:1em 0 .3em}
td.good{color:var(--good);font-weight:600}td.bad{color:var(--bad);font-weight:600}
figure{margin:.5em 0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-size:.85rem;color:var(--muted)}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:12px}
tr.best{background:#fff8db}.plots .wide{grid-column:1/-1}
.filters{position:sticky;top:0;z-index:2;background:var(--bg);display:flex;flex-wrap:wrap;gap:8px 14px;
align-items:center;padding:8px 0;border-bottom:1px solid var(--line)}
.filters label{font-size:.85rem;color:var(--muted)}
select,input{font:inherit;font-size:.9rem;padding:3px 6px;border:1px solid var(--line);border-radius:6px;
background:#fff;color:var(--fg)}
.search{flex:1 1 260px;display:flex;align-items:center;gap:6px}.search input{flex:1;min-width:0}
#f-count{font-size:.85rem;font-weight:600}
mark{border-radius:3px;padding:0 2px;color:inherit}mark.hit{background:var(--hit)}
mark.inv{background:var(--inv);outline:1px solid #e5534b}mark.given{background:var(--given)}
.legend{font-size:.85rem}.legend>*{margin-right:8px}
article.msg{border:1px solid var(--line);border-radius:10px;margin:14px 0;padding:12px 14px;background:#fff}
article.msg header{font-size:.85rem;color:var(--muted);margin-bottom:8px}
.badge{display:inline-block;border-radius:99px;padding:0 9px;margin-left:6px;font-size:.78rem;font-weight:600}
.badge.better{background:#dcf5e3;color:var(--good)}.badge.worse{background:#fde4e1;color:var(--bad)}
.badge.same{background:var(--soft);color:var(--muted)}
.customer{background:var(--soft);border-radius:8px;padding:8px 12px;margin-bottom:10px}
.customer p{margin:.2em 0}.turn{color:var(--muted);font-size:.9rem}.role{font-weight:600}
.panes{display:grid;grid-template-columns:repeat(auto-fit,minmax(250px,1fr));gap:10px}
.pane{border:1px solid var(--line);border-radius:8px;padding:8px 12px;min-width:0}
.pane.ref{background:#fbfcfd}.pane[data-model=sft]{border-color:#9cc7ff}
.reference+.reference{border-top:1px dashed var(--line);padding-top:.4em}
.reply,.reference{margin:.2em 0 .5em;white-space:pre-wrap;overflow-wrap:anywhere}
.verdict{margin:0;padding-left:1.1em;font-size:.82rem;color:var(--muted)}
.inv-list{color:var(--bad)}.stop.length{color:#9a6700;font-weight:600}
.legend .stop.length{border:1px solid #e9c46a;border-radius:3px;padding:0 4px}
details{margin-top:8px}summary{cursor:pointer;font-size:.85rem;color:var(--muted)}
table.sortable th{cursor:pointer;user-select:none}table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
@media (max-width:640px){main{padding:10px 10px 40px}body{font-size:14px}h1{font-size:1.25rem}
.filters{gap:6px 10px;position:static}.filters label{flex:1 1 45%}.filters select{width:100%}th,td{padding:4px 6px}
table.metrics tbody th,table.diffs tbody th{min-width:8em}thead th{white-space:normal;min-width:5.5em}
table.metrics th:first-child,table.diffs th:first-child{position:sticky;left:0;background:#fff;z-index:1;
box-shadow:inset 0 -1px var(--line),inset -1px 0 var(--line)}
table.metrics thead th:first-child,table.diffs thead th:first-child{background:var(--soft)}}
"""

# Filters: read the controls (or the URL hash on load), hide the cards that do not match, keep
# the hash in step so a filtered view can be bookmarked or opened by a test.
FILTER_JS = """
(function () {
  "use strict";
  var names = ["split", "intent", "outcome", "invented", "nostop", "q"];
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.msg"));
  var texts = cards.map(function (c) { return c.textContent.toLowerCase(); });
  function control(name) { return document.getElementById("f-" + name); }
  function who(tokens, want) {
    if (!want) return true;
    if (want === "none") return tokens === "";
    if (want === "any") return tokens !== "";
    return tokens.split(" ").indexOf(want) >= 0;
  }
  function matches(card, text, v) {
    var d = card.dataset;
    return (!v.split || d.split === v.split) && (!v.intent || d.intent === v.intent) &&
      (!v.outcome || d.outcome === v.outcome) && who(d.invented, v.invented) &&
      who(d.nostop, v.nostop) && (!v.q || text.indexOf(v.q) >= 0);
  }
  function apply() {
    var v = {}, shown = 0, params = [];
    names.forEach(function (n) { var c = control(n); v[n] = c ? c.value.trim() : ""; });
    v.q = v.q.toLowerCase();
    cards.forEach(function (card, i) {
      var ok = matches(card, texts[i], v);
      card.hidden = !ok;
      if (ok) shown += 1;
    });
    document.getElementById("f-count").textContent = shown + " of " + cards.length + " messages shown";
    names.forEach(function (n) { if (v[n]) params.push(n + "=" + encodeURIComponent(v[n])); });
    if (!params.length && location.hash.indexOf("=") < 0) return;  // keep a plain #anchor
    try {
      history.replaceState(null, "", params.length ? "#" + params.join("&") : location.pathname + location.search);
    } catch (e) {}
  }
  function fromHash() {
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("="), c = i > 0 ? control(kv.slice(0, i)) : null;
      if (c) c.value = decodeURIComponent(kv.slice(i + 1).replace(/\\+/g, " "));
    });
  }
  names.forEach(function (n) {
    var c = control(n);
    if (c) c.addEventListener(c.tagName === "INPUT" ? "input" : "change", apply);
  });
  fromHash();
  apply();
})();
"""


# ---------------------------------------------------------------------------- entry point
@dataclass
class ReportConfig:
    """``python -m part4_sft.report_html``: rebuild report.html of a finished SFT run."""

    out_dir: str = option("checkpoints/sft", "the run's output directory (evaluation.json, generations.jsonl)")

    def problems(self) -> list[str]:
        missing = [n for n in ("evaluation.json", "generations.jsonl") if not (Path(self.out_dir) / n).is_file()]
        return [f"--out-dir {self.out_dir}: no {' or '.join(missing)} (not a finished SFT run)"] if missing else []


def _run(cfg: ReportConfig) -> Path:
    path = write_report_html(cfg.out_dir)
    print(f"wrote:\n  {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        ReportConfig, argv, "python -m part4_sft.report_html", __doc__.splitlines()[0], _run, (ConfigError,)
    )


if __name__ == "__main__":
    sys.exit(main())
