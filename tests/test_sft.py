"""Part 4: masks, audit, disjointness, batching, the untouched baseline, and the entry point."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from part3_pretrain.checkpoint import CheckpointError, load_checkpoint, load_model
from part3_pretrain.cli import compose, options
from part3_pretrain.model import IGNORE_INDEX
from part3_pretrain.slots import slot_values
from part4_sft import sft
from part4_sft.examples import (
    Example,
    LabelAuditError,
    SFTBatches,
    audit_labels,
    build_example,
    collate,
)
from part4_sft.prompts import SCHEMES, get_scheme
from part4_sft.sft import SFTConfig
from part4_sft.splits import LeakError, check_disjoint
from tests.tools import pretrain_tiny_base

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok(pretrained):
    return load_model(pretrained)[1]


def tiny_cfg(pretrained: Path, out: Path, **kw) -> SFTConfig:
    base = dict(
        pretrained=str(pretrained),
        out_dir=str(out),
        dataset_path=str(out / "sft_dataset.json"),
        n_pairs=120,
        n_high_quality=24,
        n_val=6,
        n_test=10,
        epochs=2,
        batch_size=4,
        lr=1e-3,
        max_new_tokens=12,
        n_boot=50,
        n_examples=3,
        progress=False,
        device="cpu",
        dtype="float32",
        prompt_scheme="chat",
    )  # the role-token scheme, evaluated beside the dialogue baseline
    base.update(kw)
    return compose(SFTConfig, **base)


# -- masks and audit ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_labels_are_exactly_response_plus_eos(tok, scheme):
    s = get_scheme(scheme)
    context, response = "My order #A1234 is late.", "Sorry about order #A1234; it ships today."
    ex = build_example(tok, s, context, response, max_len=190)
    prompt_ids = s.encode_prompt(tok, context)
    trained = [t for t in ex.labels if t != IGNORE_INDEX]
    assert trained == tok.encode(s.response(response)) + [tok.eos_id]
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
    assert len(ex.input_ids) == len(ex.labels)
    # the label of position t is input t+1: the first trained label predicts the first response token
    first = ex.labels.index(trained[0])
    assert first == len(prompt_ids) - 1
    assert tok.decode(trained[:-1]).strip() == response
    assert audit_labels([ex], tok)["eos_trained"] == 1


def test_too_long_context_is_cut_from_the_left_and_too_long_response_dropped(tok):
    s = get_scheme("chat")
    ex = build_example(tok, s, "word " * 300, "Short reply.", max_len=64)
    assert ex is not None and ex.context_truncated and len(ex.input_ids) == 64
    assert [t for t in ex.labels if t != IGNORE_INDEX][-1] == tok.eos_id
    assert build_example(tok, s, "hi", "long " * 300, max_len=64) is None


def _good(tok):
    return build_example(tok, get_scheme("chat"), "Where is order #A1234?", "It ships today.", 190)


@pytest.mark.parametrize("tamper", ["context", "pad", "no_eos", "empty"])
def test_audit_rejects_each_violation(tok, tamper):
    ex = _good(tok)
    labels = list(ex.labels)
    if tamper == "context":
        labels[0] = ex.input_ids[1]
    elif tamper == "pad":
        labels[-2] = tok.pad_id
    elif tamper == "no_eos":
        labels[-1] = IGNORE_INDEX
    else:
        labels = [IGNORE_INDEX] * len(labels)
    with pytest.raises(LabelAuditError):
        audit_labels([Example(ex.input_ids, labels, ex.prompt_len)], tok)


def test_collate_pads_to_batch_longest_with_ignore_labels(tok):
    a = _good(tok)
    b = build_example(tok, get_scheme("chat"), "Hi", "Yes.", 190)
    batch = collate([a, b], tok.pad_id)
    longest = max(len(a.input_ids), len(b.input_ids))
    # this batch's own longest, rounded up to a multiple of 16 (bounded kernel-shape count)
    assert batch["input_ids"].shape == (2, -(-longest // 16) * 16)
    assert collate([a, b], tok.pad_id, max_len=longest)["input_ids"].shape == (2, longest)
    pad_cols = batch["input_ids"][1] == tok.pad_id
    assert pad_cols.sum() == batch["input_ids"].shape[1] - len(b.input_ids)
    assert (batch["labels"][1][pad_cols] == IGNORE_INDEX).all()
    assert tok.pad_id not in batch["labels"][batch["labels"] != IGNORE_INDEX].tolist()


def test_sft_batches_cover_each_example_once_per_epoch_and_resume(tok):
    examples = [build_example(tok, get_scheme("chat"), f"order #A{1000 + i}", f"reply {i}.", 190) for i in range(10)]
    src = SFTBatches(examples, batch_size=3, pad_id=tok.pad_id, seed=1)
    assert src.steps_per_epoch == 4
    seen = [tuple(row.tolist()) for _ in range(4) for row in src.next_batch()["input_ids"]]
    assert len(seen) == 10
    state = src.state_dict()
    nxt = src.next_batch()
    again = SFTBatches(examples, batch_size=3, pad_id=tok.pad_id, seed=1)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch()["input_ids"], nxt["input_ids"])


# -- disjointness --------------------------------------------------------------------------------


def test_leaked_test_context_is_refused():
    train = [{"context": "Where is my order #A1234?", "response": "It ships today."}]
    test = [{"context": "  where is my ORDER #A1234? ", "reference": "x"}]
    with pytest.raises(LeakError, match="test contexts also appear"):
        check_disjoint(train, test, "test", check_heldout_values=False)


def test_heldout_value_in_training_text_is_refused():
    held = slot_values("heldout")["product"][0]
    train = [{"context": "A question.", "response": f"Your {held} ships today."}]
    with pytest.raises(LeakError, match="held-out slot values"):
        check_disjoint(train, [{"context": "other", "reference": "x"}], "test", check_heldout_values=True)
    assert (
        check_disjoint(
            [{"context": "A question.", "response": "Fine."}], [{"context": "other"}], "test", check_heldout_values=True
        )["shared_contexts"]
        == 0
    )


# -- the baseline stays untouched ----------------------------------------------------------------


def test_fine_tuning_never_touches_the_baseline(pretrained, tmp_path):
    base, tok, ckpt = load_model(pretrained)
    before = copy.deepcopy(base.state_dict())
    model = copy.deepcopy(base)
    cfg = tiny_cfg(pretrained, tmp_path, epochs=1)
    from part4_sft.splits import load_splits

    splits = load_splits(cfg.dataset)
    sft.fine_tune(cfg, model, tok, splits, tmp_path, cfg.prompt_scheme)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    sft.assert_untouched(base, ckpt)
    assert sft.weight_change(base, model) > 0  # and the tuned copy did move


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("special", ["<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>"])
def test_special_token_text_in_user_data_stays_text(tok, scheme, special):
    s = get_scheme(scheme)
    context, response = f"my order {special} #A1234 is late", f"Sorry {special} it ships today."
    ex = build_example(tok, s, context, response, max_len=190)
    prompt = s.encode_prompt(tok, context)
    template_specials = sum(i in tok.special_ids for i in s.encode_prompt(tok, "x"))
    assert sum(i in tok.special_ids for i in prompt) == template_specials  # only the template's own
    assert tok.decode(prompt) == s.prompt(context)
    targets = [t for t in ex.labels if t != IGNORE_INDEX]
    assert targets[-1] == tok.eos_id and not set(targets[:-1]) & tok.special_ids
    assert audit_labels([ex], tok)["special_tokens_inside_targets"] == 0


def test_audit_refuses_eos_inside_a_target(tok):
    ex = build_example(tok, get_scheme("chat"), "where is my order?", "It ships today.", max_len=190)
    i = ex.prompt_len + 1
    bad = Example(
        ex.input_ids[:i] + [tok.eos_id] + ex.input_ids[i + 1 :],
        ex.labels[: i - 1] + [tok.eos_id] + ex.labels[i:],
        ex.prompt_len,
    )
    with pytest.raises(LabelAuditError, match="special tokens would be trained"):
        audit_labels([bad], tok)


# -- the entry point -----------------------------------------------------------------------------

EVAL_KEYS = {
    "test_rows",
    "compute",
    "pretrained",
    "pretrained_dialogue",
    "sft",
    "sft_minus_pretrained",
    "sft_minus_pretrained_dialogue",
    "best_baseline",
    "inter_reference_agreement",
    "ignoring_the_message_control",
    "examples",
    "test_unseen",
    "test_handwritten",
    "timings_seconds",
    "config",
    "dataset",
    "training",
    "max_abs_weight_change",
}
JOB_KEYS = {"specifics_recall", "invented_share", "intent_accuracy", "rubric_pass", "rubric_mean"}


def _assert_model_sections(on_disk: dict) -> None:
    """Each model's greedy and sampled metrics, the SFT-minus-pretrained diffs, the unseen test set."""
    for model in ("pretrained", "pretrained_dialogue", "sft"):
        g = on_disk[model]["greedy"]
        assert {
            "bleu",
            "bleu_ci",
            "rouge_l",
            "rouge_l_ci",
            "eos_stop_rate",
            "length_limit_rate",
            "mean_length",
            "job",
        } <= set(g)
        assert JOB_KEYS <= set(g["job"]) and all(g["job"][k]["ci"] for k in JOB_KEYS)
        assert JOB_KEYS <= set(on_disk[model]["sampled"]["job"])
        assert {"loss", "perplexity", "token_accuracy"} <= set(on_disk[model]["reference_loss"])
        assert "temperature" in on_disk[model]["sampled"]
    assert {"diff", "ci_low", "ci_high"} <= set(on_disk["sft_minus_pretrained"]["greedy"]["rouge_l"])
    assert {"diff", "ci_low", "ci_high"} <= set(on_disk["sft_minus_pretrained"]["greedy"]["job"]["rubric_pass"])
    assert on_disk["pretrained_dialogue"]["prompt_scheme"] == "dialogue"
    assert on_disk["test_unseen"]["test_rows"] == 10 and JOB_KEYS <= set(on_disk["test_unseen"]["sft"]["greedy"]["job"])


def _assert_generations(out: Path, on_disk: dict) -> None:
    """generations.jsonl: 20 generated records and the hand-written ones, every reply's stored
    judgement the one it earns."""
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    n_handwritten = on_disk["test_handwritten"]["test_rows"]
    assert n_handwritten == on_disk["dataset"]["test_handwritten"] >= 64
    assert len(records) == 20 + n_handwritten
    assert {r["split"] for r in records} == {"test", "test_unseen", "test_handwritten"}
    for key in ("pretrained_greedy", "pretrained_sampled", "pretrained_dialogue_greedy", "sft_greedy", "sft_sampled"):
        assert {"reply", "stopped_by", "rating", "failed_rules", "specifics_hit", "invented"} <= set(records[0][key])
    from part4_sft.job_metrics import judge_reply

    for r in records:  # every stored judgement is the one its reply earns
        row = {"context": r["context"], "intent": r["intent"], "slots": r["slots"]}
        assert judge_reply(r["sft_greedy"]["reply"], row)["rating"] == r["sft_greedy"]["rating"]
    n_hit = sum(len(r["sft_greedy"]["specifics_hit"]) for r in records if r["split"] == "test")
    assert on_disk["sft"]["greedy"]["job"]["specifics_restated"] == n_hit


def _assert_training_and_dataset(on_disk: dict) -> None:
    """The label audit, dataset counts and disjointness, per-epoch validation and the examples."""
    audit = on_disk["training"]["audit"]
    assert audit["violations"] == 0 and audit["eos_trained"] == audit["examples"] == 24
    assert on_disk["dataset"]["filter"]["high_quality"] == 24 and on_disk["dataset"]["test"] == 10
    assert on_disk["dataset"]["disjointness"]["test"]["heldout_values_in_train"] == 0
    assert len(on_disk["training"]["val_per_epoch"]) == 2
    assert len(on_disk["examples"]) <= 3 and on_disk["inter_reference_agreement"]["n"] == 10
    assert {e["outcome"] for e in on_disk["examples"]} <= {"sft_better", "pretrained_better", "tie"}


def _assert_compute(on_disk: dict, pretrained: Path) -> None:
    """The compute section: fine-tuning TFLOP from its tokens, the fixture's pretraining tokens, the total."""
    from part3_pretrain.flops import flops_per_token

    c, fpt = on_disk["compute"], flops_per_token(load_model(pretrained)[0].config)["total"]
    assert (
        c["fine_tuning_tflop"] == round(c["tokens"]["fine_tuning"] * fpt / 1e12, 3) and c["tokens"]["fine_tuning"] > 0
    )
    assert c["tokens"]["pretraining"] == 20 * 8 * 192  # the fixture's steps x batch x block
    assert c["evaluation_tflop"] > 0 and c["total_tflop"] == pytest.approx(
        c["pretraining_tflop"] + c["fine_tuning_tflop"] + c["evaluation_tflop"], abs=2e-3
    )


def test_end_to_end_writes_files_and_keys(pretrained, tmp_path):
    ev = sft.run(tiny_cfg(pretrained, tmp_path))
    for name in (
        "sft_model.pt",
        "loss_curve.png",
        "evaluation.json",
        "generations.jsonl",
        "sft_dataset.json",
        "metrics.jsonl",
    ):
        assert (tmp_path / name).is_file(), name
    on_disk = json.loads((tmp_path / "evaluation.json").read_text())
    assert EVAL_KEYS <= set(on_disk)
    _assert_model_sections(on_disk)
    _assert_generations(tmp_path, on_disk)
    _assert_training_and_dataset(on_disk)
    _assert_compute(on_disk, pretrained)
    tuned, _, ckpt = load_model(tmp_path / "sft_model.pt")  # a normal, weights_only checkpoint
    assert ckpt["prompt_scheme"] == "chat" and ev["max_abs_weight_change"] > 0


def _metrics_only(e: dict) -> dict:
    return {
        k: e[k]
        for k in ("pretrained", "sft", "sft_minus_pretrained", "inter_reference_agreement", "examples", "test_unseen")
        if k != "seconds"
    } | {"val": e["training"]["val_per_epoch"]}


def _strip_seconds(d):
    if isinstance(d, dict):
        return {k: _strip_seconds(v) for k, v in d.items() if k != "seconds"}
    return d


def test_same_seed_gives_identical_metrics(pretrained, tmp_path):
    a = sft.run(tiny_cfg(pretrained, tmp_path / "a", epochs=1))
    b = sft.run(tiny_cfg(pretrained, tmp_path / "b", epochs=1))
    assert _strip_seconds(_metrics_only(a)) == _strip_seconds(_metrics_only(b))


def test_own_data_jsonl_trains_and_evaluates(pretrained, tmp_path):
    rows = [
        {
            "instruction": f"Where is order #B{1000 + i}?",
            "output": f"Order #B{1000 + i} ships today.",
            "rating": 5 if i % 3 else 2,
        }
        for i in range(40)
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ev = sft.run(tiny_cfg(pretrained, tmp_path / "out", data=str(data), epochs=1))
    assert ev["dataset"]["source"] == "user" and ev["inter_reference_agreement"] is None
    job = ev["sft"]["greedy"]["job"]
    assert job["intent_accuracy"] is None and job["rubric_pass"] is None  # absent, not 0
    assert job["specifics_basis"] == "detected" and job["specifics_recall"] is not None
    assert ev["dataset"]["filter"]["kept"] == sum(r["rating"] >= 4 for r in rows)


def test_own_data_without_pretrained_gets_a_base_fitted_to_the_training_split(pretrained, tmp_path, monkeypatch):
    rows = [
        {"instruction": f"Where is parcel QX-{7000 + i}?", "output": f"Parcel QX-{7000 + i} ships today."}
        for i in range(40)
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    seen = []
    monkeypatch.setattr(sft, "ensure_data_base", lambda train, *a: seen.append(train) or {"path": str(pretrained)})
    cfg = tiny_cfg(sft.DEFAULT_PRETRAINED, tmp_path / "out", data=str(data), epochs=1)
    ev = sft.run(cfg)
    (train,) = seen  # asked once, with the training split: never a validation or test row
    held_out = {r["context"] for r in ev["examples"]} | {r["context"] for r in sft.load_splits(cfg.dataset).val}
    assert len(train) == ev["dataset"]["train"] and not {r["context"] for r in train} & held_out
    assert ev["pretrained_checkpoint"] == str(pretrained)


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "part4_sft.sft", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_option():
    res = _cli("--help")
    assert res.returncode == 0
    for name, _, _ in options(SFTConfig):  # nested parts flattened
        assert "--" + name.replace("_", "-") in res.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "-1"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--prompt-scheme", "nope"], "--prompt-scheme"),
        (["--top-p", "2"], "--top-p"),
        (["--copy-mix", "1"], "--copy-mix"),
        (["--copy-min", "0"], "--copy-min"),
        (["--pretrained", "missing.pt"], "--pretrained"),
        (["--data", "missing.jsonl"], "--data"),
    ],
)
def test_bad_options_fail_with_one_line(args, needle, tmp_path):
    res = _cli(*args, "--out-dir", str(tmp_path / "out"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and needle in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"context": "a", "response": "b"}\n{"context": "c", "response": \n', "mine.jsonl:2"),
        ('{"context": "a", "response": ""}\n', "mine.jsonl:1"),
        ('{"context": "a"}\n', "mine.jsonl"),  # no response field: detection names the file and the flags
        ('{"context": "a", "response": "b"}\n\xff\n', "not valid UTF-8"),
    ],
)
def test_malformed_own_data_fails_before_writing(pretrained, tmp_path, content, needle):
    data = tmp_path / "mine.jsonl"
    data.write_bytes(
        content.encode("utf-8", "surrogateescape")
        if "\xff" not in content
        else content.replace("\xff", "").encode() + b"\xff\n"
    )
    out = tmp_path / "out"
    res = _cli("--data", str(data), "--pretrained", str(pretrained), "--out-dir", str(out))
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and needle in res.stderr
    assert not out.exists()


def test_label_audit_counts_reach_evaluation_json(pretrained, tmp_path):
    cfg = replace(tiny_cfg(pretrained, tmp_path), epochs=1, prompt_scheme="qa")
    ev = sft.run(cfg)
    assert ev["training"]["audit"]["context_tokens_trained"] == 0
    assert ev["training"]["audit"]["pad_tokens_trained"] == 0


# -- reliability: bad values stop at the door, a failing run destroys nothing ------------------------


def _tiny_args(pretrained: Path, out: Path) -> list[str]:
    return [
        "--pretrained",
        str(pretrained),
        "--out-dir",
        str(out),
        "--dataset-path",
        str(out.parent / "d.json"),
        "--n-pairs",
        "120",
        "--n-high-quality",
        "24",
        "--n-val",
        "6",
        "--n-test",
        "10",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--max-new-tokens",
        "12",
        "--n-boot",
        "20",
        "--n-examples",
        "3",
        "--no-progress",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]


@pytest.fixture(scope="module")
def finished_run(pretrained, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A finished tiny run and the bytes of its outputs."""
    out = tmp_path_factory.mktemp("prev") / "out"
    assert sft.main(_tiny_args(pretrained, out)) == 0
    return out, _snapshot(out)


def _exit_code(args: list[str]) -> int:
    """``sft.main``'s exit code, whether it returns it or (a bad flag) exits with it."""
    try:
        return sft.main(args)
    except SystemExit as e:
        return e.code


def _snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in sft.OUTPUTS}


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--lr", "inf"], "--lr must be a finite number"),
        (["--min-quality", "nan"], "--min-quality must be a finite number"),
        (["--temperature", "nan"], "--temperature"),
        (["--max-new-tokens", "200"], "--max-new-tokens 200 leaves no room"),  # needs the checkpoint's context
        (["--lr", "1e9"], "is not finite"),  # passes the door, diverges in training
    ],
)
def test_failing_run_leaves_previous_outputs_byte_identical(finished_run, pretrained, extra, needle, capsys):
    out, before = finished_run
    capsys.readouterr()
    assert _exit_code(_tiny_args(pretrained, out) + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert _snapshot(out) == before


def test_resume_refuses_changed_settings_and_other_base(finished_run, pretrained, tmp_path, capsys):
    out, before = finished_run
    capsys.readouterr()
    assert _exit_code(_tiny_args(pretrained, out) + ["--resume", "--prompt-scheme", "qa"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume with changed settings: --prompt-scheme 'dialogue' -> 'qa'" in err
    other = pretrain_tiny_base(tmp_path / "other", vocab_size=300, block_size=192, max_steps=2, eval_every=0).parent
    args = _tiny_args(pretrained, out)
    args[args.index("--pretrained") + 1] = str(other / "model.pt")
    # the base path is part of the run's identity; with it allowed to differ, the weights still are checked
    with pytest.raises(CheckpointError, match="different base"):
        sft.check_against_base(
            compose(SFTConfig, pretrained=str(other / "model.pt"), out_dir=str(out), resume=True),
            *load_model(other / "model.pt")[:2],
            other / "model.pt",
            load_checkpoint(out / "sft_model.pt"),
        )
    assert _exit_code(args + ["--resume"]) == 2 and "--pretrained" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_resume_after_interrupt_keeps_the_whole_history(pretrained, tmp_path, monkeypatch):
    cfg = tiny_cfg(pretrained, tmp_path / "straight", n_boot=20)
    straight = sft.run(cfg)
    from part3_pretrain.trainer import Trainer

    real_step = Trainer.train_step

    def interrupt_at_step_4(self, *a, **k):
        if self.step == 4:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    broken = replace(cfg, out_dir=str(tmp_path / "broken"))
    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        sft.run(broken)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    stage = tmp_path / "broken" / sft.STAGE
    assert (stage / "sft_model.pt").is_file() and not (tmp_path / "broken" / "evaluation.json").exists()
    with open(stage / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')  # killed mid-write: a torn last line
    resumed = sft.run(replace(broken, resume=True))
    assert resumed["training"]["first_train_loss"] == straight["training"]["first_train_loss"]
    assert resumed["training"]["val_per_epoch"] == straight["training"]["val_per_epoch"]
    assert resumed["sft"]["greedy"]["rouge_l"] == straight["sft"]["greedy"]["rouge_l"]
    assert not stage.exists()


def test_responses_longer_than_the_context_are_one_clear_error(pretrained, tmp_path, capsys):
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"context": f"q{i}", "response": "word " * 400}) + "\n" for i in range(12)))
    assert _exit_code(_tiny_args(pretrained, tmp_path / "out") + ["--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "long.jsonl" in err and "context" in err and "--block-size" in err


def test_quality_filter_that_keeps_nothing_names_the_fix(pretrained, tmp_path, capsys):
    data = tmp_path / "labels.jsonl"
    data.write_text(
        "".join(json.dumps({"context": f"q{i}", "response": "ok.", "label": i % 2}) + "\n" for i in range(40))
    )
    assert _exit_code(_tiny_args(pretrained, tmp_path / "out") + ["--data", str(data), "--quality-field", "label"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kept 0 of 40 rows" in err and "use --min-quality 1" in err


def test_tiny_run_scores_fixed_replies_as_computed_by_hand(pretrained, tmp_path, monkeypatch):
    """The whole entry point, with the generator replaced by four fixed replies to one message: the
    job metrics in evaluation.json and generations.jsonl are the values worked out by hand."""
    from part4_sft import evaluate as ev
    from part4_sft import splits as ds
    from tests.test_job_metrics import COPIES_ALL, EMPTY, INVENTS, OFF_INTENT, ROW

    rows = [{**ROW, "context": ROW["context"] + " " * i, "reference": COPIES_ALL} for i in range(4)]
    real_load = ds.load_splits
    monkeypatch.setattr(
        sft, "load_splits", lambda cfg: replace(real_load(cfg), test=rows, test_unseen=[], test_handwritten=[])
    )
    fixed = [COPIES_ALL, INVENTS, OFF_INTENT, EMPTY]
    monkeypatch.setattr(
        ev,
        "generate_replies",
        lambda model, tok, scheme, contexts, settings, temperature, seed, batch_size, names=None: {
            "texts": fixed[: len(contexts)],
            "stopped_by_eos": [True, True, False, True][: len(contexts)],
            "lengths": [30, 28, 12, 0][: len(contexts)],
            "prompt_lengths": [20] * len(contexts),
        },
    )
    result = sft.run(tiny_cfg(pretrained, tmp_path, epochs=1))
    for model in ("pretrained", "pretrained_dialogue", "sft"):
        job = result[model]["greedy"]["job"]
        assert job["specifics_recall"]["value"] == pytest.approx(9 / 16)  # 4 + 1 + 4 + 0 of 4 x 4
        assert job["invented_share"]["value"] == pytest.approx(1 / 4) and job["invented_count"] == 1
        assert job["intent_accuracy"]["value"] == pytest.approx(2 / 4)
        assert job["rubric_pass"]["value"] == pytest.approx(1 / 4)
        assert result[model]["greedy"]["eos_stop_rate"] == pytest.approx(3 / 4)
    assert result["sft_minus_pretrained"]["greedy"]["job"]["rubric_pass"]["diff"] == 0
    records = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert [r["sft_greedy"]["invented"] for r in records] == [
        [],
        ["order_id:N8343", "product:maple running shoes"],
        [],
        [],
    ]
    assert [r["sft_greedy"]["stopped_by"] for r in records] == ["eos", "eos", "length", "eos"]


def test_a_base_that_saw_heldout_values_is_refused_for_synthetic_evaluation_only(pretrained, tmp_path):
    ckpt = torch.load(pretrained, weights_only=True)
    ckpt["corpus_heldout_leaks"] = ["Amara", "$34.50"]  # e.g. a base pretrained on the user's own text
    path = tmp_path / "leaky.pt"
    torch.save(ckpt, path)
    with pytest.raises(LeakError, match="held-out slot values"):
        sft.load_baseline(path)
    model, _, _ = sft.load_baseline(path, synthetic=False)  # own data: no held-out partition to protect
    assert model.config.n_layer == 1


def test_auto_precision_weighs_the_examples_not_the_context() -> None:
    """``--dtype auto``'s step size for fine-tuning is rows x the mean example length: a long
    context with short examples runs short steps (and, on a native-bf16 CPU, fp32 below
    ``AUTO_BF16_MIN_TOKENS``)."""
    from part4_sft.examples import Example, mean_step_tokens

    examples = [Example(input_ids=[1] * n, labels=[1] * n, prompt_len=1) for n in (100, 200, 300)]
    assert mean_step_tokens(examples, 1) == 200
    assert mean_step_tokens(examples, 4) == 800
    assert mean_step_tokens([], 1) == 0
