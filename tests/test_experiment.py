"""End-to-end tests of ``python -m part4_sft.experiment`` on a tiny pretrained base and tiny data:
a 2-run grid writes event files (job metrics included), configs and a table with the right rows;
interval generation uses validation rows only and the test set is generated once per run, at
the end; ``report DIR`` rebuilds
the same table from the directory alone; chunked training equals unchunked training; reruns skip
finished runs; an interrupted run resumes exactly; --stop is honoured; clones warm-start from the
parent's weights; bad values exit 2 with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from part3_pretrain.checkpoint import load_checkpoint, non_finite_tensors
from part3_pretrain.cli import ConfigError, compose, flat_dict, leaf_names
from part3_pretrain.trainer import Trainer
from part4_sft import evaluate as ev
from part4_sft import synthetic
from part4_sft.experiment import cli as E
from part4_sft.experiment import evaluation as run_evaluation
from part4_sft.experiment import report as R
from part4_sft.experiment import run_model, scheduler, store, workspace
from part4_sft.lora import apply_lora, merged_state_dict
from tests.tools import TINY_EXPERIMENT, assert_same_weights, one_thread, run_weights, updated

RUN_QA = "large-qa-lora4-c_attn-ep2"
RUN_INSTR = "large-instruction-lora4-c_attn-ep2"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def make_cfg(tiny_base, tmp_path_factory):
    data = tmp_path_factory.mktemp("data") / "sft_dataset.json"

    def make(exp_root: Path, **kw) -> E.ExperimentConfig:
        """The tiny experiment: 1-layer base, 40 training pairs, 8 validation rows (the first 4 answered
        at every interval evaluation), 16 test contexts, 2 epochs of about 5 steps (the exact count
        depends on how many pairs fit the block: see ``_plan``)."""
        base = dict(
            TINY_EXPERIMENT,
            experiments_dir=str(exp_root),
            large_base=str(tiny_base),
            small_base=str(tiny_base),
            dataset_path=str(data),
        )
        base.update(kw)
        return compose(E.ExperimentConfig, **base)

    return make


@pytest.fixture(scope="module")
def finished(make_cfg, tmp_path_factory):
    """The 2-run grid (Q/A and instruction prompts), trained unchunked, with plots. Every call of
    ``evaluate.generate_replies`` is recorded in ``result["generate_calls"]``: its contexts, its
    temperature and whether it ran inside ``evaluation.final_evaluation`` (the end of a run)."""
    cfg = make_cfg(tmp_path_factory.mktemp("finished"), plots=True)
    calls, in_final = [], []
    real_generate, real_final = ev.generate_replies, run_evaluation.final_evaluation

    def spy_generate(model, tok, scheme, contexts, settings, temperature, seed, batch_size, names=None):
        calls.append({"contexts": list(contexts), "temperature": temperature, "final": bool(in_final), "names": names})
        return real_generate(model, tok, scheme, contexts, settings, temperature, seed, batch_size, names)

    def spy_final(*args, **kwargs):
        in_final.append(True)
        try:
            return real_final(*args, **kwargs)
        finally:
            in_final.pop()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ev, "generate_replies", spy_generate)
        mp.setattr(run_evaluation, "final_evaluation", spy_final)
        result = E.run(cfg)
    result["generate_calls"] = calls
    return cfg, Path(result["exp_dir"]), result


def _series(run_dir: Path, tag: str) -> list:
    return R.read_scalars(run_dir / "tb")[tag]


def _plan(run_dir: Path) -> tuple[int, int]:
    """(steps per epoch, max steps) of a finished run, from its event files."""
    s = R.read_scalars(run_dir / "tb")
    return int(s["meta/steps_per_epoch"][0][1]), int(s["meta/max_steps"][0][1])


# ---------------------------------------------------------------------------------------------


def test_grid_writes_events_configs_and_table(finished):
    cfg, exp_dir, result = finished
    for name in (RUN_QA, RUN_INSTR):
        d = exp_dir / name
        for f in ("config.json", "state.pt", "adapter.pt", "evaluation.json", "DONE"):
            assert (d / f).is_file(), f
        replies = [json.loads(line) for line in (d / "generations.jsonl").read_text().splitlines()]
        assert [r["row"] for r in replies] == list(range(cfg.settings.dataset.n_test))  # every test row, once
        assert list((d / "tb").glob("events.out.tfevents.*"))
        s = R.read_scalars(d / "tb")
        for tag in (
            "train/loss",
            "train/token_acc",
            "train/lr",
            "train/grad_norm",
            "val/loss",
            "val/token_acc",
            "val_gen/rouge_l",
            "val_gen/bleu",
            "val_gen/eos_stop_rate",
            "final/rouge_l",
            "final/bleu",
            "final/eos_stop_rate",
            "final/ref_loss",
            "meta/trainable_params",
            "meta/wall_seconds",
        ):
            assert tag in s, tag
        assert not any(tag.startswith("gen/") for tag in s)  # the old test-subset curves are gone
        assert "final/rouge_l" in EventAccumulator(str(d / "tb")).Reload().Tags()["scalars"]  # TensorBoard reads it
        steps = [st for st, _ in s["train/loss"]]
        assert steps == list(range(1, steps[-1] + 1)) and steps[-1] == s["meta/max_steps"][0][1]
        for tag in ("val/loss", "val_gen/rouge_l", "val_gen/specifics_recall"):  # before training, after every epoch
            assert [st for st, _ in s[tag]] == [0, steps[-1] // 2, steps[-1]], tag
    rows = {r["run"]: r for r in result["table"].rows}
    assert set(rows) == {RUN_QA, RUN_INSTR}
    for r in rows.values():
        assert r["status"] == "done" and r["val_from"] == "final" and r["prompt"] in ("qa", "instruction")
        assert r["trainable_params"] == 4 * 32 + 96 * 4  # A (4, 32) and B (96, 4) on the one c_attn
        assert r["train_loss"] > 0 and r["eval_loss"] > 0 and 0 <= r["rouge_l"] <= 1 and r["wall_s"] > 0
    assert sum(r["best"] for r in rows.values()) == 1
    csv_lines = (exp_dir / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("run,best,best_by,status")
    assert all(p.endswith(".png") and Path(p).is_file() for p in result["plots"])
    # evaluated on part 4's held-out test set
    test = synthetic.generate_eval_set("test", cfg.settings.dataset.n_test, seed=cfg.settings.dataset.data_seed)
    evaluation = (exp_dir / RUN_QA / "evaluation.json").read_text()
    assert f'"test_rows": {cfg.settings.dataset.n_test}' in evaluation and test[0]["context"][:40] in evaluation


def test_interval_generation_uses_validation_rows_never_test_rows(finished):
    """Model selection never touches the test set: during training only the first val_gen_rows
    validation contexts are generated; at the end of each run the whole validation split, then
    the test set, exactly once."""
    cfg, _, result = finished
    splits = workspace.ExperimentData.load(cfg.settings).splits
    val, test = [r["context"] for r in splits.val], [r["context"] for r in splits.test]
    assert (
        len(val) == cfg.settings.dataset.n_val and len(test) == cfg.settings.dataset.n_test and not set(val) & set(test)
    )
    calls = result["generate_calls"]
    assert calls and all(c["temperature"] == 0.0 for c in calls)  # greedy everywhere
    during = [c["contexts"] for c in calls if not c["final"]]
    at_end = [c["contexts"] for c in calls if c["final"]]
    # per run: step 0 and the end of epoch 1 (the last step's subset values come from the final
    # whole-validation replies)
    assert during == [val[: cfg.settings.val_gen_rows]] * 2 * 2
    assert at_end == [val, test] * 2
    assert sum(c["contexts"] == test for c in calls) == 2  # once per run
    assert not any(set(c["contexts"]) & set(test) for c in calls if not c["final"])
    # every generation holds names to the run's training replies' own words (as part4_sft.sft does)
    assert all(c["names"] is not None and "Thanks" in c["names"].initial for c in calls)


def _assert_job_scalars(d: Path, s: dict) -> None:
    """The job metrics in one run's TensorBoard scalars: every prefix, once at the end, inside their CIs."""
    keys = (
        "specifics_recall",
        "invented_share",
        "intent_accuracy",
        "rubric_pass",
        "rubric_mean",
        "rouge_l",
        "bleu",
        "eos_stop_rate",
    )
    last = s["meta/max_steps"][0][1]
    for prefix in ("val_gen/", "final_val/", "final/"):
        for k in keys:
            assert prefix + k in s, prefix + k
    for tag in ("final/specifics_recall", "final/rubric_pass", "final_val/rubric_pass"):
        assert [st for st, _ in s[tag]] == [last], tag  # once, at the end
    for split in ("final", "final_val"):
        for k in ("specifics_recall", "rubric_pass", "rouge_l"):
            lo, v, hi = (s[f"{split}/{k}{x}"][0][1] for x in ("_ci_low", "", "_ci_high"))
            assert lo - 1e-6 <= v <= hi + 1e-6, (split, k)
    tags = EventAccumulator(str(d / "tb")).Reload().Tags()["scalars"]  # TensorBoard reads them
    assert "val_gen/specifics_recall" in tags and "final/specifics_recall" in tags


def _assert_evaluation_json(cfg, d: Path, s: dict) -> None:
    """One run's evaluation.json: both splits' job metrics, matching the final TensorBoard scalars."""
    doc = json.loads((d / "evaluation.json").read_text())
    assert doc["test_rows"] == cfg.settings.dataset.n_test and doc["val_rows"] == cfg.settings.dataset.n_val
    for part in ("test", "validation"):
        job = doc[part]["greedy"]["job"]
        assert job["specifics_basis"] == "slots" and len(job["rubric_pass"]["ci"]) == 2
        assert set(job["rubric_failed_rules"]) and "rouge_l_ci" in doc[part]["greedy"]
    assert "reference_loss" in doc["test"]
    assert doc["test"]["scalars"]["specifics_recall"] == pytest.approx(s["final/specifics_recall"][0][1])
    assert doc["validation"]["scalars"]["rubric_pass"] == pytest.approx(s["final_val/rubric_pass"][0][1])
    assert len(doc["examples"]) == cfg.settings.evaluation.n_examples and {"greedy", "rating", "references"} <= set(
        doc["examples"][0]
    )


def _assert_table_row(r: dict, s: dict) -> None:
    """One run's results-table row carries its final TensorBoard job metrics; best chosen on validation."""
    assert r["test_specifics_recall"] == pytest.approx(s["final/specifics_recall"][0][1])
    assert r["test_rubric_pass"] == pytest.approx(s["final/rubric_pass"][0][1])
    assert r["val_rubric_pass"] == pytest.approx(s["final_val/rubric_pass"][0][1])
    assert r["best_by"] == "val_rubric_pass"


def _assert_results_files(exp_dir: Path) -> None:
    """results.csv has the job-metric columns; results.md the labels and the validation-only note."""
    header = (exp_dir / "results.csv").read_text().splitlines()[0].split(",")
    for col in (
        "test_specifics_recall",
        "test_invented_share",
        "test_intent_accuracy",
        "test_rubric_pass",
        "val_rubric_pass",
        "rouge_l",
        "bleu",
        "eos_rate",
    ):
        assert col in header, col
    md = (exp_dir / "results.md").read_text()
    for label in ("specifics", "invented", "intent", "rubric pass", "val rubric pass", "ROUGE-L"):
        assert f"| {label} |" in md, label
    assert "VALIDATION metric" in md and "test columns never pick the best" in md


def test_job_metrics_reach_tensorboard_table_and_evaluation_json(finished):
    cfg, exp_dir, result = finished
    rows = {r["run"]: r for r in result["table"].rows}
    for name in (RUN_QA, RUN_INSTR):
        d = exp_dir / name
        s = R.read_scalars(d / "tb")
        _assert_job_scalars(d, s)
        _assert_evaluation_json(cfg, d, s)
        _assert_table_row(rows[name], s)
    best = next(r for r in rows.values() if r["best"])
    assert best["val_rubric_pass"] == max(r["val_rubric_pass"] for r in rows.values())
    _assert_results_files(exp_dir)


def test_report_rebuilds_the_same_table_from_the_directory(finished, tmp_path, capsys):
    _, exp_dir, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(exp_dir, copy)
    before = {f: (copy / f).read_text() for f in ("results.csv", "results.md")}
    for f in before:
        (copy / f).unlink()
    assert E.main(["report", str(copy), "--no-plots"]) == 0
    assert {f: (copy / f).read_text() for f in before} == before
    assert RUN_QA in capsys.readouterr().out
    assert E.main(["report", str(copy), "--sort-by", "rouge_l", "--no-plots"]) == 0


def test_rerun_skips_finished_runs(finished, monkeypatch):
    cfg, exp_dir, _ = finished
    monkeypatch.setattr(scheduler, "train_chunk", lambda *a, **k: pytest.fail("a finished run was trained again"))
    before = (exp_dir / "results.csv").read_text()
    E.run(updated(cfg, plots=False))
    assert (exp_dir / "results.csv").read_text() == before


def test_rerun_with_other_execution_settings_is_accepted(finished, make_cfg, tmp_path, monkeypatch):
    """Device, dtype, generation batch size, threads and progress bars are how a process runs the
    experiment, not what a run is: a registered experiment continues under other ones (also from
    a config.json of an older version, which kept device/dtype/eval_batch_size in the settings),
    and nothing is trained again; a changed run setting is still refused."""
    _, exp_dir, _ = finished
    exp = tmp_path / "exp"
    shutil.copytree(exp_dir, exp)
    assert not {"device", "dtype", "eval_batch_size"} & set(
        json.loads((exp / RUN_QA / "config.json").read_text())["settings"]
    )
    old = exp / RUN_INSTR / "config.json"
    doc = json.loads(old.read_text())
    doc["settings"].update(device="auto", dtype="float32", eval_batch_size=64)  # as older versions wrote it
    old.write_text(json.dumps(doc))
    cfg = make_cfg(tmp_path)
    monkeypatch.setattr(scheduler, "train_chunk", lambda *a, **k: pytest.fail("a finished run was trained again"))
    before = (exp / "results.csv").read_text()
    for changes in ({"device": "cpu"}, {"eval_batch_size": 3}, {"dtype": "auto", "threads": 1, "progress": True}):
        assert E.main(_argv(updated(cfg, **changes))) == 0, changes
        assert (exp / "results.csv").read_text() == before
    assert json.loads((exp / "experiment.json").read_text())["execution"]["dtype"] == "auto"
    assert store.load_run_config(exp / RUN_INSTR).settings == cfg.settings
    with pytest.raises(ConfigError, match="already has runs with other settings.*n_boot"):
        E.run(updated(cfg, n_boot=50))


def test_chunked_equals_unchunked_and_interleaves(finished, make_cfg, tmp_path, capsys):
    _, one_dir, _ = finished
    result = E.run(make_cfg(tmp_path, chunks=2))
    two_dir = Path(result["exp_dir"])
    order = [
        line.split("] ")[1].split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("[chunk")
    ]
    assert order == [RUN_QA, RUN_INSTR, RUN_QA, RUN_INSTR]  # chunk 1 of every run before any chunk 2
    for name in (RUN_QA, RUN_INSTR):
        assert_same_weights(run_weights(one_dir / name), run_weights(two_dir / name))
        for tag in (
            "train/loss",
            "train/grad_norm",
            "val/loss",
            "val_gen/rouge_l",
            "val_gen/rubric_pass",
            "final_val/rubric_pass",
            "final/rouge_l",
            "final/specifics_recall",
        ):
            assert _series(one_dir / name, tag) == _series(two_dir / name, tag), tag
        assert len(list((two_dir / name / "tb").glob("events.*"))) == 2  # one event file per chunk


def test_interrupted_run_resumes_exactly(finished, make_cfg, tmp_path, monkeypatch):
    """A crash after the epoch-1 checkpoint (step spe; steps spe+1 and spe+2 logged, never saved),
    a Ctrl-C in a later step and a crash in the final evaluation: each rerun continues from the
    checkpoint and ends where the uninterrupted run ended."""
    _, one_dir, _ = finished
    spe, max_steps = _plan(one_dir / RUN_QA)
    assert max_steps == 2 * spe >= 8, "the tiny data must give at least 4 steps per epoch"
    cfg = make_cfg(tmp_path, prompts=("qa",))
    real_step = Trainer.train_step
    for fail_at, exc in ((spe + 3, RuntimeError("power cut")), (spe + 4, KeyboardInterrupt())):

        def flaky(self, with_accuracy=True, fail_at=fail_at, exc=exc):
            if self.step + 1 == fail_at:
                raise exc
            return real_step(self, with_accuracy)

        monkeypatch.setattr(Trainer, "train_step", flaky)
        with pytest.raises(type(exc)):
            E.run(cfg)
        monkeypatch.setattr(Trainer, "train_step", real_step)
        step = load_checkpoint(tmp_path / "exp" / RUN_QA / "state.pt")["trainer"]["step"]
        assert step == (spe if fail_at == spe + 3 else spe + 3)  # Ctrl-C saves the last finished step
    real_finish = run_evaluation.finish_run
    monkeypatch.setattr(
        run_evaluation, "finish_run", lambda *a: (_ for _ in ()).throw(RuntimeError("killed in evaluation"))
    )
    with pytest.raises(RuntimeError):
        E.run(cfg)  # trained to the end and checkpointed, but never evaluated
    monkeypatch.setattr(run_evaluation, "finish_run", real_finish)
    run_dir = tmp_path / "exp" / RUN_QA
    assert not (run_dir / "DONE").exists()
    E.run(cfg)
    assert_same_weights(run_weights(one_dir / RUN_QA), run_weights(run_dir))
    for tag in (
        "train/loss",
        "val/loss",
        "val_gen/specifics_recall",
        "final_val/rubric_pass",
        "final/rouge_l",
        "final/rubric_pass",
    ):
        assert _series(one_dir / RUN_QA, tag) == _series(run_dir, tag), tag


def test_stop_is_honoured_while_running_and_unstop_resumes(finished, make_cfg, tmp_path, monkeypatch):
    _, one_dir, _ = finished
    spe, max_steps = _plan(one_dir / RUN_QA)
    cfg = make_cfg(tmp_path, chunks=2)
    real_chunk = scheduler.train_chunk
    calls = []

    def chunk_then_stop(run, exp_dir, until, ws):
        res = real_chunk(run, exp_dir, until, ws)
        if not calls:  # as if typed in another terminal after the first chunk
            assert E.main(["--experiments-dir", cfg.experiments_dir, "--name", cfg.name, "--stop", RUN_QA]) == 0
        calls.append((run.name, until))
        return res

    monkeypatch.setattr(scheduler, "train_chunk", chunk_then_stop)
    result = E.run(cfg)
    monkeypatch.setattr(scheduler, "train_chunk", real_chunk)
    assert calls == [(RUN_QA, spe), (RUN_INSTR, spe), (RUN_INSTR, max_steps)]
    rows = {r["run"]: r for r in result["table"].rows}
    assert rows[RUN_QA]["status"] == "stopped" and rows[RUN_QA]["step"] == spe
    assert rows[RUN_INSTR]["status"] == "done"
    assert E.main(["--experiments-dir", cfg.experiments_dir, "--name", cfg.name, "--unstop", RUN_QA]) == 0
    result = E.run(cfg)
    assert all(r["status"] == "done" for r in result["table"].rows)
    assert_same_weights(run_weights(one_dir / RUN_QA), run_weights(tmp_path / "exp" / RUN_QA))


def test_clone_warm_starts_from_the_parent(finished, make_cfg, tmp_path):
    cfg, exp_dir, _ = finished
    exp = tmp_path / "exp"
    shutil.copytree(exp_dir, exp)
    cfg = make_cfg(tmp_path)
    parent = run_weights(exp / RUN_QA)
    result = E.run(updated(cfg, clone=RUN_QA, set=("lr=1e-3", "epochs=1")))
    name = RUN_QA + "+lr=1e-3+epochs=1"
    run_cfg = store.load_run_config(exp / name)
    assert run_cfg.parent == RUN_QA and run_cfg.knobs.lr == 1e-3 and run_cfg.knobs.epochs == 1
    assert run_cfg.knobs.prompt == "qa" and run_cfg.base_path == cfg.large_base
    ws = workspace.Workspace(progress=False)
    assert_same_weights(parent, run_model.build_run_model(run_cfg, exp, ws).state_dict())
    state = load_checkpoint(exp / name / "state.pt")
    assert state["trainer"]["step"] == _plan(exp / RUN_QA)[0]  # one epoch, from 0: a fresh optimizer and schedule
    assert {r["run"] for r in result["table"].rows} == {RUN_QA, RUN_INSTR, name}
    # another adapter shape: starts from the parent's merged weights (same function at step 0)
    E.run(updated(cfg, clone=RUN_QA, set=("lora_r=8", "epochs=1"), plots=False))
    other = store.load_run_config(exp / (RUN_QA + "+lora_r=8+epochs=1"))
    init = run_model.build_run_model(other, exp, ws)
    parent_model = run_model.build_run_model(store.load_run_config(exp / RUN_QA), exp, ws)
    parent_model.load_state_dict(parent)
    assert_same_weights(merged_state_dict(parent_model), merged_state_dict(init))
    # the same changes again get a distinct name
    store.register_clone(exp, RUN_QA, ["lr=1e-3", "epochs=1"])
    assert (exp / (name + "+2") / "config.json").is_file()


def test_full_finetuning_all_pairs_and_seeds(make_cfg, tmp_path):
    """Full fine-tuning vs the filter's ablation (all pairs), two seeds each: mean/std rows."""
    result = E.run(
        make_cfg(
            tmp_path, prompts=("qa",), adapters=("full",), data=("hq", "all"), epochs=(1,), seeds=2, evals_per_epoch=0
        )
    )
    exp = Path(result["exp_dir"])
    table = result["table"]
    assert table.aggregated and {r["run"] for r in table.rows} == {"large-qa-full-ep1", "large-qa-full-ep1-all"}
    assert all(r["seeds"] == 2 and r["status"] == "done" for r in table.rows)
    assert len((exp / "results_runs.csv").read_text().splitlines()) == 1 + 4
    hq, everything = (R.read_scalars(exp / n / "tb") for n in ("large-qa-full-ep1", "large-qa-full-ep1-all"))
    assert everything["meta/train_examples"][0][1] > hq["meta/train_examples"][0][1]
    assert hq["meta/trainable_params"] == hq["meta/total_params"]
    assert (exp / "large-qa-full-ep1-seed1" / "model.pt").is_file()
    seed0, seed1 = (run_weights(exp / n) for n in ("large-qa-full-ep1", "large-qa-full-ep1-seed1"))
    assert any(not torch.equal(seed0[k], seed1[k]) for k in seed0)  # the seed changes the data order


def _exit(argv, capsys) -> tuple[int, str]:
    try:
        code = E.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--adapters", "r0:c_attn"], "r must be"),
        (["--lrs", "-1"], "--lrs"),
        (["--prompts", "nope"], "invalid choice"),
        (["--set", "lr=1"], "--set needs --clone"),
        (["--chunks", "0"], "--chunks"),
        (["--large-base", "/nonexistent/model.pt"], "no such checkpoint"),
        (["--stop", "no-such-run"], "no such run"),
        (["--clone", RUN_QA, "--set", "base=small"], "keeps the parent's base"),
        (["--clone", RUN_QA, "--set", "rank=4"], "unknown key"),
    ],
)
def test_bad_values_exit_2_with_one_line(finished, extra, match, capsys):
    cfg, _, _ = finished
    argv = ["--experiments-dir", cfg.experiments_dir, "--name", cfg.name, "--large-base", cfg.large_base] + extra
    code, err = _exit(argv, capsys)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


def test_bad_grid_file_and_report_dir_exit_2(tmp_path, capsys):
    bad = tmp_path / "grid.json"
    bad.write_text('{"adapter": ["r8:c_attn+"]}')
    code, err = _exit(["--grid", str(bad)], capsys)
    assert code == 2 and "targets" in err and len(err.strip().splitlines()) == 1, err
    code, err = _exit(["report", str(tmp_path / "missing")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_default_adapter_targets_match_the_model(tiny_base):
    """The default grid's targets exist on the part-3 model; c_proj means attn.c_proj and mlp.c_proj
    (a suffix match, as peft matches GPT-2's c_proj)."""
    from part3_pretrain.checkpoint import load_model
    from part4_sft.experiment.grid import Adapter

    model, _, _ = load_model(tiny_base)
    wrapped = apply_lora(model, Adapter.parse("r32:c_attn+c_proj").lora_config())
    assert any(n.endswith("attn.c_proj") for n in wrapped) and any(n.endswith("mlp.c_proj") for n in wrapped)


def _argv(cfg: E.ExperimentConfig) -> list[str]:
    """The command line that gives ``cfg``."""
    argv = []
    options = set(leaf_names(type(cfg)))
    for key, v in flat_dict(cfg).items():  # nested parts flattened
        name = "--" + key.replace("_", "-")
        if key not in options or v is None:
            continue
        if isinstance(v, bool):
            argv.append(name if v else f"--no-{name[2:]}")
        elif isinstance(v, tuple):
            if v:
                argv += [name, *map(str, v)]
        else:
            argv += [name, str(v)]
    return argv


def test_a_diverging_run_is_one_line_naming_the_run(make_cfg, tmp_path, capsys):
    """LoRA at lr 1e30: the trainer stops before a non-finite update; the experiment exits 2 with
    one line naming the run, the step and --stop; no state.pt with NaN is left. Temp files a
    killed write left in the run's folder are cleared when the run starts."""
    cfg = make_cfg(tmp_path, prompts=("qa",), lrs=(1e30,), evals_per_epoch=0)
    name = E.resolve_runs(cfg)[0].name
    run_dir = tmp_path / "exp" / name
    run_dir.mkdir(parents=True)
    stale = [run_dir / ".status.json.k1ll3d00.tmp", run_dir / ".state.pt.k1ll3d00.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    code, err = _exit(_argv(cfg), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"run {name}: step " in err and "not finite" in err and f"--stop {name}" in err
    assert "lr of this run is 1e+30" in err
    state = run_dir / "state.pt"
    assert not state.exists() or non_finite_tensors(load_checkpoint(state)["model"]) == []
    assert not any(p.exists() for p in stale)


def test_experiment_warns_about_a_run_folder_without_config(finished, make_cfg, tmp_path, capsys):
    """A run whose config.json was deleted is not silently dropped: a warning names its folder,
    and results.md says it is left out."""
    _, exp_dir, _ = finished
    shutil.copytree(exp_dir, tmp_path / "exp")
    (tmp_path / "exp" / RUN_INSTR / "config.json").unlink()
    capsys.readouterr()
    result = E.run(make_cfg(tmp_path, prompts=("qa",)))  # finished: nothing to train
    err = capsys.readouterr().err
    assert f"warning: {tmp_path / 'exp' / RUN_INSTR}: run folder without config.json, left out of the table" in err
    assert [r["run"] for r in result["table"].rows] == [RUN_QA]
    assert (
        f"LEFT OUT (run folders without config.json): {tmp_path / 'exp' / RUN_INSTR}"
        in (tmp_path / "exp" / "results.md").read_text()
    )


def test_chat_loads_a_lora_run_from_its_adapter_and_from_its_state(finished):
    # adapter.pt (adapters alone, on the base named in config.json) and state.pt (the trainer's
    # checkpoint, LoRA layers inside) give the same merged model; the run's prompt comes along
    from part4_sft.model_files import load_any

    cfg, exp_dir, _ = finished
    run_dir = exp_dir / RUN_QA
    by_dir, by_state = load_any(run_dir), load_any(run_dir / "state.pt")
    assert by_dir.path.name == "adapter.pt" and by_dir.scheme == by_state.scheme == "qa"
    assert str(by_dir.base_path) == cfg.large_base
    idx = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(by_dir.model(idx), by_state.model(idx), atol=1e-5)
    assert not any("lora" in k for k in by_dir.model.state_dict())  # merged into plain weights
