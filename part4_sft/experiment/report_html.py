"""``report.html`` of an experiment: its results table (sortable), its plots and, per run, its replies.

``report.write_report`` calls :func:`write_experiment_html` after the tables and plots, with the
columns and cells it built for ``results.md`` (``report.table_cells``), so the page shows what
``results.md`` shows: the same rows, cells and notes, the best run marked by the validation metric
(this module does not import ``report``: it is imported by it). Clicking a column header
sorts by it (plain JavaScript, numbers as numbers, empty cells last). The plots are embedded as
data URIs. Per run: links (relative) to its ``report.html`` or ``generations.jsonl`` where the run
directory has them and to its ``evaluation.json``, and the first test replies that
``evaluation.json`` keeps, each marked as in the SFT page (restated / invented specifics, rating,
failed rules, how it stopped). One self-contained file, nothing from the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from part3_pretrain.fileio import write_text_atomic

from ..report_html import REPORT_NAME, customer_block, esc, figure, page, reference_pane, reply_pane


class TableLike(Protocol):
    """What the page reads of ``report.Table``."""

    rows: list[dict]  # sorted, best marked; aggregated over seeds when ``aggregated``
    run_rows: list[dict]  # one per run
    aggregated: bool
    markdown: str  # results.md: the base lines above the table, the notes below it


Cells = tuple[list[str], list[list[str]]]  # report.table_cells: (header, one list of cells per row)

RUN_LINKS = (  # what a run directory may hold that a reader wants to open, best first
    (REPORT_NAME, "report"),
    ("generations.jsonl", "all replies (generations.jsonl)"),
    ("evaluation.json", "evaluation.json"),
)


def _sort_attr(row: Mapping, key: str) -> str:
    """What a header click sorts by: a number's raw value (not its formatted text), "" for no
    value (sorted last), nothing for text (the cell's text is used)."""
    value = row.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f' data-sort="{float(value)!r}"'
    return ' data-sort=""' if value is None else ""


def results_table(table: TableLike, columns: Sequence[tuple[str, str]], cells: Cells) -> str:
    """``results.md``'s table as HTML: the same header and cells (``columns``: its (key, label)
    pairs), each numeric cell with its raw value in ``data-sort``; the run name links below."""
    header, body = cells
    keys = ["run", "status", *(["seeds"] if table.aggregated else []), *(k for k, _ in columns)]
    head = "".join(f'<th scope="col" title="sort by {esc(h)}">{esc(h)}</th>' for h in header)
    rows = []
    for row, cells in zip(table.rows, body, strict=True):
        anchor = "runs" if table.aggregated else f"run-{row['run']}"  # a config's runs are listed below
        tds = [f'<th scope="row"><a href="#{esc(anchor)}">{esc(cells[0])}</a></th>']
        tds += [f"<td{_sort_attr(row, k)}>{esc(c)}</td>" for k, c in zip(keys[1:], cells[1:], strict=True)]
        best = ' class="best"' if row.get("best") else ""
        rows.append(f'<tr data-run="{esc(row["run"])}"{best}>{"".join(tds)}</tr>')
    return (
        f'<div class="scroll"><table class="sortable results" id="results"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def table_notes(table: TableLike) -> list[str]:
    """The lines under ``results.md``'s table (what marked the best, the order, the marks)."""
    lines = table.markdown.splitlines()
    last_row = max((i for i, line in enumerate(lines) if line.startswith("|")), default=-1)
    return [line[2:] for line in lines[last_row + 1 :] if line.startswith("- ")]


def bases_lines(table: TableLike) -> list[str]:
    """The base-model lines above ``results.md``'s table."""
    lines = table.markdown.splitlines()
    first_row = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    return [line[2:].replace("`", "") for line in lines[:first_row] if line.startswith("- ")]


def _example_pane(example: Mapping) -> str:
    """One of the first test replies a run keeps in evaluation.json, as the SFT page shows one."""
    reply = {
        "reply": example.get("greedy", ""),
        "stopped_by": example.get("stopped_by"),
        "rating": example.get("rating"),
        "failed_rules": example.get("failed_rules"),
        "specifics": example.get("specifics"),
        "specifics_hit": example.get("specifics_hit"),
        "invented": example.get("invented"),
    }
    rec = {"context": example.get("context", "")}
    return (
        f'<div class="example">{customer_block(rec, example.get("specifics") or [])}<div class="panes">'
        f"{reference_pane(example.get('references') or [])}{reply_pane('greedy reply', 'run', reply)}</div></div>"
    )


def _read_examples(run_dir: Path) -> list[dict]:
    try:
        doc = json.loads((run_dir / "evaluation.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    examples = doc.get("examples") if isinstance(doc, dict) else None
    return [e for e in examples or [] if isinstance(e, dict)]


def run_section(exp_dir: Path, row: Mapping) -> str:
    """One run: its status, links to the files it holds, and its first test replies."""
    name = str(row["run"])
    run_dir = exp_dir / name
    links = [
        f'<a href="{esc(quote(name))}/{esc(quote(file))}">{esc(label)}</a>'
        for file, label in RUN_LINKS
        if (run_dir / file).is_file()
    ]
    examples = _read_examples(run_dir)
    shown = (
        f"<details><summary>first {len(examples)} test replies</summary>"
        + "".join(_example_pane(e) for e in examples)
        + "</details>"
        if examples
        else '<p class="note">no test replies kept (no evaluation.json with examples: not finished?).</p>'
    )
    return (
        f'<section class="run" id="run-{esc(name)}"><h3>{esc(name)}</h3>'
        f'<p class="note">status: {esc(row.get("status", "?"))}'
        f"{' · ' + ' · '.join(links) if links else ''}</p>{shown}</section>"
    )


def build_experiment_page(
    exp_dir: Path, table: TableLike, plots: Sequence[Path], columns: Sequence[tuple[str, str]], cells: Cells
) -> str:
    name = exp_dir.name
    notes = "".join(f"<li>{esc(n)}</li>" for n in table_notes(table))
    bases = "".join(f"<li>{esc(b)}</li>" for b in bases_lines(table))
    body = (
        f"<h1>Experiment {esc(name)}</h1>"
        + (f'<ul class="note">{bases}</ul>' if bases else "")
        + '<section id="results-section"><h2>Results</h2><p class="note">Click a column header to sort.</p>'
        + results_table(table, columns, cells)
        + f'<ul class="note">{notes}</ul></section>'
        + '<section id="plots"><h2>Plots</h2><div class="plots">'
        + (
            "".join(figure(p, p.stem.replace("_", " "), "wide" if p.stem == "curves" else "") for p in plots)
            or '<p class="note">no plots written.</p>'
        )
        + '</div></section><section id="runs"><h2>Runs</h2>'
        + "".join(run_section(exp_dir, r) for r in table.run_rows)
        + "</section>"
    )
    return page(f"Experiment {name}", body, SORT_JS)


def write_experiment_html(
    exp_dir: str | Path, table: TableLike, plots: Sequence[Path], columns: Sequence[tuple[str, str]], cells: Cells
) -> Path:
    """Write ``exp_dir/report.html`` (atomically): ``table`` with ``columns`` shown as ``cells``
    (``report.shown_columns`` / ``report.table_cells``), the ``plots``, every run's replies."""
    exp_dir = Path(exp_dir)
    page_text = build_experiment_page(exp_dir, table, plots, columns, cells)
    return write_text_atomic(page_text, exp_dir / REPORT_NAME)


# Sort a table by the clicked header: numbers (data-sort) as numbers, otherwise the cell text;
# empty cells last whatever the direction; a second click reverses. ``report.html#sort=eval loss&dir=desc``
# opens the page sorted.
SORT_JS = """
(function () {
  "use strict";
  function value(row, i) {
    var cell = row.children[i], raw = cell.getAttribute("data-sort");
    return raw !== null && raw !== "" ? parseFloat(raw) : (raw === "" ? null : cell.textContent.trim());
  }
  function compare(a, b, dir) {
    if (a === null || a === "") return b === null || b === "" ? 0 : 1;
    if (b === null || b === "") return -1;
    if (typeof a === "number" && typeof b === "number") return dir * (a - b);
    return dir * String(a).localeCompare(String(b));
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, i) {
      th.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) { return compare(value(a, i), value(b, i), dir); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // #sort=<header>&dir=desc on load: the same as clicking that header (once, or twice)
  var want = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("=");
    if (i > 0) want[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
  });
  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    if (want.sort && th.textContent.trim() === want.sort) {
      th.click();
      if (want.dir === "desc") th.click();
    }
  });
})();
"""
