"""The results table and comparison plots of an experiment, rebuilt from its directory alone.

Every number comes from the runs' TensorBoard event files (the source of truth); the knobs come
from each run's ``config.json``; ``STOP`` / ``DONE`` markers only name the status. So
``python -m part4_sft.experiment report DIR`` rebuilds exactly the table the experiment wrote.

Event files are read one by one with TensorBoard's ``EventFileLoader`` and replayed in the order
they were written (by their first event's wall time), applying restart markers as TensorBoard
does (a resumed run's writer drops steps >= its purge step). ``EventAccumulator`` on the run's
directory would order the files by name instead, and two writers opened in the same second by
one process sort by a counter compared as text ("10" < "9").

Columns: the knobs; final train loss (mean over the last epoch's steps); on the VALIDATION
split, eval loss and mean token accuracy of its pairs and the job/text metrics of greedy replies
to all its rows (``final_val/``; CSV ``val_*``); on the held-out TEST set, scored once per run at
the end (``final/``), the teacher-forced loss of the references, ROUGE-L, BLEU, EOS-stop rate and
the job metrics (specifics recall, invented share, intent accuracy, rubric pass; CSV also rubric
mean); trainable parameters, wall time. With several seeds per config the table shows mean and
std.

Selection: the best finished run (or config) is marked ``*`` by a VALIDATION metric only,
``--select-by`` (default ``val_rubric_pass``, the validation rubric pass rate, ties going to the
lower validation loss; when no run has it, e.g. user data without intents/slots, the validation
loss ``eval_loss``). ``--sort-by`` may order the rows by any column, test ones included
(default: the selection metric), but it never moves the ``*``. The table's legend says which
metric picked, and so does the CSV's ``best_by`` column.

A run that has not finished has no test values yet; its validation job/text columns show its
latest interval values on the fixed validation subset (``val_gen/``), marked ``~``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from part3_pretrain.fileio import save_figure_atomic, write_text_atomic

from .report_html import write_experiment_html

KNOB_COLUMNS = ("base", "prompt", "adapter", "lr", "epochs", "data", "seed")
_RATE, _LOSS = "{:.1%}", "{:.3f}"
# metric -> (higher is better, how it is shown)
METRICS: dict[str, tuple[bool, str]] = {
    "train_loss": (False, _LOSS),
    # validation split (val/ for the pairs' loss and accuracy; final_val/ or latest val_gen/ for the replies)
    "eval_loss": (False, _LOSS),
    "token_acc": (True, _LOSS),
    "val_specifics_recall": (True, _RATE),
    "val_invented_share": (False, _RATE),
    "val_intent_accuracy": (True, _RATE),
    "val_rubric_pass": (True, _RATE),
    "val_rubric_mean": (True, "{:.2f}"),
    "val_rouge_l": (True, _LOSS),
    "val_bleu": (True, _LOSS),
    "val_eos_rate": (True, "{:.0%}"),
    # held-out test set, once per run at the end (final/)
    "test_loss": (False, _LOSS),
    "rouge_l": (True, _LOSS),
    "bleu": (True, _LOSS),
    "eos_rate": (True, "{:.0%}"),
    "test_specifics_recall": (True, _RATE),
    "test_invented_share": (False, _RATE),
    "test_intent_accuracy": (True, _RATE),
    "test_rubric_pass": (True, _RATE),
    "test_rubric_mean": (True, "{:.2f}"),
    "trainable_params": (False, "{:,.0f}"),
    "wall_s": (False, "{:.0f}"),
}
SORT_CHOICES = tuple(METRICS)
# column -> scalar tag suffix of the reply metrics (under final_val/ or val_gen/, and final/)
REPLY_TAGS = {
    "specifics_recall": "specifics_recall",
    "invented_share": "invented_share",
    "intent_accuracy": "intent_accuracy",
    "rubric_pass": "rubric_pass",
    "rubric_mean": "rubric_mean",
    "rouge_l": "rouge_l",
    "bleu": "bleu",
    "eos_rate": "eos_stop_rate",
}
VAL_METRICS = {f"val_{k}": t for k, t in REPLY_TAGS.items()}
TEST_METRICS = {(k if k in ("rouge_l", "bleu", "eos_rate") else f"test_{k}"): t for k, t in REPLY_TAGS.items()}
# what may mark the best run: validation metrics only
SELECT_CHOICES = (
    "val_rubric_pass",
    "val_rubric_mean",
    "val_specifics_recall",
    "val_intent_accuracy",
    "val_invented_share",
    "val_rouge_l",
    "val_bleu",
    "val_eos_rate",
    "eval_loss",
    "token_acc",
)
DEFAULT_SELECT = "val_rubric_pass"
FALLBACK_SELECT = "eval_loss"  # when no run has the --select-by metric (data without intents/slots)
CSV_COLUMNS = (
    "run",
    "best",
    "best_by",
    "status",
    "step",
    "max_steps",
    *KNOB_COLUMNS,
    "parent",
    "train_loss",
    "eval_loss",
    "token_acc",
    *VAL_METRICS,
    "val_from",
    "test_loss",
    "rouge_l",
    "bleu",
    "eos_rate",
    *(k for k in TEST_METRICS if k.startswith("test_")),
    "trainable_params",
    "wall_s",
)
LABELS = {
    "step": "step",
    "base": "base",
    "prompt": "prompt",
    "adapter": "adapter",
    "lr": "lr",
    "epochs": "ep",
    "data": "data",
    "seed": "seed",
    "train_loss": "train loss",
    "eval_loss": "eval loss",
    "token_acc": "token acc",
    "test_loss": "test loss",
    "rouge_l": "ROUGE-L",
    "bleu": "BLEU",
    "eos_rate": "EOS stop",
    "test_specifics_recall": "specifics",
    "test_invented_share": "invented",
    "test_intent_accuracy": "intent",
    "test_rubric_pass": "rubric pass",
    "test_rubric_mean": "rubric mean",
    "trainable_params": "trainable",
    "wall_s": "wall s",
    "val_specifics_recall": "val specifics recall",
    "val_invented_share": "val invented share",
    "val_intent_accuracy": "val intent accuracy",
    "val_rubric_pass": "val rubric pass",
    "val_rubric_mean": "val rubric mean",
    "val_rouge_l": "val ROUGE-L",
    "val_bleu": "val BLEU",
    "val_eos_rate": "val EOS stop",
}
# shown in the terminal and results.md (plus the selection and sort columns when not among them)
SHOWN_KEYS = (
    "step",
    "base",
    "prompt",
    "adapter",
    "lr",
    "epochs",
    "data",
    "seed",
    "train_loss",
    "eval_loss",
    "token_acc",
    "test_loss",
    "rouge_l",
    "bleu",
    "eos_rate",
    "test_specifics_recall",
    "test_invented_share",
    "test_intent_accuracy",
    "test_rubric_pass",
    "trainable_params",
    "wall_s",
)
SHOWN = tuple((k, LABELS[k]) for k in SHOWN_KEYS)
TEST_SHOWN = (
    "test_loss",
    "rouge_l",
    "bleu",
    "eos_rate",
    "test_specifics_recall",
    "test_invented_share",
    "test_intent_accuracy",
    "test_rubric_pass",
)


class ReportError(ValueError):
    """An experiment directory that cannot be reported."""


# ---------------------------------------------------------------------------------------------
# event files


def _event_files(tb_dir: Path) -> list[Path]:
    return sorted(p for p in tb_dir.glob("events.out.tfevents.*") if p.is_file()) if tb_dir.is_dir() else []


def _scalar_value(v) -> float | None:
    if v.HasField("simple_value"):
        return float(v.simple_value)
    if v.HasField("tensor"):
        t = v.tensor
        if t.float_val:
            return float(t.float_val[0])
        if t.double_val:
            return float(t.double_val[0])
    return None


def read_scalars(tb_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's event files: ``{tag: [(step, value), ...]}`` sorted by step; for a
    step logged twice the later write wins, and restart markers purge as TensorBoard does."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    files = []
    for path in _event_files(Path(tb_dir)):
        events = list(EventFileLoader(str(path)).Load())
        if events:
            files.append((events[0].wall_time, path.name, events))
    data: dict[str, dict[int, float]] = {}
    for _, _, events in sorted(files, key=lambda f: (f[0], f[1])):
        for e in events:
            if e.HasField("session_log") and e.session_log.status == SessionLog.START:
                data = {tag: {s: v for s, v in d.items() if s < e.step} for tag, d in data.items()}
            elif e.HasField("summary"):
                for v in e.summary.value:
                    value = _scalar_value(v)
                    if value is not None:
                        data.setdefault(v.tag, {})[int(e.step)] = value
    return {tag: sorted(d.items()) for tag, d in data.items() if d}


def _last(scalars: dict, tag: str) -> float | None:
    series = scalars.get(tag)
    return series[-1][1] if series else None


# ---------------------------------------------------------------------------------------------
# rows


# what the table needs from a run's config.json ("knobs.<k>": a key of the "knobs" object)
REPORT_KEYS = ("name", *(f"knobs.{k}" for k in KNOB_COLUMNS))
# files and folders only a run writes: a folder with any of them and no config.json is a run that lost it
RUN_MARKERS = (
    "state.pt",
    "status.json",
    "metrics.jsonl",
    "tb",
    "evaluation.json",
    "adapter.pt",
    "model.pt",
    "DONE",
    "STOP",
)


def missing_keys(doc: object, required: Sequence[str] = REPORT_KEYS) -> list[str]:
    """The ``required`` keys (``"a.b"``: key b of the object under a) that ``doc`` lacks."""
    missing = []
    for key in required:
        node = doc
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                missing.append(key)
                break
    return missing


def read_run_config(run_dir: Path, required: Sequence[str] = REPORT_KEYS) -> dict:
    """A run's config.json as a dict holding the ``required`` keys, or a one-line ReportError
    naming the file and the keys it lacks."""
    path = run_dir / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    except ValueError:
        raise ReportError(f"{path}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: not a run config (a JSON object expected)")
    missing = missing_keys(doc, required)
    if missing:
        raise ReportError(
            f"{path}: run config lacks {', '.join(missing)}; restore the file (it is written when "
            f"the run is registered) or move {run_dir} out of the experiment"
        )
    return doc


def run_dirs(exp_dir: Path) -> list[Path]:
    """Run directories in registration order (grid order, then clones)."""
    found = []
    for d in exp_dir.iterdir() if exp_dir.is_dir() else []:
        if d.is_dir() and (d / "config.json").is_file():
            index = read_run_config(d, required=()).get("index", 0)
            found.append((index if isinstance(index, int) else 0, d.name, d))
    return [d for _, _, d in sorted(found)]


def orphan_run_dirs(exp_dir: Path) -> list[Path]:
    """Folders that hold a run's files but no config.json (deleted by hand?): the table cannot
    describe them, so they are left out of it, and the callers say so."""
    if not Path(exp_dir).is_dir():
        return []
    return sorted(
        d
        for d in Path(exp_dir).iterdir()
        if d.is_dir() and not (d / "config.json").exists() and any((d / m).exists() for m in RUN_MARKERS)
    )


def orphan_warning(d: Path) -> str:
    return f"{d}: run folder without config.json, left out of the table (restore its config.json to include it)"


def run_row(run_dir: Path) -> dict:
    """One table row: knobs from config.json, every number from the event files."""
    cfg = read_run_config(run_dir)
    s = read_scalars(run_dir / "tb")
    knobs = cfg["knobs"]
    row: dict = {
        "run": cfg["name"],
        "config_id": cfg.get("config_id", cfg["name"]),
        "parent": cfg.get("parent") or "",
        **{k: knobs[k] for k in KNOB_COLUMNS},
    }
    train = s.get("train/loss", [])
    spe = _last(s, "meta/steps_per_epoch")
    window = [v for _, v in train[-int(spe) :]] if spe else [v for _, v in train[-10:]]
    finished = _last(s, "final/rouge_l") is not None
    row.update(
        step=train[-1][0] if train else 0,
        max_steps=_int(_last(s, "meta/max_steps")),
        train_loss=sum(window) / len(window) if window else None,
        eval_loss=_last(s, "val/loss"),
        token_acc=_last(s, "val/token_acc"),
        test_loss=_last(s, "final/ref_loss"),
        trainable_params=_int(_last(s, "meta/trainable_params")),
        wall_s=_last(s, "meta/wall_seconds"),
    )
    for col, tag in TEST_METRICS.items():  # the test set: only once the run has finished
        row[col] = _last(s, "final/" + tag)
    has_final_val = any(k.startswith("final_val/") for k in s)
    for col, tag in VAL_METRICS.items():
        row[col] = _last(s, ("final_val/" if has_final_val else "val_gen/") + tag)
    has_val = any(row[c] is not None for c in VAL_METRICS)
    row["val_from"] = ("final" if has_final_val else "interval") if has_val else ""
    if finished:
        row["status"] = "done"
    elif (run_dir / "STOP").is_file():
        row["status"] = "stopped"
    else:
        row["status"] = "partial" if train else "pending"
    return row


def _int(x: float | None) -> int | None:
    return None if x is None else int(round(x))


def collect(exp_dir: str | os.PathLike) -> list[dict]:
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ReportError(f"{exp_dir}: no such experiment directory")
    dirs = run_dirs(exp_dir)
    if not dirs:
        orphans = orphan_run_dirs(exp_dir)
        raise ReportError(
            f"{exp_dir}: no runs (no <run>/config.json) in this directory"
            + (
                f"; {len(orphans)} run folder(s) lack their config.json: {', '.join(d.name for d in orphans[:5])}"
                if orphans
                else ""
            )
        )
    return [run_row(d) for d in dirs]


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """One row per config (runs that differ only by seed): mean and std of every metric."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["config_id"], []).append(r)
    out = []
    for cid, members in groups.items():
        first = members[0]
        agg = {
            "run": cid,
            "config_id": cid,
            "parent": first["parent"],
            "seeds": len(members),
            **{k: first[k] for k in KNOB_COLUMNS if k != "seed"},
            "seed": ",".join(str(m["seed"]) for m in members),
            "step": sum(m["step"] for m in members),
            "max_steps": sum(m["max_steps"] or 0 for m in members),
            "val_from": "final"
            if all(m["val_from"] == "final" for m in members)
            else ("interval" if any(m["val_from"] for m in members) else ""),
        }
        n_done = sum(m["status"] == "done" for m in members)
        agg["status"] = "done" if n_done == len(members) else f"{n_done}/{len(members)} done"
        for m in METRICS:
            vals = [x[m] for x in members if x[m] is not None]
            agg[m] = sum(vals) / len(vals) if vals else None
            agg[m + "_std"] = _std(vals) if vals else None
        out.append(agg)
    return out


def _std(vals: Sequence[float]) -> float:
    if len(vals) < 2:
        return 0.0
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def selection_metric(rows: Sequence[dict], select_by: str = DEFAULT_SELECT) -> str:
    """The validation metric that marks the best run: ``select_by``, or ``eval_loss`` (validation
    loss) when no row has a value for it (data without intents/slots has no rubric)."""
    if select_by not in SELECT_CHOICES:
        raise ReportError(f"--select-by must be a validation metric, one of {list(SELECT_CHOICES)} (got {select_by!r})")
    return select_by if any(r.get(select_by) is not None for r in rows) else FALLBACK_SELECT


def _ordered(rows: Sequence[dict], metric: str) -> list[dict]:
    """Best first by ``metric``; rows without a value last (stable)."""
    higher = METRICS[metric][0]
    valued = sorted((r for r in rows if r[metric] is not None), key=lambda r: -r[metric] if higher else r[metric])
    return valued + [r for r in rows if r[metric] is None]


def sort_rows(rows: Sequence[dict], metric: str | None = None, select_by: str = DEFAULT_SELECT) -> list[dict]:
    """Rows sorted best first by ``metric`` (any column; default: the selection metric), rows
    without a value last, ties by the lower validation loss; marks the best finished row by the
    VALIDATION metric :func:`selection_metric` gives (same tie rule), whatever the sort."""
    chosen = selection_metric(rows, select_by)
    metric = chosen if metric is None else metric
    if metric not in METRICS:
        raise ReportError(f"--sort-by must be one of {list(METRICS)} (got {metric!r})")
    # ties (a rate on 100 validation rows ties often) go to the lower validation loss
    by_loss = [dict(r) for r in _ordered(rows, FALLBACK_SELECT)]
    ordered = _ordered(by_loss, metric)
    done = [r for r in _ordered(by_loss, chosen) if r["status"] == "done" and r[chosen] is not None]
    for r in ordered:
        r["best"] = 1 if done and r is done[0] else 0
        r["best_by"] = chosen
    return ordered


# ---------------------------------------------------------------------------------------------
# formatting


def _cell(row: dict, key: str, aggregated: bool) -> str:
    v = row.get(key)
    if key == "step":
        return f"{row['step']}/{row['max_steps']}" if row.get("max_steps") else str(row["step"])
    if v is None:
        return "-"
    if key == "lr":
        return f"{v:g}"
    if key not in METRICS:
        return str(v)
    text = METRICS[key][1].format(v)
    std = row.get(key + "_std")
    if aggregated and std is not None and row.get("seeds", 1) > 1 and key not in ("trainable_params",):
        text += " ± " + METRICS[key][1].format(std)
    if key in VAL_METRICS and row.get("val_from") == "interval":
        text += "~"
    return text


def shown_columns(select_by: str = DEFAULT_SELECT, sort_by: str | None = None) -> list[tuple[str, str]]:
    """SHOWN plus the selection column and the sort column where they are not among them: a
    validation one after the token accuracy, another at the end of the test columns."""
    cols = list(SHOWN)
    for key in dict.fromkeys(k for k in (select_by, sort_by) if k):
        if key in SHOWN_KEYS:
            continue
        after = "token_acc" if key in VAL_METRICS else "test_rubric_pass"
        at = next(i for i, (k, _) in enumerate(cols) if k == after) + 1
        while at < len(cols) and cols[at][0] in VAL_METRICS and key in VAL_METRICS:
            at += 1  # after the validation columns already inserted
        cols.insert(at, (key, LABELS[key]))
    return cols


def table_cells(
    rows: Sequence[dict], aggregated: bool, columns: Sequence[tuple[str, str]] | None = None
) -> tuple[list[str], list[list[str]]]:
    columns = (
        shown_columns(rows[0]["best_by"] if rows and rows[0].get("best_by") else DEFAULT_SELECT)
        if columns is None
        else columns
    )
    header = ["run", "status"] + [label for _, label in columns]
    if aggregated:
        header.insert(2, "seeds")
    body = []
    for r in rows:
        cells = [("* " if r.get("best") else "") + r["run"], r["status"]]
        if aggregated:
            cells.append(str(r["seeds"]))
        cells += [_cell(r, key, aggregated) for key, _ in columns]
        body.append(cells)
    return header, body


def format_terminal(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=False)) for b in body]
    return "\n".join(lines)


def format_markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
    return "\n".join(lines)


def format_csv(rows: Sequence[dict], aggregated: bool) -> str:
    columns = list(CSV_COLUMNS)
    if aggregated:
        columns.insert(3, "seeds")
        for m in reversed(list(METRICS)):
            columns.insert(columns.index(m) + 1, m + "_std")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue()


@dataclass
class Table:
    rows: list[dict]  # sorted, best marked; aggregated over seeds when ``aggregated``
    run_rows: list[dict]  # one per run, sorted
    aggregated: bool
    sort_by: str
    select_by: str  # the validation metric that marked the best (after the eval_loss fallback)
    terminal: str
    markdown: str
    csv: str
    left_out: list[str] = field(default_factory=list)  # run folders without config.json


def _metric_words(metric: str) -> str:
    return f"{LABELS[metric]} ({metric}, {'higher' if METRICS[metric][0] else 'lower'} is better)"


def build_table(exp_dir: str | os.PathLike, sort_by: str | None = None, select_by: str = DEFAULT_SELECT) -> Table:
    """The experiment's table from its directory alone: sorted by ``sort_by`` (default: the
    selection metric), the best marked by the validation metric ``select_by``."""
    exp_dir = Path(exp_dir)
    collected = collect(exp_dir)
    chosen = selection_metric(collected, select_by)
    sort_by = chosen if sort_by is None else sort_by
    run_rows = sort_rows(collected, sort_by, chosen)
    aggregated = len({r["config_id"] for r in run_rows}) < len(run_rows)
    rows = sort_rows(aggregate(run_rows), sort_by, chosen) if aggregated else run_rows
    header, body = table_cells(rows, aggregated, shown_columns(chosen, sort_by))
    left_out = [str(d) for d in orphan_run_dirs(exp_dir)]
    notes = _table_notes(rows, aggregated, sort_by, select_by, chosen, left_out)
    md = [f"# Experiment {_experiment_name(exp_dir)}", ""] + _bases_lines(exp_dir) + [format_markdown(header, body), ""]
    md += [f"- {n}" for n in notes]
    return Table(
        rows,
        run_rows,
        aggregated,
        sort_by,
        chosen,
        format_terminal(header, body) + "\n" + "\n".join(notes),
        "\n".join(md) + "\n",
        format_csv(rows, aggregated),
        left_out,
    )


def _table_notes(
    rows: Sequence[dict], aggregated: bool, sort_by: str, select_by: str, chosen: str, left_out: Sequence[str]
) -> list[str]:
    """The lines under the table: what marked the best (validation only), the order, what the
    test and validation columns are, the marks, and the run folders left out."""
    best = next((r["run"] for r in rows if r.get("best")), None)
    unit = "config" if aggregated else "run"
    direction = "higher" if METRICS[sort_by][0] else "lower"
    notes = [
        f"* = best finished {unit} by the VALIDATION metric {_metric_words(chosen)}"
        + ("" if chosen == FALLBACK_SELECT else f", ties to the lower {FALLBACK_SELECT}")
        + (f": {best}" if best else " (none finished yet)")
        + "; test columns never pick the best"
    ]
    if chosen != select_by:
        notes.append(f"no run has {select_by} (data without intents/slots): the best is picked by {chosen}")
    notes.append(
        f"sorted by {sort_by} ({direction} is better)"
        + (
            "; a TEST column: the order is for reading, the * still comes from validation"
            if sort_by in TEST_SHOWN or sort_by in TEST_METRICS
            else ""
        )
    )
    notes.append(
        "test columns (" + ", ".join(LABELS[k] for k in TEST_SHOWN) + "): greedy replies to the whole "
        "held-out test set, scored once per run at the end; validation columns: the validation split"
    )
    if any(r.get("val_from") == "interval" for r in rows):
        notes.append("~ = run not finished: latest interval value on the fixed validation subset")
    if aggregated:
        notes.append("values are mean ± std over seeds")
    if left_out:
        notes.append("LEFT OUT (run folders without config.json): " + ", ".join(left_out))
    return notes


def _experiment_json(exp_dir: Path) -> dict:
    try:
        return json.loads((exp_dir / "experiment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _experiment_name(exp_dir: Path) -> str:
    return _experiment_json(exp_dir).get("name", exp_dir.name)


def _bases_lines(exp_dir: Path) -> list[str]:
    """One line per base model from experiment.json (pretraining is timed apart from the grid)."""
    bases = _experiment_json(exp_dir).get("bases", {})
    lines = []
    for name, b in bases.items():
        secs = b.get("pretrain_seconds")
        lines.append(
            f"- base `{name}`: `{b.get('path')}`, {b.get('parameters', 0):,} parameters, "
            f"{b.get('n_layer', '?')} layers; part-3 pretraining "
            f"{f'{secs:.0f} s' if secs is not None else 'time unknown'} (not in the wall times below)"
        )
    return lines + ([""] if lines else [])


def write_tables(exp_dir: str | os.PathLike, sort_by: str | None = None, select_by: str = DEFAULT_SELECT) -> Table:
    """results.csv and results.md (plus results_runs.csv with several seeds), written atomically."""
    exp_dir = Path(exp_dir)
    table = build_table(exp_dir, sort_by, select_by)
    write_text_atomic(table.csv, exp_dir / "results.csv")
    write_text_atomic(table.markdown, exp_dir / "results.md")
    if table.aggregated:
        write_text_atomic(format_csv(table.run_rows, False), exp_dir / "results_runs.csv")
    return table


# ---------------------------------------------------------------------------------------------
# plots


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _bars(rows: Sequence[dict], series: Sequence[tuple[str, str]], title: str, ylabel: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = [r["run"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.8))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(rows))]
        vals = [r[key] if r[key] is not None else math.nan for r in rows]  # no bar where there is no value
        errs = [r.get(key + "_std") or 0.0 for r in rows]
        bars = ax.bar(xs, vals, width, yerr=errs if any(errs) else None, label=label)
        ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.3f}" for v in vals], fontsize=7)
    ax.set_xticks(range(len(rows)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_curves(exp_dir: Path, path: Path) -> Path:
    """Overlaid curves of every run against epochs: train loss, and on the validation split eval
    loss, token accuracy, and the rubric pass rate, specifics recall and ROUGE-L of greedy replies
    to its fixed subset (the test set has no curves: it is scored once, at the end)."""
    import matplotlib.pyplot as plt

    panels = (
        ("train/loss", "train loss (per step)"),
        ("val/loss", "eval loss (validation pairs)"),
        ("val/token_acc", "mean token accuracy (validation)"),
        ("val_gen/rubric_pass", "rubric pass rate (validation subset, greedy)"),
        ("val_gen/specifics_recall", "specifics recall (validation subset, greedy)"),
        ("val_gen/rouge_l", "ROUGE-L (validation subset, greedy)"),
    )
    fig, axes = plt.subplots(2, 3, figsize=(18, 8.5))
    for d in run_dirs(exp_dir):
        s = read_scalars(d / "tb")
        spe = _last(s, "meta/steps_per_epoch") or 1.0
        for ax, (tag, _) in zip(axes.flat, panels, strict=False):
            pts = s.get(tag, [])
            if pts:
                ax.plot(
                    [p[0] / spe for p in pts],
                    [p[1] for p in pts],
                    "-" if tag == "train/loss" else "o-",
                    lw=1 if tag == "train/loss" else 1.5,
                    ms=3,
                    label=d.name,
                )
    for ax, (_, title) in zip(axes.flat, panels, strict=False):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(4, len(labels)),
            fontsize=8,
            bbox_to_anchor=(0.5, -0.02 - 0.025 * math.ceil(len(labels) / 4)),
        )
    fig.tight_layout()
    return _save(fig, path)


def write_plots(exp_dir: str | os.PathLike, table: Table) -> list[Path]:
    """plots/final_loss.png, plots/rouge_bleu.png, plots/job_metrics.png, plots/curves.png."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    exp_dir = Path(exp_dir)
    rows = table.rows
    out = exp_dir / "plots"
    return [
        _bars(
            rows,
            (("train_loss", "train loss (last epoch)"), ("eval_loss", "eval loss")),
            "Final train and eval loss per run",
            "cross-entropy (nats / target token)",
            out / "final_loss.png",
        ),
        _bars(
            rows,
            (("rouge_l", "ROUGE-L"), ("bleu", "BLEU")),
            "Held-out test set, greedy replies",
            "score",
            out / "rouge_bleu.png",
        ),
        _bars(
            rows,
            (
                ("val_rubric_pass", "rubric pass (validation)"),
                ("test_rubric_pass", "rubric pass (test)"),
                ("test_specifics_recall", "specifics recall (test)"),
                ("test_intent_accuracy", "intent accuracy (test)"),
            ),
            f"Job metrics of greedy replies (the best run is picked by {table.select_by}, on validation)",
            "rate",
            out / "job_metrics.png",
        ),
        plot_curves(exp_dir, out / "curves.png"),
    ]


def write_report(
    exp_dir: str | os.PathLike, sort_by: str | None = None, plots: bool = True, select_by: str = DEFAULT_SELECT
) -> tuple[Table, list[Path]]:
    """The tables, the plots unless ``plots`` is False, and report.html (the table, the plots and
    each run's replies in one page)."""
    table = write_tables(exp_dir, sort_by, select_by)
    paths = write_plots(exp_dir, table) if plots else []
    columns = shown_columns(table.select_by, table.sort_by)
    write_experiment_html(exp_dir, table, paths, columns, table_cells(table.rows, table.aggregated, columns))
    return table, paths
