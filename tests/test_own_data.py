"""The user's own support data: conversations trained on every reply, overlap handled, nothing dropped
in silence, ``--max-new-tokens auto``, and the realistic fixture end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from part3_pretrain.checkpoint import load_model
from part3_pretrain.cli import compose
from part3_pretrain.model import IGNORE_INDEX
from part4_sft import fit, sft
from part4_sft.configs import EvalConfig
from part4_sft.contexts import context_key, row_key
from part4_sft.evaluate import cut_prompts, encode_prompts, reference_loss
from part4_sft.examples import (
    Example,
    LabelAuditError,
    audit_labels,
    build_conversation_example,
    build_example,
    build_examples,
)
from part4_sft.metrics import rouge_l
from part4_sft.prompts import SCHEMES, get_scheme
from part4_sft.sft import SFTConfig
from part4_sft.splits import load_splits
from tests.tools import updated

FIXTURE = Path(__file__).parent / "fixtures" / "support_mixed.jsonl"

U1, A1 = "Where is order #A1234?", "It ships today."
U2, A2 = "And can I change the address?", "Yes, until it ships."
TWO_TURNS = [
    {"role": "user", "content": U1},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": U2},
    {"role": "assistant", "content": A2},
]


@pytest.fixture(scope="module")
def tok(pretrained):
    return load_model(pretrained)[1]


def _pieces(tok, scheme):
    """Prompt and reply ids of TWO_TURNS's four messages, encoded one by one."""
    return (
        scheme.encode_prompt(tok, U1),
        tok.encode(scheme.response(A1)) + [tok.eos_id],
        scheme.encode_prompt(tok, U2),
        tok.encode(scheme.response(A2)) + [tok.eos_id],
    )


# -- conversations as examples ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_two_turn_conversation_trains_exactly_both_replies_and_both_eos(tok, name):
    scheme = get_scheme(name)
    p1, r1, p2, r2 = _pieces(tok, scheme)
    ex = build_conversation_example(tok, scheme, TWO_TURNS, max_len=190)
    ids = p1 + r1 + p2 + r2
    assert ex.input_ids == ids[:-1]
    # label t is input t+1: the first reply's tokens are predicted from the prompt's last token on,
    # the second user turn (role tokens included) is never a label
    assert ex.labels == [IGNORE_INDEX] * (len(p1) - 1) + r1 + [IGNORE_INDEX] * len(p2) + r2
    assert ex.spans == ((len(p1) - 1, len(p1) - 1 + len(r1)), (len(p1 + r1 + p2) - 1, len(ids) - 1))
    trained = [t for t in ex.labels if t != IGNORE_INDEX]
    assert trained == r1 + r2 and trained.count(tok.eos_id) == 2
    audit = audit_labels([ex], tok)
    assert audit["eos_trained"] == audit["replies_trained"] == 2 and audit["context_tokens_trained"] == 0


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_a_one_turn_conversation_is_exactly_the_pair(tok, name):
    scheme = get_scheme(name)
    pair = build_example(tok, scheme, U1, A1, max_len=190)
    chat = build_conversation_example(tok, scheme, TWO_TURNS[:2], max_len=190)
    assert (chat.input_ids, chat.labels, chat.prompt_len, chat.spans) == (
        pair.input_ids,
        pair.labels,
        pair.prompt_len,
        pair.spans,
    )
    cut_pair, cut_chat = (
        build_example(tok, scheme, U1 * 20, A1, 40),
        build_conversation_example(tok, scheme, [{"role": "user", "content": U1 * 20}, TWO_TURNS[1]], 40),
    )
    assert (cut_chat.input_ids, cut_chat.labels, cut_chat.context_truncated) == (
        cut_pair.input_ids,
        cut_pair.labels,
        True,
    )


def test_a_system_message_is_plain_text_before_the_first_turn(tok):
    system = {"role": "system", "content": "Be kind."}
    dialogue = get_scheme("dialogue")
    ex = build_conversation_example(tok, dialogue, [system, *TWO_TURNS], max_len=190)
    assert tok.decode(ex.input_ids).startswith("System: Be kind.\nCustomer: " + U1 + "\nAgent: " + A1)
    chat = get_scheme("chat")
    ex = build_conversation_example(tok, chat, [system, *TWO_TURNS], max_len=190)
    head = tok.encode("Be kind.")
    assert ex.input_ids[: len(head) + 1] == head + [tok.user_id]
    assert [t for t in ex.labels if t != IGNORE_INDEX] == _pieces(tok, chat)[1] + _pieces(tok, chat)[3]


def test_a_long_conversation_loses_whole_oldest_turns_never_part_of_a_reply(tok):
    scheme = get_scheme("dialogue")
    p1, r1, p2, r2 = _pieces(tok, scheme)
    system = [{"role": "system", "content": "Be kind."}]
    turns = system + TWO_TURNS + [{"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "Welcome."}]
    p3, r3 = scheme.encode_prompt(tok, "Thanks!"), scheme.encode_response(tok, "Welcome.")
    sys_ids = tok.encode("System: Be kind.\n")
    fits = len(sys_ids + p2 + r2 + p3 + r3) - 1  # the first exchange must go, the system message stays
    ex = build_conversation_example(tok, scheme, turns, max_len=fits)
    assert ex.input_ids == (sys_ids + p2 + r2 + p3 + r3)[:-1] and ex.turns_dropped == 2 and ex.context_truncated
    assert [t for t in ex.labels if t != IGNORE_INDEX] == r2 + r3
    ex = build_conversation_example(tok, scheme, turns, max_len=fits - 1)  # every older exchange before it
    assert ex.input_ids == (sys_ids + p3 + r3)[:-1] and ex.turns_dropped == 4
    ex = build_conversation_example(tok, scheme, turns, max_len=len(p3 + r3) - 1)  # then the system message
    assert ex.input_ids == (p3 + r3)[:-1] and ex.turns_dropped == 5
    ex = build_conversation_example(tok, scheme, turns, max_len=len(p3 + r3) - 2)  # then the last prompt's left
    assert ex.input_ids == (p3[1:] + r3)[:-1] and ex.turns_dropped == 5
    assert build_conversation_example(tok, scheme, turns, max_len=len(r3)).input_ids == (p3[-1:] + r3)[:-1]
    assert build_conversation_example(tok, scheme, turns, max_len=len(r3) - 1) is None  # the reply is never cut
    _, counts = build_examples(tok, scheme, [{"context": "Thanks!", "response": "Welcome.", "turns": turns}], fits)
    assert counts["turns_dropped"] == 2 and counts["context_truncated"] == 1 and counts["examples"] == 1


def _tampered(ex: Example, labels=None, spans=None) -> Example:
    return Example(ex.input_ids, ex.labels if labels is None else labels, ex.prompt_len, spans=spans or ex.spans)


@pytest.mark.parametrize("tamper", ["token_in_first_reply", "first_eos", "user_turn_trained", "span_missing", "order"])
def test_audit_catches_a_corrupted_span(tok, tamper):
    ex = build_conversation_example(tok, get_scheme("dialogue"), TWO_TURNS, max_len=190)
    (s1, e1), (s2, e2) = ex.spans
    labels = list(ex.labels)
    spans = None
    if tamper == "token_in_first_reply":
        labels[s1 + 1] = labels[s1 + 2]
    elif tamper == "first_eos":
        labels[e1 - 1] = IGNORE_INDEX
    elif tamper == "user_turn_trained":
        labels[e1] = ex.input_ids[e1 + 1]
    elif tamper == "span_missing":
        spans = ((s2, e2),)  # the first reply is still labelled: trained outside every span
    else:
        spans = ((s2, e2), (s1, e1))
    with pytest.raises(LabelAuditError):
        audit_labels([_tampered(ex, labels, spans)], tok)


# -- conversations in evaluation and in the splits ------------------------------------------------


def test_generation_prompt_of_a_chat_test_row_holds_the_earlier_turns(tok):
    scheme = get_scheme("dialogue")
    p1, r1, p2, _ = _pieces(tok, scheme)
    row = {"context": U2, "reference": A2, "turns": TWO_TURNS}
    (ids,) = encode_prompts(tok, scheme, [row], 160)
    assert ids == p1 + r1 + p2
    text = tok.decode(ids)
    assert U1 in text and A1 in text and text.endswith(U2 + "\nAgent:") and A2 not in text
    assert encode_prompts(tok, scheme, [row], len(p2) + 3) == [p2]  # whole oldest turns go first
    assert cut_prompts(tok, scheme, [row], len(p2) + 3) == 1 and cut_prompts(tok, scheme, [row], 160) == 0
    assert encode_prompts(tok, scheme, [U1, {"context": U1}], 160) == [p1, p1]  # bare contexts and pair rows


def test_reference_loss_of_a_conversation_scores_its_final_reply_only(pretrained, tok):
    scheme = get_scheme("dialogue")
    examples, _ = build_examples(tok, scheme, [{"context": U2, "response": A2, "turns": TWO_TURNS}], 190, True)
    assert [t for t in examples[0].labels if t != IGNORE_INDEX] == _pieces(tok, scheme)[3]
    model = load_model(pretrained)[0]
    result = reference_loss(model, tok, scheme, [{"context": U2, "reference": A2, "turns": TWO_TURNS}])
    assert result["tokens"] == len(examples[0].input_ids)


def test_row_key_of_a_conversation_is_its_text_before_the_final_reply():
    pair = {"context": U1, "response": A1}
    assert row_key({**pair, "turns": TWO_TURNS[:2]}) == row_key(pair) == context_key(U1)
    assert row_key({"context": U2, "response": A2, "turns": TWO_TURNS}) == context_key(f"{U1}\n{A1}\n{U2}")
    assert row_key({"context": U2, "response": A2, "turns": TWO_TURNS}) != row_key({"context": U2})


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _overlapping_files(tmp_path: Path) -> tuple[Path, Path]:
    train = [
        {"query": f"Where is parcel #{1000 + i}?", "response": f"Parcel #{1000 + i} ships today."} for i in range(20)
    ]
    test = [{"query": f"Refund for #{2000 + i}?", "response": "Issued."} for i in range(5)]
    test.insert(2, {"query": " where is PARCEL #1003 ", "response": "Soon."})  # line 3: a training message
    test.append(
        {"messages": [{"role": "user", "content": "Where is parcel #1004?"}, {"role": "assistant", "content": "x"}]}
    )
    return _write_jsonl(tmp_path / "train.jsonl", train), _write_jsonl(tmp_path / "test.jsonl", test)


def test_test_overlap_is_refused_in_one_line_naming_the_flag(pretrained, tmp_path, capsys):
    train, test = _overlapping_files(tmp_path)
    out = tmp_path / "out"
    args = ["--pretrained", str(pretrained), "--out-dir", str(out), "--data", str(train), "--test-data", str(test)]
    assert sft.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{test}:3:" in err and "2 of 7 test rows" in err and "--drop-test-overlap" in err
    assert not out.exists()


def test_drop_test_overlap_drops_and_says_how_many(tmp_path, capsys):
    train, test = _overlapping_files(tmp_path)
    cfg = compose(SFTConfig, data=str(train), test_data=str(test), drop_test_overlap=True)
    splits = load_splits(cfg.dataset)
    assert "dropped 2 of 7 test rows whose message also occurs in the training data (--drop-test-overlap)" in (
        capsys.readouterr().out
    )
    assert len(splits.test) == 5 and splits.summary["test_overlap_dropped"] == 2
    assert "--drop-test-overlap applies to --data" in "; ".join(
        compose(SFTConfig, drop_test_overlap=True).dataset.problems()
    )


# -- --max-new-tokens auto and what does not fit --------------------------------------------------


def test_max_new_tokens_accepts_auto_or_a_positive_integer():
    assert EvalConfig().max_new_tokens == "auto" and EvalConfig(max_new_tokens="12").max_new_tokens == 12
    assert EvalConfig().problems() == [] and EvalConfig(max_new_tokens=5).resolved(90).new_tokens() == 5
    assert EvalConfig().resolved(90).new_tokens() == 90
    for bad in ("abc", "0", "-3", "1.5"):
        assert "--max-new-tokens must be an integer >= 1 or auto" in EvalConfig(max_new_tokens=bad).problems()[0]
    with pytest.raises(ValueError, match="not resolved"):
        EvalConfig().new_tokens()


@pytest.mark.parametrize("bad,shown", [("abc", "'abc'"), ("0", "0")])
def test_bad_max_new_tokens_is_one_line_before_anything_is_written(tmp_path, capsys, bad, shown):
    with pytest.raises(SystemExit) as info:
        sft.main(["--max-new-tokens", bad, "--out-dir", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--max-new-tokens must be an integer >= 1 or auto (got {shown})" in err
    assert not (tmp_path / "out").exists()


def test_auto_resolves_to_90_for_generated_data_and_the_p99_reply_for_yours():
    auto = EvalConfig()
    assert fit.resolve_max_new_tokens(auto, True, [10, 500], block=160)["value"] == 90
    assert fit.resolve_max_new_tokens(auto, True, [], block=100)["value"] == 68  # a prompt keeps 32 tokens
    lengths = [10] * 98 + [50, 60]  # replies + EOS: the 99th of 100 is 50
    assert fit.resolve_max_new_tokens(auto, False, lengths, block=512)["value"] == 50
    assert fit.resolve_max_new_tokens(auto, False, lengths, block=64) == {
        "setting": "auto",
        "value": 32,
        "why": "auto: the 99th percentile of the 100 training replies, 49 tokens, + EOS, capped at 32 to leave "
        "a prompt 32 of the base's 64-token context",
    }
    assert fit.resolve_max_new_tokens(EvalConfig(max_new_tokens=7), False, lengths, 512)["value"] == 7
    assert fit.block_size_hint([300, 20]) == 384  # longest reply + EOS + 64, rounded up to 32


def test_drops_and_cuts_past_one_percent_are_warned_with_the_fix(capsys):
    cfg = compose(SFTConfig, data=str(FIXTURE), batch_size=1)
    counts = {"pairs": 100, "examples": 97, "dropped_response_too_long": 3, "context_truncated": 1, "turns_dropped": 0}
    sft.check_examples(cfg, counts, 192, 1, 384, 900)
    (line,) = capsys.readouterr().out.splitlines()  # 1 cut of 100 is not past 1%
    assert line.startswith("warning: 3 of 100 training rows dropped") and "192-token context" in line
    # without --pretrained the base was pretrained for the data already: a longer one is the fix
    assert line.endswith(
        "pretrain a base with --block-size 384 (python -m part3_pretrain.pretrain) and pass it as --pretrained"
    )
    cut = {**counts, "dropped_response_too_long": 0, "context_truncated": 2, "turns_dropped": 3}
    sft.check_examples(updated(cfg, pretrained=str(FIXTURE)), cut, 192, 1, 384, 900)
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("warning: 2 of 100 training rows had their context cut") and "3 whole messages" in line
    assert line.endswith(  # the longest row whole, not the longest reply, sizes the fix for a cut
        "run without --pretrained so a base with a longer context is pretrained for your data, "
        "or pretrain one with --block-size 928"
    )


def test_experiment_runs_resolve_auto_to_90(monkeypatch):
    from part4_sft.experiment import evaluation as exp_eval
    from part4_sft.experiment.runs import RunSettings

    assert RunSettings().evaluation.max_new_tokens == 90  # the stored identity of existing runs
    seen = []
    monkeypatch.setattr(exp_eval.ev, "generate_replies", lambda *a: seen.append(a[4].new_tokens()))
    exp_eval.greedy_replies(torch.nn.Linear(1, 1), None, "qa", [], compose(RunSettings, max_new_tokens="auto"), 1)
    assert seen == [90]


# -- the realistic fixture, end to end ---------------------------------------------------------------


def test_bad_conversation_in_own_data_is_one_line_and_nothing_written(pretrained, tmp_path, capsys):
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()[:5]]
    rows.append({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]})
    data = _write_jsonl(tmp_path / "mine.jsonl", rows)
    out = tmp_path / "out"
    assert sft.main(["--pretrained", str(pretrained), "--out-dir", str(out), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mine.jsonl:6: message 2 has role 'bot'; use one of system, user, assistant" in err
    assert not out.exists()


def _fine_tune_fixture(base: Path, out: Path, batch_size: int, capsys, *extra: str) -> tuple[dict, str]:
    """One epoch on the fixture from ``base`` through the CLI: (evaluation.json, what was printed)."""
    args = ["--pretrained", str(base), "--out-dir", str(out), "--data", str(FIXTURE), "--epochs", "1", *extra]
    args += ["--batch-size", str(batch_size), "--n-boot", "20", "--n-examples", "2", "--no-progress"]
    assert sft.main([*args, "--device", "cpu", "--dtype", "float32"]) == 0
    return json.loads((out / "evaluation.json").read_text()), capsys.readouterr().out


def test_mixed_pairs_and_conversations_train_and_evaluate_end_to_end(pretrained, tmp_path, capsys):
    out = tmp_path / "out"
    e, printed = _fine_tune_fixture(pretrained, out, 1, capsys)
    d = e["dataset"]
    assert (d["source"], d["filter"]["total"], d["conversations"], d["test_overlap_dropped"]) == ("user", 62, 8, 0)
    assert d["train"] + d["val"] + d["test"] == 62
    # the fixture's long answers do not fit the tiny base's 192-token context: said, counted, kept
    new_tokens = e["data_fit"]["max_new_tokens"]
    assert (
        new_tokens["setting"] == "auto" and new_tokens["value"] == 192 - 32 and "99th percentile" in new_tokens["why"]
    )
    assert f"max new tokens: {new_tokens['value']} (" in printed
    train = e["data_fit"]["train"]
    assert train == {k: e["training"][k] for k in fit.TRAIN_DROPS} and train["pairs"] == d["train"]
    assert train["examples"] + train["dropped_response_too_long"] == train["pairs"] and train["examples"] >= 1
    assert f"warning: {train['dropped_response_too_long']} of {train['pairs']} training rows dropped" in printed
    assert e["data_fit"]["test_prompts_cut"]["test"] >= 1 and "test prompts cut" in printed
    hint = e["data_fit"]["block_size_hint"]
    assert hint % 32 == 0 and f"--block-size {hint}" in printed
    audit = e["training"]["audit"]
    assert audit["violations"] == 0 and audit["examples"] == train["examples"]
    assert audit["eos_trained"] == audit["replies_trained"] >= audit["examples"]
    assert e["sft"]["greedy"]["job"]["rubric_pass"] is None and e["test_rows"] == d["test"]
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == d["test"]
    for r in records:
        if "conversation" in r:
            assert r["conversation"][-1]["role"] == "user" and r["conversation"][-1]["content"] == r["context"]
    _assert_yardsticks(e, records, printed)


def _assert_yardsticks(e: dict, records: list[dict], printed: str) -> None:
    """The yardsticks are scored like the model on the same rows, paired with it, built from the
    training split only, and printed beside it."""
    train = load_splits(compose(SFTConfig, data=str(FIXTURE)).dataset).train
    answers = {r["response"] for r in train}
    y = e["yardsticks"]
    assert y["built_from"]["train_rows"] == len(train) == e["dataset"]["train"]
    refs = [r["references"] for r in records]
    sft_rouge = rouge_l(refs, [r["sft_greedy"]["reply"] for r in records])
    for name in ("nearest_answer", "fixed_answer"):
        replies = [r["yardsticks"][name] for r in records]
        assert set(replies) <= answers  # never a test answer: only training answers are looked up
        assert y[name]["greedy"]["rouge_l"] == pytest.approx(float(np.mean(rouge_l(refs, replies))))
        assert y[name]["greedy"]["eos_stop_rate"] == 1.0 and y[name]["greedy"]["job"]["loop_share"] is not None
        d = y[f"sft_minus_{name}"]["greedy"]["rouge_l"]
        assert d["diff"] == pytest.approx(float(np.mean(sft_rouge) - np.mean(rouge_l(refs, replies))))
        assert d["ci_low"] <= d["diff"] <= d["ci_high"] and y[f"sft_minus_{name}"]["greedy"]["job"]["loop_share"]
    assert len({r["yardsticks"]["fixed_answer"] for r in records}) == 1
    v = y["verdict"]
    better = max(("nearest_answer", "fixed_answer"), key=lambda n: y[n]["greedy"]["rouge_l"])
    assert (
        v["metric"] == "rouge_l"
        and v["better_yardstick"] == better
        and v["sft_beats_better_yardstick"] == (v["ci_low"] > 0)
    )
    assert "nearest training answer" in printed and "best fixed answer" in printed
    assert "SFT beats the better yardstick" in printed


def test_retrieval_in_the_prompt_trains_and_evaluates_with_the_nearest_training_exchange(long_base, tmp_path, capsys):
    e, printed = _fine_tune_fixture(long_base, tmp_path / "out", 4, capsys, "--retrieve", "1")
    r = e["data_fit"]["retrieval"]
    assert r["k"] == 1 and r["train_rows"] == e["dataset"]["train"] and 0 < r["train_all_kept"] <= r["train_rows"]
    said = f"retrieval: the 1 most similar training exchanges before each message; all kept in {r['train_all_kept']}"
    assert said in printed
    train = {r["context"]: r["response"] for r in load_splits(compose(SFTConfig, data=str(FIXTURE)).dataset).train}
    records = [json.loads(line) for line in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    for rec in records:  # each test row retrieved one training exchange: its message and its answer
        (user, agent) = rec["retrieved"]
        assert train[user["content"]] == agent["content"] and rec["context"] not in train
    assert e["config"]["retrieve"] == 1 and e["training"]["audit"]["violations"] == 0
    assert compose(SFTConfig, retrieve=1).problems() == [
        "--retrieve applies to --data (the generated data's 160-token context has no room for it)"
    ]


def test_long_answers_fit_a_base_with_a_long_context_and_every_reply_trains(long_base, tmp_path, capsys):
    e, printed = _fine_tune_fixture(long_base, tmp_path / "out", 4, capsys)
    train = e["data_fit"]["train"]
    assert train["dropped_response_too_long"] == 0 and train["examples"] == train["pairs"] == e["dataset"]["train"]
    assert "training rows dropped" not in printed  # no reply lost, so nothing said about it
    audit = e["training"]["audit"]
    assert audit["violations"] == 0 and audit["eos_trained"] == audit["replies_trained"] > audit["examples"]
    assert e["data_fit"]["max_new_tokens"]["value"] > 200  # the fixture's long replies, not 90
    assert e["sft"]["greedy"]["eos_stop_rate"] is not None and e["test_rows"] == e["dataset"]["test"]
