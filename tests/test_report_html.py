"""``report.html``: the SFT run's page and the experiment's page.

Most pages are built from a small run written here without any model: real test rows (the
hand-written set), hand-written replies, scored and recorded by the project's own code
(``evaluate.score`` / ``compare`` / ``generation_records``), so the page sees exactly the files
a run writes. Checked: structure (self-contained: no network, images inline), that every reply and
every headline metric on the page equals ``generations.jsonl`` / ``evaluation.json``, the colour
marks (restated vs invented specifics), hostile text staying text, a user's data without
intents, the experiment page, one real tiny ``sft.run``, and the page in headless Chromium
(filters from the URL hash change what is shown; screenshots on a laptop and a phone width).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from part4_sft import evaluate as ev
from part4_sft import job_metrics, sft
from part4_sft import report_html as H
from part4_sft.experiment import report as R
from part4_sft.experiment.evaluation import _examples
from part4_sft.handwritten import load_handwritten
from tests.test_grid_report import _fake_run, _finished_scalars

N_BOOT = 20
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>&amp;'


# ---------------------------------------------------------------------------- a tiny DOM
VOID = {"meta", "img", "input", "br", "hr", "link", "source", "wbr", "col", "area", "base", "embed", "track"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list = field(default_factory=list)  # Node or str

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str, **attrs: str) -> list[Node]:
        """Every descendant ``tag`` whose attributes hold ``attrs`` (class: one of its classes)."""
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and all(_has(c, k, v) for k, v in attrs.items()):
                    found.append(c)
                found += c.all(tag, **attrs)
        return found

    def one(self, tag: str, **attrs: str) -> Node:
        (node,) = self.all(tag, **attrs)
        return node


def _has(node: Node, key: str, value: str) -> bool:
    key = key.rstrip("_").replace("_", "-")
    if key == "class":
        return value in (node.attrs.get("class") or "").split()
    return node.attrs.get(key) == value


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]
        self.start_tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.start_tags.append(tag)
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(page: str) -> tuple[Node, list[str]]:
    """(the document tree, every start tag in order); fails on a badly nested page."""
    b = _Builder()
    b.feed(page)
    b.close()
    assert b.stack == [b.root], "unclosed elements"
    return b.root, b.start_tags


# ---------------------------------------------------------------------------- a run without a model
def _rows(n: int, start: int = 0) -> list[dict]:
    return load_handwritten()[start : start + n]


def _replies(texts: list[str], eos: list[bool]) -> dict:
    return {"texts": texts, "stopped_by_eos": eos, "lengths": [len(t.split()) for t in texts]}


def _scored(rows: list[dict], replies: dict) -> tuple[dict, dict]:
    report, replies["judged"] = ev.score(rows, replies, N_BOOT, 0)
    return report, replies


def _split_result(rows: list[dict], models: dict[str, tuple[list[str], list[bool]]]) -> tuple[dict, dict]:
    """One split's evaluation.json part and the models' outputs, greedy and sampled alike."""
    result: dict = {"test_rows": len(rows)}
    outputs = {}
    for name, (texts, eos) in models.items():
        report, out = _scored(rows, _replies(texts, eos))
        sampled, s_out = _scored(rows, _replies([t.upper() for t in texts], eos))
        result[name] = {"prompt_scheme": "dialogue", "greedy": report, "sampled": {"temperature": 0.7, **sampled}}
        outputs[name] = {"greedy": out, "sampled": s_out}
    result["best_baseline"] = "pretrained"
    result["sft_minus_pretrained"] = ev.compare(rows, outputs["pretrained"], outputs["sft"], N_BOOT, 0)
    result["inter_reference_agreement"] = ev.inter_reference_agreement(rows, N_BOOT, 0)
    return result, outputs


def _models(rows: list[dict]) -> dict[str, tuple[list[str], list[bool]]]:
    """Even rows: SFT gives the reference (better), the pretrained model a reply about another
    order (an invented id, amount and date) cut at the length limit. Odd rows: SFT a stub cut at
    the limit, the pretrained model the reference (SFT worse)."""
    n = len(rows)
    sft_texts = [r["reference"] if i % 2 == 0 else "Thanks for" for i, r in enumerate(rows)]
    base = [f"Sorry, order #ZX-{90000 + i} was refunded $12.00 on Oct 3." for i in range(n)]
    base = [b if i % 2 == 0 else r["reference"] for i, (b, r) in enumerate(zip(base, rows, strict=True))]
    return {"pretrained": (base, [i % 2 == 1 for i in range(n)]), "sft": (sft_texts, [i % 2 == 0 for i in range(n)])}


def write_fake_run(out: Path, splits: dict[str, list[dict]], source: str = "synthetic") -> tuple[dict, list[dict]]:
    """evaluation.json, generations.jsonl and loss_curve.png as ``sft.run`` writes them."""
    from PIL import Image

    evaluation: dict = {}
    records: list[dict] = []
    for split, rows in splits.items():
        result, outputs = _split_result(rows, _models(rows))
        records += ev.generation_records(rows, outputs, split)
        evaluation.update(result) if split == "test" else evaluation.__setitem__(split, result)
    evaluation.update(
        compute={"pretraining_tflop": 12.5, "fine_tuning_tflop": 0.8, "evaluation_tflop": 1.25, "total_tflop": 14.55},
        timings_seconds={"training": 61.5, "evaluation": 20.0, "total": 90.1},
        dataset={"source": source, "train": 500},
        config={"prompt_scheme": "dialogue"},
        training={"steps": 100, "first_train_loss": 2.5, "final_train_loss": 1.25},
        pretrained_checkpoint="checkpoints/pretrain/model.pt",
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(evaluation))
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (30, 120, 200)).save(buf, format="PNG")
    (out / "loss_curve.png").write_bytes(buf.getvalue())
    return evaluation, records


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> tuple[Path, dict, list[dict], str]:
    """A synthetic run with two splits (6 + 4 hand-written rows) and its page."""
    out = tmp_path_factory.mktemp("fake_run")
    evaluation, records = write_fake_run(out, {"test": _rows(6), "test_handwritten": _rows(4, start=20)})
    path = H.write_report_html(out)
    return out, evaluation, records, path.read_bytes().decode()


# ---------------------------------------------------------------------------- what every page must satisfy
def assert_self_contained(page: str) -> None:
    root, tags = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert root.all("meta", name="viewport"), "no viewport meta: unreadable on a phone"
    assert tags.count("script") == 1 and tags.count("style") == 1
    assert not root.one("script").attrs.get("src"), "the script must be inline"
    for tag, attr in (("img", "src"), ("link", "href"), ("iframe", "src")):
        for node in root.all(tag):
            assert (node.attrs.get(attr) or "").startswith("data:"), f"<{tag}> loads {node.attrs.get(attr)}"
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page), "nothing may come from the network"
    assert "@import" not in page and "url(" not in page


def _pane_reply(pane: Node) -> str:
    reply = pane.one("p", class_="reply")
    return "" if reply.all("i") else reply.text()


def assert_replies_match(page: str, records: list[dict]) -> None:
    """Every message on the page, in order, is its record: context, references, every model's
    greedy and sampled reply with its rating, failed rules, invented values and how it stopped."""
    root, _ = parse(page)
    cards = root.all("article", class_="msg")
    assert len(cards) == len(records)
    for card, rec in zip(cards, records, strict=True):
        assert card.attrs["id"] == f"m-{rec['split']}-{rec['row']}" and card.attrs["data-split"] == rec["split"]
        assert card.one("p", class_="context").text() == rec["context"]
        assert [p.text() for p in card.all("p", class_="reference")] == rec["references"]
        greedy = card.all("div", class_="panes")[0]
        models = [k.removesuffix("_greedy") for k in rec if k.endswith("_greedy")]
        for name in models:
            (pane,) = [p for p in greedy.all("div", class_="pane") if p.attrs.get("data-model") == name]
            _assert_pane(pane, rec[f"{name}_greedy"])
        sampled = card.all("details")
        for name in models:
            (pane,) = [p for p in sampled[0].all("div", class_="pane") if p.attrs.get("data-model") == name]
            _assert_pane(pane, rec[f"{name}_sampled"])


def _assert_pane(pane: Node, reply: dict) -> None:
    # a sampled reply of the tiny model can hold a NUL byte token: the page shows it as U+FFFD (esc)
    assert _pane_reply(pane) == reply["reply"].replace("\x00", "\ufffd")
    verdict = pane.one("ul", class_="verdict").text()
    stop = "stopped at EOS" if reply["stopped_by"] == "eos" else "hit the length limit"
    assert f"{stop}, {reply['tokens']} tokens" in verdict
    if reply["rating"] is not None:
        assert pane.one("b", class_="rating").text() == f"{reply['rating']:.1f}"
        assert (", ".join(reply["failed_rules"]) or "none") in verdict
    else:
        assert "rating" not in verdict
    if reply["invented"]:  # "order_id:ZX-90000" shown as "order id ZX-90000"
        shown = pane.one("li", class_="inv-list").text()
        words = [f"{v.split(':', 1)[0].replace('_', ' ')} {v.split(':', 1)[1]}" for v in reply["invented"]]
        assert shown == "invented: " + ", ".join(words)
    assert f"restated {len(reply['specifics_hit'])} of {len(reply['specifics'])}" in verdict or not reply["specifics"]


def assert_metrics_match(page: str, evaluation: dict) -> None:
    """Every headline cell (each model, decoding and split) holds exactly evaluation.json's value,
    shown as value [CI]; every difference cell the paired difference."""
    root, _ = parse(page)
    blocks = {b.attrs["data-split"]: b for b in root.all("div", class_="split-metrics")}
    assert set(blocks) == set(H.split_reports(evaluation))
    for split, result in H.split_reports(evaluation).items():
        table = blocks[split].one("table", class_="metrics")
        shown = {
            (tr.attrs["data-model"], tr.attrs["data-mode"]): tr for tr in table.all("tr") if "data-model" in tr.attrs
        }
        assert set(shown) == {(m, mode) for m in H.model_names(result) for mode in ev.MODES}
        for (name, mode), tr in shown.items():
            for td in tr.all("td"):
                value, ci = H.metric_of(result[name][mode], td.attrs["data-metric"])
                assert td.attrs["data-value"] == ("" if value is None else repr(value))
                kind = next(k for key, _, k, _ in H.METRIC_COLUMNS if key == td.attrs["data-metric"])
                assert td.text() == H.fmt_ci(value, ci, kind)
        diffs = blocks[split].one("table", class_="diffs")
        for tr in (tr for tr in diffs.all("tr") if "data-baseline" in tr.attrs):
            d = result["sft_minus_" + tr.attrs["data-baseline"]][tr.attrs["data-mode"]]
            for td in tr.all("td"):
                entry = H.diff_of(d, td.attrs["data-metric"])
                assert td.attrs["data-value"] == ("" if entry is None else repr(entry["diff"]))


# ---------------------------------------------------------------------------- the SFT page
def test_page_is_one_self_contained_file_with_every_section(fake_run):
    out, evaluation, records, page = fake_run
    assert_self_contained(page)
    root, _ = parse(page)
    for section in ("metrics", "compute", "messages"):
        assert root.all("section", id=section), section
    (img,) = root.all("img")  # the loss curve, inline
    assert img.attrs["src"] == H.data_uri(out / "loss_curve.png")
    facts = {td.attrs["data-fact"]: td.text() for td in root.all("td") if "data-fact" in td.attrs}
    assert facts["compute, total"] == "14.55 TFLOP" and facts["compute, pretraining"] == "12.5 TFLOP"
    assert facts["wall time, total"] == "90.1 s" and facts["wall time, training"] == "61.5 s"
    for name in ("split", "intent", "outcome", "invented", "nostop"):
        assert root.all("select", id=f"f-{name}"), name
    assert root.all("input", id="f-q")
    splits = [o.attrs["value"] for o in root.one("select", id="f-split").all("option")]
    assert splits == ["", "test", "test_handwritten"]
    assert [c.attrs["data-outcome"] for c in root.all("article")][:4] == ["better", "worse", "better", "worse"]


def test_every_reply_and_metric_matches_the_run_files(fake_run):
    out, evaluation, records, page = fake_run
    on_disk = [json.loads(line) for line in (out / "generations.jsonl").read_text().split("\n") if line]
    assert_replies_match(page, on_disk)
    assert_metrics_match(page, json.loads((out / "evaluation.json").read_text()))
    root, _ = parse(page)
    cell = root.all("tr", data_model="sft", data_mode="greedy")[0].one("td", data_metric="specifics_recall")
    recall = evaluation["sft"]["greedy"]["job"]["specifics_recall"]
    lo, hi = (100 * c for c in recall["ci"])
    assert cell.text() == f"{recall['value']:.1%} [{lo:.1f}, {hi:.1f}]"  # "84.0% [79.2, 88.4]"


def test_restated_and_invented_specifics_are_marked_in_two_colours(fake_run):
    _, _, records, page = fake_run
    root, _ = parse(page)
    first = root.all("article")[0]
    rec = records[0]
    sft_pane = [p for p in first.all("div", class_="pane") if p.attrs.get("data-model") == "sft"][0]
    hits = [m.text() for m in sft_pane.all("mark", class_="hit")]
    assert rec["sft_greedy"]["specifics_hit"] and {h.lower() for h in hits} == {
        v.lower() for v in rec["sft_greedy"]["specifics_hit"]
    }
    assert not sft_pane.all("mark", class_="inv")
    base = [p for p in first.all("div", class_="pane") if p.attrs.get("data-model") == "pretrained"][0]
    invented = [m.text() for m in base.all("mark", class_="inv")]
    assert invented == ["ZX-90000", "$12.00", "Oct 3"]  # what the judge called invented, where it is written
    assert sorted(rec["pretrained_greedy"]["invented"]) == sorted(
        ["order_id:ZX-90000", "amount:12.00", "date:october 3"]
    )
    assert [m.text() for m in first.one("p", class_="context").all("mark", class_="given")]  # the message's values
    legend = root.one("p", class_="legend")
    assert {m.attrs["class"] for m in legend.all("mark")} == {"given", "hit", "inv"}


def test_marks_use_the_judges_spans():
    text = "Order #A1234 and order 88231 cost $5 on 3 March; see #A1234."
    spans = H.invented_spans(text, job_metrics.invented_specifics(text, "nothing here"))
    assert sorted(text[s:e] for s, e in spans) == sorted(["A1234", "A1234", "88231", "$5", "3 March"])
    assert H.marked("a <b> A1234", {"hit": [(6, 11)]}) == 'a &lt;b&gt; <mark class="hit">A1234</mark>'
    assert H.marked("abcdef", {"inv": [(0, 3)], "hit": [(2, 5)]}) == '<mark class="inv">abc</mark>def'


def test_hostile_text_stays_text(tmp_path):
    rows = _rows(3)
    rows[0] = {**rows[0], "context": rows[0]["context"] + " " + HOSTILE, "reference": HOSTILE}
    evaluation, records = write_fake_run(tmp_path, {"test": rows})
    records[0]["sft_greedy"]["reply"] = HOSTILE  # a model may write anything
    records[0]["intent"] = HOSTILE
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = H.write_report_html(tmp_path).read_bytes().decode()
    root, tags = parse(page)
    assert tags.count("script") == 1 and tags.count("img") == 1  # ours: the filter script, the loss curve
    assert "<script>alert" not in page and "onerror=alert(2)>" not in page.replace("&gt;", "")
    card = root.all("article")[0]
    assert HOSTILE in card.one("p", class_="context").text()
    assert card.all("p", class_="reference")[0].text() == HOSTILE
    assert [p for p in card.all("div", class_="pane") if p.attrs.get("data-model") == "sft"][0].one(
        "p", class_="reply"
    ).text() == HOSTILE
    assert card.attrs["data-intent"] == HOSTILE  # an attribute value, quotes and all
    assert HOSTILE in [o.attrs["value"] for o in root.one("select", id="f-intent").all("option")]
    assert_replies_match(page, records)


def test_own_data_without_intents_has_no_intent_filter_and_no_ratings(tmp_path):
    rows = [
        {
            "context": f"Where is order #B{1000 + i}? It was ${10 + i}.00",
            "reference": f"Order #B{1000 + i} ships today.",
        }
        for i in range(5)
    ]
    earlier = [
        {"role": "user", "content": "hi <b>there</b>"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]
    final = [{"role": "user", "content": rows[0]["context"]}, {"role": "assistant", "content": rows[0]["reference"]}]
    rows[0]["turns"] = earlier + final  # a conversation: the page shows what the model read before
    evaluation, records = write_fake_run(tmp_path, {"test": rows}, source="user")
    page = H.write_report_html(tmp_path).read_bytes().decode()
    assert_self_contained(page)
    assert_replies_match(page, records)
    assert_metrics_match(page, evaluation)
    root, _ = parse(page)
    assert not root.all("select", id="f-intent") and not root.all("span", class_="intent")
    assert not root.all("b", class_="rating")
    turns = [t.text() for t in root.all("article")[0].all("p", class_="turn")]
    assert turns == ["user: hi <b>there</b>", "assistant: Hello! How can I help?"]
    sft_row = root.all("tr", data_model="sft", data_mode="greedy")[0]
    assert sft_row.one("td", data_metric="intent_accuracy").text() == "–"  # absent, not 0
    assert sft_row.one("td", data_metric="specifics_recall").text() != "–"  # detected specifics
    assert "held out from your data" in root.one("div", class_="split-metrics").one("h3").text()
    # SFT better / worse without a rubric: ROUGE-L against the references decides
    assert [c.attrs["data-outcome"] for c in root.all("article")] == ["better", "worse", "better", "worse", "better"]


def test_cli_rebuilds_the_page_and_refuses_a_folder_that_is_not_a_run(fake_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(fake_run[0], out)
    (out / "report.html").unlink()
    assert H.main(["--out-dir", str(out)]) == 0
    assert (out / "report.html").read_bytes().decode() == fake_run[3]
    with pytest.raises(SystemExit) as stop:  # a bad option stops before any work, as every entry point's
        H.main(["--out-dir", str(tmp_path / "nothing")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluation.json" in err


# ---------------------------------------------------------------------------- a real tiny run
@pytest.fixture(scope="module")
def real_run(tiny_sft) -> Path:
    return tiny_sft  # the suite's one finished tiny sft run (conftest.py)


def test_a_real_run_writes_the_page_beside_its_evaluation(real_run, capsys):
    assert "report.html" in sft.OUTPUTS
    page = (real_run / "report.html").read_bytes().decode()
    evaluation, records = H.read_run(real_run)
    assert_self_contained(page)
    assert_replies_match(page, records)
    assert_metrics_match(page, evaluation)
    assert not (real_run / sft.STAGE).exists()
    assert {"test", "test_unseen", "test_handwritten"} == set(H.split_reports(evaluation))
    root, _ = parse(page)
    labels = [tr.one("th").text() for tr in root.all("tr") if "data-model" in tr.attrs][:3]
    assert labels == ["pretrained (chat prompt), greedy", "pretrained (dialogue prompt), greedy", "SFT, greedy"]


# ---------------------------------------------------------------------------- the experiment page
@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, R.Table, str]:
    """Three runs as the runner leaves them (event files, config.json), one with its
    evaluation.json holding a hostile test message; the report as ``write_report`` writes it."""
    exp = tmp_path_factory.mktemp("exp") / "exp"
    _fake_run(exp, "qa-lora", 0, _finished_scalars(val_pass=0.2, test_pass=0.7, rouge=0.45, eval_loss=1.0))
    _fake_run(exp, "instr-lora", 1, _finished_scalars(val_pass=0.6, test_pass=0.3, rouge=0.35, eval_loss=1.1))
    _fake_run(exp, "running", 2, {"train/loss": [(1, 2.0)], "val/loss": [(0, 3.0)], "meta/max_steps": [(0, 2)]})
    rows = [{**_rows(1)[0], "context": _rows(1)[0]["context"] + HOSTILE}]
    replies = _replies(["Order QX-77120 ships; so does #ZX-99999."], [True])
    judged = [job_metrics.judge_reply(t, r) for t, r in zip(replies["texts"], rows, strict=True)]
    (exp / "qa-lora" / "evaluation.json").write_text(json.dumps({"examples": _examples(rows, replies, judged)}))
    table, plots = R.write_report(exp, plots=False)
    return exp, table, (exp / "report.html").read_bytes().decode()


def test_experiment_page_has_the_results_table_and_links_each_runs_replies(experiment):
    exp, table, page = experiment
    assert_self_contained(page)
    root, tags = parse(page)
    header, body = R.table_cells(table.rows, table.aggregated, R.shown_columns(table.select_by, table.sort_by))
    results = root.one("table", id="results")
    assert [th.text() for th in results.one("thead").all("th")] == header
    trs = results.one("tbody").all("tr")
    assert [[c.text() for c in tr.children] for tr in trs] == body  # the cells of results.md
    assert [tr.attrs["data-run"] for tr in trs] == [r["run"] for r in table.rows]
    assert [tr.attrs.get("class") for tr in trs].count("best") == 1
    eval_col = header.index("eval loss")
    assert [tr.children[eval_col].attrs["data-sort"] for tr in trs] == [repr(float(r["eval_loss"])) for r in table.rows]
    runs = {s.attrs["id"]: s for s in root.all("section", class_="run")}
    assert set(runs) == {f"run-{r['run']}" for r in table.run_rows}
    links = [a.attrs["href"] for a in runs["run-qa-lora"].all("a")]
    assert links == ["qa-lora/evaluation.json"] and (exp / links[0]).is_file()  # relative, and there
    assert not runs["run-running"].all("a")
    example = runs["run-qa-lora"].one("div", class_="example")
    assert HOSTILE in example.one("p", class_="context").text() and tags.count("script") == 1
    assert [m.text() for m in example.all("mark", class_="hit")] == ["QX-77120"]
    assert [m.text() for m in example.all("mark", class_="inv")] == ["ZX-99999"]
    assert "no plots written" in page


def test_experiment_page_embeds_the_plots(experiment, tmp_path):
    from part4_sft.experiment.report_html import write_experiment_html

    exp, table, _ = experiment
    png = tmp_path / "curves.png"
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(png)
    columns = R.shown_columns(table.select_by, table.sort_by)
    cells = R.table_cells(table.rows, table.aggregated, columns)
    page = write_experiment_html(tmp_path, table, [png], columns, cells).read_text()
    root, _ = parse(page)
    (fig,) = root.all("figure")
    assert fig.one("img").attrs["src"] == H.data_uri(png) and fig.attrs["class"] == "wide"


# ---------------------------------------------------------------------------- a real browser
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("no Chromium on PATH (chromium / chromium-browser): .ci/run installs it with apt-get where it can")
    return found


def _browse(browser: str, url: str, profile: Path, *args: str) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
    cmd += [f"--user-data-dir={profile}", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _shown(dom: str) -> list[str]:
    root, _ = parse(dom.split("\n", 1)[1] if dom.startswith("<!DOCTYPE") else dom)
    return [a.attrs["id"] for a in root.all("article") if "hidden" not in a.attrs]


def test_in_a_real_browser_the_filters_change_what_is_shown_and_the_page_renders(fake_run, experiment, tmp_path):
    from PIL import Image

    browser = _chromium()
    out, _, records, _ = fake_run
    url = (out / "report.html").as_uri()
    intent = records[1]["intent"]
    dom = _browse(browser, f"{url}#intent={intent}&outcome=worse&nostop=sft", tmp_path / "p2", "--dump-dom")
    want = [
        f"m-{r['split']}-{r['row']}"
        for r in records
        if r["intent"] == intent and r["row"] % 2 == 1 and r["sft_greedy"]["stopped_by"] == "length"
    ]
    assert _shown(dom) == want and 0 < len(want) < len(records)
    assert f"{len(want)} of {len(records)} messages shown" in dom
    order_id = records[2]["slots"]["order_id"]  # in that message, its reference and replies only
    searched = _shown(_browse(browser, f"{url}#q={order_id.lower()}", tmp_path / "p3", "--dump-dom"))
    assert searched == [f"m-{r['split']}-{r['row']}" for r in records if order_id in json.dumps(r)] == ["m-test-2"]
    exp_dom = _browse(
        browser, (experiment[0] / "report.html").as_uri() + "#sort=eval loss&dir=desc", tmp_path / "p4", "--dump-dom"
    )
    assert re.findall(r'<tr data-run="([^"]+)"', exp_dom) == ["running", "instr-lora", "qa-lora"]
    for width, name in ((1280, "laptop.png"), (400, "phone.png")):
        shot = tmp_path / name
        _browse(browser, url, tmp_path / f"s{width}", f"--screenshot={shot}", f"--window-size={width},900")
        with Image.open(shot) as im:
            assert im.size == (width, 900)
            assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 20  # drawn, not blank


def test_a_page_that_cannot_be_built_is_replaced_by_the_error_not_a_stale_page(fake_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "copy"
    shutil.copytree(fake_run[0], out)
    monkeypatch.setattr(H, "build_report", lambda *a: 1 / 0)
    path = H.write_report_html_or_note(out)
    page = path.read_text()
    assert "ZeroDivisionError" in page and "python -m part4_sft.report_html" in page
    assert "could not be built" in capsys.readouterr().out
    assert parse(page)[1].count("script") == 0
