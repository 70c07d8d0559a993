"""The results table and comparison plots of an experiment, rebuilt from its directory alone.

Every number comes from the runs' TensorBoard event files (the source of truth); the knobs come
from each run's ``config.json``; ``STOP`` / ``DONE`` markers only name the status. So
``python -m part4_sft.experiment report DIR`` rebuilds exactly the table the experiment wrote.

Event files are read one by one with TensorBoard's ``EventFileLoader`` and replayed in the order
they were written (by their first event's wall time), applying restart markers as TensorBoard
does (a resumed run's writer drops steps >= its purge step). ``EventAccumulator`` on the run's
directory would order the files by name instead, and two writers opened in the same second by
one process sort by a counter compared as text ("10" < "9").

Columns: the knobs, final train loss (mean over the last epoch's steps), eval loss and mean token
accuracy on the validation pairs, the teacher-forced loss of the test references, ROUGE-L, BLEU
and EOS-stop rate of greedy replies to the whole held-out test set, trainable parameters, wall
time. A run that has not finished shows its latest interval values instead (ROUGE-L/BLEU/EOS on
the fixed test subset, marked ``~``). With several seeds per config the table shows mean and std.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from part3_pretrain.checkpoint import write_text_atomic

KNOB_COLUMNS = ("base", "prompt", "adapter", "lr", "epochs", "data", "seed")
# metric -> (higher is better, how it is shown)
METRICS: dict[str, tuple[bool, str]] = {
    "train_loss": (False, "{:.3f}"), "eval_loss": (False, "{:.3f}"), "token_acc": (True, "{:.3f}"),
    "test_loss": (False, "{:.3f}"), "rouge_l": (True, "{:.3f}"), "bleu": (True, "{:.3f}"),
    "eos_rate": (True, "{:.0%}"), "trainable_params": (False, "{:,.0f}"), "wall_s": (False, "{:.0f}"),
}
SORT_CHOICES = tuple(METRICS)
CSV_COLUMNS = ("run", "best", "status", "step", "max_steps", *KNOB_COLUMNS, "parent", "train_loss", "eval_loss",
               "token_acc", "test_loss", "rouge_l", "bleu", "eos_rate", "gen_set", "trainable_params", "wall_s")
SHOWN = (("step", "step"), ("base", "base"), ("prompt", "prompt"), ("adapter", "adapter"), ("lr", "lr"),
         ("epochs", "ep"), ("data", "data"), ("seed", "seed"), ("train_loss", "train loss"),
         ("eval_loss", "eval loss"), ("token_acc", "token acc"), ("test_loss", "test loss"),
         ("rouge_l", "ROUGE-L"), ("bleu", "BLEU"), ("eos_rate", "EOS stop"), ("trainable_params", "trainable"),
         ("wall_s", "wall s"))
GEN_METRICS = {"rouge_l": "rouge_l", "bleu": "bleu", "eos_rate": "eos_stop_rate"}


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


def run_dirs(exp_dir: Path) -> list[Path]:
    """Run directories in registration order (grid order, then clones)."""
    found = []
    for d in exp_dir.iterdir() if exp_dir.is_dir() else []:
        cfg = d / "config.json"
        if d.is_dir() and cfg.is_file():
            try:
                index = json.loads(cfg.read_text(encoding="utf-8")).get("index", 0)
            except ValueError:
                raise ReportError(f"{cfg}: not valid JSON") from None
            found.append((index, d.name, d))
    return [d for _, _, d in sorted(found)]


def run_row(run_dir: Path) -> dict:
    """One table row: knobs from config.json, every number from the event files."""
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    s = read_scalars(run_dir / "tb")
    knobs = cfg["knobs"]
    row: dict = {"run": cfg["name"], "config_id": cfg.get("config_id", cfg["name"]), "parent": cfg.get("parent") or "",
                 **{k: knobs[k] for k in KNOB_COLUMNS}}
    train = s.get("train/loss", [])
    spe = _last(s, "meta/steps_per_epoch")
    window = [v for _, v in train[-int(spe):]] if spe else [v for _, v in train[-10:]]
    finished = _last(s, "final/rouge_l") is not None
    row.update(step=train[-1][0] if train else 0, max_steps=_int(_last(s, "meta/max_steps")),
               train_loss=sum(window) / len(window) if window else None,
               eval_loss=_last(s, "val/loss"), token_acc=_last(s, "val/token_acc"),
               test_loss=_last(s, "final/ref_loss"), trainable_params=_int(_last(s, "meta/trainable_params")),
               wall_s=_last(s, "meta/wall_seconds"))
    prefix = "final/" if finished else "gen/"
    for col, tag in GEN_METRICS.items():
        row[col] = _last(s, prefix + tag)
    row["gen_set"] = "test" if finished else ("subset" if row["rouge_l"] is not None else "")
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
        raise ReportError(f"{exp_dir}: no runs (no <run>/config.json) in this directory")
    return [run_row(d) for d in dirs]


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """One row per config (runs that differ only by seed): mean and std of every metric."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["config_id"], []).append(r)
    out = []
    for cid, members in groups.items():
        first = members[0]
        agg = {"run": cid, "config_id": cid, "parent": first["parent"], "seeds": len(members),
               **{k: first[k] for k in KNOB_COLUMNS if k != "seed"},
               "seed": ",".join(str(m["seed"]) for m in members),
               "step": sum(m["step"] for m in members), "max_steps": sum(m["max_steps"] or 0 for m in members),
               "gen_set": "test" if all(m["gen_set"] == "test" for m in members) else "subset"}
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


def sort_rows(rows: Sequence[dict], metric: str) -> list[dict]:
    """Best first by ``metric``; rows without a value last; marks the best finished row."""
    if metric not in METRICS:
        raise ReportError(f"--sort-by must be one of {list(METRICS)} (got {metric!r})")
    higher = METRICS[metric][0]
    valued = sorted((r for r in rows if r[metric] is not None), key=lambda r: -r[metric] if higher else r[metric])
    ordered = [dict(r) for r in valued + [r for r in rows if r[metric] is None]]
    done = [r for r in ordered if r["status"] == "done" and r[metric] is not None]
    for r in ordered:
        r["best"] = 1 if done and r is done[0] else 0
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
    if key in GEN_METRICS and row.get("gen_set") == "subset":
        text += "~"
    return text


def table_cells(rows: Sequence[dict], aggregated: bool) -> tuple[list[str], list[list[str]]]:
    header = ["run", "status"] + [label for _, label in SHOWN]
    if aggregated:
        header.insert(2, "seeds")
    body = []
    for r in rows:
        cells = [("* " if r.get("best") else "") + r["run"], r["status"]]
        if aggregated:
            cells.append(str(r["seeds"]))
        cells += [_cell(r, key, aggregated) for key, _ in SHOWN]
        body.append(cells)
    return header, body


def format_terminal(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
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
    terminal: str
    markdown: str
    csv: str


def build_table(exp_dir: str | os.PathLike, sort_by: str = "eval_loss") -> Table:
    """The experiment's table from its directory alone."""
    exp_dir = Path(exp_dir)
    run_rows = sort_rows(collect(exp_dir), sort_by)
    aggregated = len({r["config_id"] for r in run_rows}) < len(run_rows)
    rows = sort_rows(aggregate(run_rows), sort_by) if aggregated else run_rows
    header, body = table_cells(rows, aggregated)
    best = next((r["run"] for r in rows if r.get("best")), None)
    direction = "higher" if METRICS[sort_by][0] else "lower"
    notes = [f"sorted by {sort_by} ({direction} is better); * = best finished "
             + ("config" if aggregated else "run") + (f": {best}" if best else " (none finished yet)")]
    if any(r.get("gen_set") == "subset" and r["rouge_l"] is not None for r in rows):
        notes.append("~ = run not finished: latest interval value on the fixed test subset")
    if aggregated:
        notes.append("values are mean ± std over seeds")
    md = [f"# Experiment {_experiment_name(exp_dir)}", ""] + _bases_lines(exp_dir) + [format_markdown(header, body), ""]
    md += [f"- {n}" for n in notes]
    return Table(rows, run_rows, aggregated, sort_by, format_terminal(header, body) + "\n" + "\n".join(notes),
                 "\n".join(md) + "\n", format_csv(rows, aggregated))


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
        lines.append(f"- base `{name}`: `{b.get('path')}`, {b.get('parameters', 0):,} parameters, "
                     f"{b.get('n_layer', '?')} layers; part-3 pretraining "
                     f"{'%.0f s' % secs if secs is not None else 'time unknown'} (not in the wall times below)")
    return lines + ([""] if lines else [])


def write_tables(exp_dir: str | os.PathLike, sort_by: str = "eval_loss") -> Table:
    """results.csv and results.md (plus results_runs.csv with several seeds), written atomically."""
    exp_dir = Path(exp_dir)
    table = build_table(exp_dir, sort_by)
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
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
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
    """Overlaid curves of every run against epochs: train loss, eval loss, token accuracy, ROUGE-L."""
    import matplotlib.pyplot as plt
    panels = (("train/loss", "train loss (per step)"), ("val/loss", "eval loss (validation pairs)"),
              ("val/token_acc", "mean token accuracy (validation)"), ("gen/rouge_l", "ROUGE-L (test subset, greedy)"))
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for d in run_dirs(exp_dir):
        s = read_scalars(d / "tb")
        spe = _last(s, "meta/steps_per_epoch") or 1.0
        for ax, (tag, _) in zip(axes.flat, panels):
            pts = s.get(tag, [])
            if pts:
                ax.plot([p[0] / spe for p in pts], [p[1] for p in pts], "-" if tag == "train/loss" else "o-",
                        lw=1 if tag == "train/loss" else 1.5, ms=3, label=d.name)
    for ax, (_, title) in zip(axes.flat, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02 - 0.025 * math.ceil(len(labels) / 4)))
    fig.tight_layout()
    return _save(fig, path)


def write_plots(exp_dir: str | os.PathLike, table: Table) -> list[Path]:
    """plots/final_loss.png, plots/rouge_bleu.png, plots/curves.png."""
    import matplotlib
    matplotlib.use("Agg")  # headless
    exp_dir = Path(exp_dir)
    rows = table.rows
    out = exp_dir / "plots"
    return [_bars(rows, (("train_loss", "train loss (last epoch)"), ("eval_loss", "eval loss")),
                  "Final train and eval loss per run", "cross-entropy (nats / target token)", out / "final_loss.png"),
            _bars(rows, (("rouge_l", "ROUGE-L"), ("bleu", "BLEU")),
                  "Held-out test set, greedy replies", "score", out / "rouge_bleu.png"),
            plot_curves(exp_dir, out / "curves.png")]


def write_report(exp_dir: str | os.PathLike, sort_by: str = "eval_loss",
                 plots: bool = True) -> tuple[Table, list[Path]]:
    """The tables, and the plots unless ``plots`` is False."""
    table = write_tables(exp_dir, sort_by)
    return table, write_plots(exp_dir, table) if plots else []
