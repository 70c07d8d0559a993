"""Tests for part4_sft.experiment.grid and part4_sft.experiment.report without training: grid
expansion, run names and their uniqueness, JSON grids, adapter specs, clone changes, chunk
boundaries, reading event files (restart purges), and the table's sorting, best mark (by a
validation metric only), seed aggregation, job-metric columns and formats."""

from __future__ import annotations

import json

import pytest

from part4_sft.experiment import grid as G
from part4_sft.experiment import report as R
from part4_sft.experiment.cli import ExperimentConfig, parse_args
from part4_sft.experiment.scheduler import chunk_boundaries


def test_default_grid_is_eight_readable_unique_runs():
    runs = G.expand_all([G.GridSpec()])
    names = [k.name() for k in runs]
    assert len(runs) == 8 and len(set(names)) == 8
    assert names[:2] == ["large-qa-lora8-c_attn", "large-qa-lora32-c_attn+c_proj"]
    assert "small-instruction-lora32-c_attn+c_proj" in names
    assert {k.lr for k in runs} == {G.DEFAULT_LORA_LR}
    r32 = runs[1].adapter
    assert (r32.r, r32.alpha, r32.targets) == (32, 64.0, ("c_attn", "c_proj"))
    assert all(G.valid_run_name(n) for n in names)


def test_names_show_only_non_default_knobs_and_seeds_group():
    spec = G.GridSpec(
        base=("small",),
        prompt=("qa",),
        adapter=(G.Adapter.full(), G.Adapter.parse("r16a8:c_fc")),
        lr=(3e-3,),
        epochs=(7,),
        data=("all",),
        seed=(0, 1),
    )
    runs = G.expand_all([spec])
    names = [k.name() for k in runs]
    assert names == [
        "small-qa-full-lr0.003-ep7-all",
        "small-qa-full-lr0.003-ep7-all-seed1",
        "small-qa-lora16a8-c_fc-lr0.003-ep7-all",
        "small-qa-lora16a8-c_fc-lr0.003-ep7-all-seed1",
    ]
    assert runs[1].config_id() == runs[0].name()
    full_default = G.Knobs("small", "qa", G.Adapter.full(), G.DEFAULT_FULL_LR)
    assert full_default.name() == "small-qa-full"  # each method's default LR is left out


def test_duplicates_dropped_and_name_collisions_rejected():
    spec = G.GridSpec(base=("large",), prompt=("qa", "qa"), adapter=(G.Adapter.parse("r8:c_attn"),))
    assert len(G.expand_all([spec, spec])) == 1
    clash = G.GridSpec(
        base=("large",), prompt=("qa",), adapter=(G.Adapter.parse("r8:c_attn"),), lr=(1e-3, 1.0000001e-3)
    )  # "%g" writes both as 0.001
    with pytest.raises(G.GridError, match="both be named"):
        G.expand_all([clash])


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("r8:c_attn", ("lora", 8, 16.0, ("c_attn",))),
        ("r32:c_attn+c_proj", ("lora", 32, 64.0, ("c_attn", "c_proj"))),
        ("r16a8:c_fc", ("lora", 16, 8.0, ("c_fc",))),
        ("full", ("full", 0, 0.0, ())),
        ({"r": 4, "alpha": 4, "targets": ["c_attn", "c_fc"]}, ("lora", 4, 4.0, ("c_attn", "c_fc"))),
        ({"method": "full"}, ("full", 0, 0.0, ())),
    ],
)
def test_adapter_specs(spec, expected):
    a = G.Adapter.parse(spec)
    assert (a.method, a.r, a.alpha, a.targets) == expected
    assert G.Adapter.parse(a.spec()) == a


@pytest.mark.parametrize("bad", ["r0:c_attn", "rank8", "r8:", "r8ax:c_attn", 8, {"r": "8"}, {"rank": 8}])
def test_bad_adapter_specs(bad):
    with pytest.raises(G.GridError):
        G.Adapter.parse(bad)


def test_grid_json_object_and_list(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(
        json.dumps(
            {
                "base": "small",
                "adapter": ["full", {"r": 4, "targets": ["c_attn"]}],
                "lr": [1e-3, 3e-3],
                "epochs": 2,
                "data": ["hq", "all"],
                "seed": [0, 1],
            }
        )
    )
    specs = G.load_grid_file(path, G.GridSpec())
    runs = G.expand_all(specs)
    assert len(runs) == 1 * 2 * 2 * 2 * 1 * 2 * 2  # prompts come from the defaults
    assert {k.prompt for k in runs} == {"qa", "instruction"}
    path.write_text(json.dumps([{"base": ["small"], "prompt": ["qa"]}, {"base": ["large"], "prompt": ["chat"]}]))
    runs = G.expand_all(G.load_grid_file(path, G.GridSpec()))
    assert [(k.base, k.prompt) for k in runs] == [("small", "qa")] * 2 + [("large", "chat")] * 2


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('{"learning_rate": [1e-3]}', "unknown keys"),
        ('{"lr": ["fast"]}', "must be numbers"),
        ('{"epochs": [1.5]}', "integers"),
        ('{"base": []}', "empty list"),
        ('{"base": ["huge"]}', "not one of"),
        ('{"lr": [-1]}', "lr must be > 0"),
        ("[]", "empty"),
    ],
)
def test_bad_grid_files(tmp_path, content, match):
    path = tmp_path / "grid.json"
    path.write_text(content)
    with pytest.raises(G.GridError, match=match):
        G.expand_all(G.load_grid_file(path, G.GridSpec()))


def test_seeds_repeat_every_config_and_conflict_with_grid_seed(tmp_path):
    cfg = ExperimentConfig(seeds=3)
    assert len(G.expand_all(cfg.grid_specs())) == 24
    path = tmp_path / "g.json"
    path.write_text('{"seed": [0, 5]}')
    assert ExperimentConfig(grid=str(path), seeds=3).problems()
    assert not ExperimentConfig(grid=str(path)).problems()


def test_clone_changes_and_names():
    k = G.Knobs("large", "qa", G.Adapter.parse("r8:c_attn"), 2e-3)
    c, changes = k.changed(["lr=1e-3", "lora_r=16"])
    assert (c.lr, c.adapter.r, c.adapter.alpha) == (1e-3, 16, 32.0)  # alpha follows r when it was 2r
    assert G.clone_name("p", changes, set()) == "p+lr=1e-3+lora_r=16"
    assert G.clone_name("p", changes, {"p+lr=1e-3+lora_r=16"}) == "p+lr=1e-3+lora_r=16+2"
    c, _ = k.changed(["lora_targets=c_attn+c_proj", "method=lora"])
    assert c.adapter.targets == ("c_attn", "c_proj")
    assert k.changed(["method=full"])[0].adapter == G.Adapter.full()
    for bad, match in (
        ("base=small", "keeps the parent's base"),
        ("rank=3", "unknown key"),
        ("lr", "key=value"),
        ("lr=2e-3", "changes nothing"),
        ("epochs=x", "epochs=x"),
        ("prompt=nope", "prompt"),
    ):
        with pytest.raises(G.GridError, match=match):
            k.changed([bad])


def test_repeated_set_flags_accumulate():
    cfg = parse_args(["--clone", "a", "--set", "lr=1e-3", "--set", "lora_r=16", "epochs=2"])
    assert cfg.set == ("lr=1e-3", "lora_r=16", "epochs=2")


def test_chunk_boundaries():
    assert chunk_boundaries(10, 1) == [10]
    assert chunk_boundaries(10, 3) == [3, 7, 10]
    assert chunk_boundaries(2, 4) == [1, 1, 2, 2]


# ---------------------------------------------------------------------------------------------
# report


def test_read_scalars_applies_restart_purge(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(tmp_path))
    for step in range(1, 7):  # a run that checkpointed at step 4, logged 5 and 6, then died
        w.add_scalar("train/loss", 10.0 + step, step)
    w.close()
    w = SummaryWriter(log_dir=str(tmp_path), purge_step=5)  # resumed from the step-4 checkpoint
    for step in range(5, 9):
        w.add_scalar("train/loss", 20.0 + step, step)
    w.close()
    series = R.read_scalars(tmp_path)["train/loss"]
    assert [s for s, _ in series] == list(range(1, 9))
    assert [v for _, v in series] == [11, 12, 13, 14, 25, 26, 27, 28]


def _row(run, status="done", **metrics):
    base = {
        "run": run,
        "config_id": run.split("#")[0],
        "parent": "",
        "status": status,
        "step": 10,
        "max_steps": 10,
        "base": "large",
        "prompt": "qa",
        "adapter": "r8:c_attn",
        "lr": 2e-3,
        "epochs": 3,
        "data": "hq",
        "seed": int(run.split("#")[1]) if "#" in run else 0,
        "val_from": "final",
    }
    base.update({m: None for m in R.METRICS})
    base.update(metrics)
    return base


def test_sort_marks_best_finished_and_puts_missing_last():
    rows = [_row("a", eval_loss=2.0), _row("b", "partial", eval_loss=1.0), _row("c"), _row("d", eval_loss=1.5)]
    out = R.sort_rows(rows, "eval_loss")
    assert [r["run"] for r in out] == ["b", "d", "a", "c"]
    assert [r["best"] for r in out] == [0, 1, 0, 0]  # b is better but has not finished
    out = R.sort_rows([_row("a", rouge_l=0.2), _row("b", rouge_l=0.4)], "rouge_l")  # higher is better
    assert [r["run"] for r in out] == ["b", "a"]
    with pytest.raises(R.ReportError):
        R.sort_rows(rows, "nope")


def test_aggregate_mean_and_std_over_seeds():
    rows = [
        _row("x#0", rouge_l=0.2, eval_loss=1.0),
        _row("x#1", rouge_l=0.4, eval_loss=3.0),
        _row("y#0", "partial", rouge_l=0.5),
    ]
    agg = {r["run"]: r for r in R.aggregate(rows)}
    assert agg["x"]["seeds"] == 2 and agg["x"]["status"] == "done"
    assert agg["x"]["rouge_l"] == pytest.approx(0.3) and agg["x"]["rouge_l_std"] == pytest.approx(0.1414214)
    assert agg["x"]["eval_loss_std"] == pytest.approx(1.4142136)
    assert agg["y"]["status"] == "0/1 done"
    header, body = R.table_cells(R.sort_rows(list(agg.values()), "rouge_l"), aggregated=True)
    assert "seeds" in header
    assert any("0.300 ± 0.141" in c for c in body[1])
    md = R.format_markdown(header, body).splitlines()
    assert len(md) == 2 + 2
    csv_text = R.format_csv(R.sort_rows(list(agg.values()), "rouge_l"), aggregated=True)
    assert "rouge_l_std" in csv_text.splitlines()[0]


def test_unfinished_metrics_are_marked():
    """An unfinished run has no test values yet; its validation reply metrics are the latest
    interval values on the validation subset, marked ~."""
    row = _row("a", "partial", val_rubric_pass=0.25, eval_loss=1.5, val_from="interval")
    header, body = R.table_cells([dict(row, best=0)], aggregated=False)
    assert "25.0%~" in body[0]
    assert body[0][header.index("ROUGE-L")] == "-" and body[0][header.index("rubric pass")] == "-"
    assert body[0][header.index("eval loss")] == "1.500"  # validation loss: never marked


def test_best_follows_the_validation_metric_not_the_test_columns():
    # "a" wins every test column, "b" the validation rubric pass rate (the default --select-by)
    rows = [
        _row("a", eval_loss=1.0, val_rubric_pass=0.30, test_rubric_pass=0.60, rouge_l=0.40, test_specifics_recall=0.9),
        _row("b", eval_loss=1.2, val_rubric_pass=0.50, test_rubric_pass=0.40, rouge_l=0.30, test_specifics_recall=0.5),
        _row("c", "partial", eval_loss=0.5, val_rubric_pass=0.90, val_from="interval"),
    ]
    for sort_by in ("test_rubric_pass", "rouge_l", "test_specifics_recall", "eval_loss"):
        out = R.sort_rows(rows, sort_by)
        assert out[0]["run"] in ("a", "c")  # the sort follows the column...
        assert [r["run"] for r in out if r["best"]] == ["b"]  # ...the * follows validation
        assert all(r["best_by"] == "val_rubric_pass" for r in out)
    assert [r["run"] for r in R.sort_rows(rows)] == ["c", "b", "a"]  # default: sorted by the selection metric
    out = R.sort_rows(rows, "rouge_l", select_by="eval_loss")
    assert [r["run"] for r in out if r["best"]] == ["a"]
    with pytest.raises(R.ReportError, match="validation metric"):
        R.sort_rows(rows, select_by="test_rubric_pass")
    # a tie on the rate (frequent on 100 validation rows) goes to the lower validation loss
    tied = [_row("x", eval_loss=1.3, val_rubric_pass=0.0, rouge_l=0.5), _row("y", eval_loss=1.1, val_rubric_pass=0.0)]
    out = R.sort_rows(tied)
    assert [r["run"] for r in out] == ["y", "x"] and out[0]["best"] == 1
    assert [r["run"] for r in R.sort_rows(tied, "rouge_l") if r["best"]] == ["y"]
    # data without intents/slots: no rubric anywhere, so the validation loss picks
    plain = [_row("a", eval_loss=1.0, rouge_l=0.2), _row("b", eval_loss=0.8, rouge_l=0.1)]
    assert R.selection_metric(plain) == "eval_loss"
    out = R.sort_rows(plain, "rouge_l")
    assert [r["run"] for r in out] == ["a", "b"] and [r["run"] for r in out if r["best"]] == ["b"]
    assert out[0]["best_by"] == "eval_loss"


def _fake_run(exp, name, index, scalars: dict, status_files=()):
    """A run directory as the runner leaves it: config.json and event files with ``scalars``
    ({tag: [(step, value), ...]}), without training anything."""
    from torch.utils.tensorboard import SummaryWriter

    d = exp / name
    d.mkdir(parents=True)
    knobs = {"base": "large", "prompt": "qa", "adapter": "r8:c_attn", "lr": 5e-3, "epochs": 1, "data": "hq", "seed": 0}
    (d / "config.json").write_text(json.dumps({"name": name, "config_id": name, "knobs": knobs, "index": index}))
    w = SummaryWriter(log_dir=str(d / "tb"))
    for tag, points in scalars.items():
        for step, value in points:
            w.add_scalar(tag, value, step)
    w.close()
    for f in status_files:
        (d / f).write_text("x\n")


def _finished_scalars(val_pass, test_pass, rouge, eval_loss):
    job = {
        "specifics_recall": 0.8,
        "invented_share": 0.1,
        "intent_accuracy": 0.9,
        "rubric_mean": 3.5,
        "bleu": 0.1,
        "eos_stop_rate": 0.95,
    }
    out = {
        "train/loss": [(1, 2.0), (2, 1.5)],
        "val/loss": [(0, 3.0), (2, eval_loss)],
        "val/token_acc": [(0, 0.2), (2, 0.4)],
        "meta/steps_per_epoch": [(0, 2)],
        "meta/max_steps": [(0, 2)],
        "final/ref_loss": [(2, 1.7)],
        "final/rouge_l": [(2, rouge)],
        "final/rubric_pass": [(2, test_pass)],
        "final_val/rubric_pass": [(2, val_pass)],
        "final_val/rouge_l": [(2, 0.5)],
        "val_gen/rubric_pass": [(0, 0.0), (2, 0.99)],
    }  # the subset: not what selects a finished run
    out.update({f"final/{k}": [(2, v)] for k, v in job.items()})
    out.update({f"final_val/{k}": [(2, v)] for k, v in job.items()})
    return out


def test_table_from_event_files_has_job_columns_and_marks_best_by_validation(tmp_path):
    exp = tmp_path / "exp"
    _fake_run(exp, "test-winner", 0, _finished_scalars(val_pass=0.2, test_pass=0.7, rouge=0.45, eval_loss=1.0))
    _fake_run(exp, "val-winner", 1, _finished_scalars(val_pass=0.6, test_pass=0.3, rouge=0.35, eval_loss=1.1))
    _fake_run(
        exp,
        "running",
        2,
        {
            "train/loss": [(1, 2.0)],
            "val/loss": [(0, 3.0)],
            "meta/max_steps": [(0, 2)],
            "val_gen/rubric_pass": [(0, 0.0), (1, 0.95)],
            "val_gen/rouge_l": [(1, 0.2)],
        },
    )
    table = R.write_tables(exp, sort_by="test_rubric_pass")
    assert table.select_by == "val_rubric_pass"
    rows = {r["run"]: r for r in table.rows}
    assert [r["run"] for r in table.rows][:2] == ["test-winner", "val-winner"]  # sorted by the test column
    assert rows["val-winner"]["best"] == 1 and rows["test-winner"]["best"] == 0 and rows["running"]["best"] == 0
    assert rows["val-winner"]["val_rubric_pass"] == pytest.approx(0.6)  # final_val/, not the subset's 0.99
    assert rows["test-winner"]["test_rubric_pass"] == pytest.approx(0.7)
    assert rows["test-winner"]["test_intent_accuracy"] == pytest.approx(0.9)
    assert rows["running"]["val_from"] == "interval" and rows["running"]["val_rubric_pass"] == pytest.approx(0.95)
    assert rows["running"]["rouge_l"] is None and rows["running"]["test_rubric_pass"] is None
    header = (exp / "results.csv").read_text().splitlines()[0].split(",")
    for col in (
        "best_by",
        "val_rubric_pass",
        "val_specifics_recall",
        "val_from",
        "test_specifics_recall",
        "test_invented_share",
        "test_intent_accuracy",
        "test_rubric_pass",
        "test_rubric_mean",
    ):
        assert col in header, col
    md = (exp / "results.md").read_text()
    assert "| * val-winner |" in md and "| test-winner |" in md
    assert "best finished run by the VALIDATION metric val rubric pass (val_rubric_pass" in md
    assert "sorted by test_rubric_pass" in md and "the * still comes from validation" in md
    assert "95.0%~" in md  # the unfinished run's interval value on the validation subset
    for label in ("specifics", "invented", "intent", "rubric pass", "val rubric pass"):
        assert f" {label} |" in md, label
    assert "* val-winner" in table.terminal
    default = R.build_table(exp)  # default sort: the selection metric, best on top
    assert default.sort_by == "val_rubric_pass" and default.rows[0]["run"] == "running"  # 95%~, not finished
    assert [r["run"] for r in default.rows if r["best"]] == ["val-winner"]


def test_table_falls_back_to_validation_loss_without_job_metrics(tmp_path):
    exp = tmp_path / "exp"
    for i, (name, loss, rouge) in enumerate((("low-loss", 0.9, 0.2), ("high-rouge", 1.3, 0.5))):
        _fake_run(
            exp,
            name,
            i,
            {
                "train/loss": [(1, 2.0)],
                "val/loss": [(1, loss)],
                "meta/max_steps": [(0, 1)],
                "final/rouge_l": [(1, rouge)],
                "final_val/rouge_l": [(1, rouge)],
            },
        )
    table = R.build_table(exp)
    assert table.select_by == "eval_loss" and table.sort_by == "eval_loss"
    assert [r["run"] for r in table.rows if r["best"]] == ["low-loss"]
    assert "no run has val_rubric_pass" in table.markdown


# ------------------------------------------------------------------------------ damaged experiment folders


def _report(exp, capsys) -> tuple[int, str, str]:
    from part4_sft.experiment.cli import main

    code = main(["report", str(exp), "--no-plots"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_names_the_config_file_and_the_keys_it_lacks(tmp_path, capsys):
    from part3_pretrain.checkpoint import CheckpointError
    from part4_sft.experiment.store import load_run_config

    exp = tmp_path / "exp"
    _fake_run(exp, "good", 0, {"train/loss": [(1, 2.0)]})
    _fake_run(exp, "broken", 1, {"train/loss": [(1, 2.0)]})
    cfg_path = exp / "broken" / "config.json"
    doc = json.loads(cfg_path.read_text())
    del doc["name"], doc["knobs"]["lr"], doc["knobs"]["seed"]
    cfg_path.write_text(json.dumps(doc))
    code, _, err = _report(exp, capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{cfg_path}: run config lacks name, knobs.lr, knobs.seed" in err
    assert not (exp / "results.csv").exists()  # no table without the run
    with pytest.raises(CheckpointError, match="lacks name, settings, base_path, knobs.lr, knobs.seed"):
        load_run_config(exp / "broken")  # the experiment's own reader: one line too
    cfg_path.write_text(json.dumps([doc]))  # valid JSON, not an object
    code, _, err = _report(exp, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and f"{cfg_path}: not a run config" in err, err


def test_report_warns_about_a_run_folder_without_config_and_says_so_in_the_table(tmp_path, capsys):
    exp = tmp_path / "exp"
    for i, name in enumerate(("kept", "lost")):
        _fake_run(
            exp,
            name,
            i,
            _finished_scalars(val_pass=0.5, test_pass=0.5, rouge=0.4, eval_loss=1.0),
            status_files=("DONE",),
        )
    (exp / "plots").mkdir()  # not a run folder: no warning for it
    (exp / "lost" / "config.json").unlink()
    code, out, err = _report(exp, capsys)
    assert code == 0
    assert err.splitlines() == [
        f"python -m part4_sft.experiment report: warning: {exp / 'lost'}: run folder without "
        "config.json, left out of the table (restore its config.json to include it)"
    ]
    md = (exp / "results.md").read_text()
    assert f"LEFT OUT (run folders without config.json): {exp / 'lost'}" in md and "LEFT OUT" in out
    assert "| * kept |" in md and "| lost" not in md
    assert [r.split(",")[0] for r in (exp / "results.csv").read_text().splitlines()[1:]] == ["kept"]
    (exp / "kept" / "config.json").unlink()  # nothing left to report: one line that says why
    code, _, err = _report(exp, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "2 run folder(s) lack their config.json: kept, lost" in err
