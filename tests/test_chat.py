"""Tests for part4_sft/chat.py and model_files.py: the chat answers as the evaluation does (same
decoder, same format), streams, keeps turns in the window, survives Ctrl-C, and loads any model
file the project writes with one-line errors for the rest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from part3_pretrain.checkpoint import CheckpointError
from part3_pretrain.cli import compose
from part4_sft import chat
from part4_sft.model_files import load_any


def _cfg(model: Path, **kw) -> chat.ChatConfig:
    return compose(chat.ChatConfig, model=str(model), **{"temperature": 0.0, **kw})


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    code = chat.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_one_shot_reply_is_the_evaluation_reply(tiny_sft, capsys) -> None:
    # temperature 0, the budget the run was evaluated with (auto): exactly the greedy replies of
    # generations.jsonl, for the SFT model and (--compare) the base in its own format
    rec = next(r for r in _records(tiny_sft) if r["split"] == "test")
    code, out, _ = _main(
        ["--model", str(tiny_sft), "--message", rec["context"], "--json", "--compare", "--temperature", "0"], capsys
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["model"] for d in lines] == ["pretrained", "sft"]
    base, sft = lines
    assert sft["reply"] == rec["sft_greedy"]["reply"] and sft["stopped"] == rec["sft_greedy"]["stopped_by"]
    assert sft["new_tokens"] == rec["sft_greedy"]["tokens"] <= 12
    assert base["reply"] == rec.get("pretrained_dialogue_greedy", rec["pretrained_greedy"])["reply"]


def test_stdin_lines_are_answered_one_by_one_in_fresh_conversations(tiny_sft) -> None:
    out = io.StringIO()
    count = chat.run(_cfg(tiny_sft, max_new_tokens=6), stdin=io.StringIO("hello\n\nwhere is my order?\n"), out=out)
    replies = out.getvalue().splitlines()
    assert count == 2 and len(replies) == 2
    again = io.StringIO()
    chat.run(_cfg(tiny_sft, max_new_tokens=6, message="where is my order?"), out=again)
    assert again.getvalue().splitlines() == replies[1:]  # the first message did not leak into the second


def test_streamed_text_is_the_reply(tiny_sft) -> None:
    session = chat.make_session(_cfg(tiny_sft, temperature=1.0, max_new_tokens=10))
    out = io.StringIO()
    [(_, reply)] = session.ask("my parcel never came", out)
    assert out.getvalue().startswith(reply.text) and reply.new_tokens <= 10
    assert session.speakers[0].turns[-1] == {"role": "assistant", "content": reply.text}


def test_terminal_commands_change_settings_and_reset(tiny_sft) -> None:
    session = chat.make_session(_cfg(tiny_sft, max_new_tokens=5))
    assert session.settings.ground_values is True and session.settings.ground_names is True  # the evaluation's
    assert session.speakers[0].names is not None and "Thanks" in session.speakers[0].names.initial  # stored words
    lines = iter(
        ["hello there", "/temp 0.5", "/top_k 3", "/top_p 2", "/max 4", "/copy 0.3", "/copy 1", "/settings"]
        + ["/ground off", "/ground maybe", "/names off", "/reset", "/bogus", "/quit"]
    )
    out = io.StringIO()
    chat.interactive(session, read=lambda prompt: next(lines), out=out)
    text = out.getvalue()
    s = session.settings
    assert (s.temperature, s.top_k, s.top_p, s.max_new_tokens) == (0.5, 3, 1.0, 4)  # top_p 2 refused
    assert s.copy_mix == 0.3 and "/copy in [0, 1)" in text  # /copy 1 refused
    assert s.ground_values is False and "'maybe' is not on or off" in text  # on by default (the option)
    assert s.ground_names is False
    assert "error: top_p must be in (0, 1]" in text and "conversation reset" in text and "/reset" in text
    assert session.speakers[0].turns == []


def test_a_long_conversation_drops_the_oldest_turns_and_says_so(tiny_sft) -> None:
    session = chat.make_session(_cfg(tiny_sft, max_new_tokens=100))  # the window is 192 tokens
    out = io.StringIO()
    for i in range(6):
        session.ask(f"message number {i}: my order #A{i}234 has not arrived and I am getting worried", out)
    assert "dropped the oldest" in out.getvalue()
    speaker = session.speakers[0]
    assert speaker.turns[-2]["content"].startswith("message number 5") and len(speaker.turns) < 12


class _InterruptAfter(io.StringIO):
    """An output that raises Ctrl-C once, on the n-th write."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def write(self, s: str) -> int:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return super().write(s)


def test_ctrl_c_stops_the_reply_not_the_chat(tiny_sft) -> None:
    session = chat.make_session(_cfg(tiny_sft, temperature=1.0, max_new_tokens=12))
    out = _InterruptAfter(3)
    [(_, reply)] = session.ask("hello", out)
    assert reply.stopped == "interrupted" and "(stopped)" in out.getvalue()
    [(_, after)] = session.ask("are you there?", io.StringIO())
    assert after.stopped in ("eos", "length")


def test_model_files_load_base_and_sft_with_their_formats(tiny_sft, pretrained) -> None:
    sft = load_any(tiny_sft)
    tuned_in = json.loads((tiny_sft / "evaluation.json").read_text())["config"]["prompt_scheme"]
    assert (sft.kind, sft.scheme, sft.base_path) == ("sft", tuned_in, pretrained)
    base = load_any(pretrained)
    assert (base.kind, base.scheme, base.base_path) == ("pretrained", "dialogue", None)
    assert not torch.equal(sft.model.lm_head.weight, base.model.lm_head.weight)


def test_wrong_files_are_one_line_errors(tiny_sft, pretrained, tmp_path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    for args, expected in (
        (["--model", str(text)], "notes.txt: "),
        (["--model", str(tmp_path / "nope.pt")], "nope.pt: no such model file"),
        (["--model", str(tmp_path)], "no model file in this directory"),
        (["--model", str(pretrained), "--compare"], "is a pretrained base itself"),
    ):
        code, out, err = _main([*args, "--message", "hi"], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1 and expected in err, err
    with pytest.raises(CheckpointError, match="needs the checkpoint it adapts"):
        adapter = {"format": "retail-sft/lora-v1", "lora_config": {"r": 2, "alpha": 4.0}, "adapter": {}}
        torch.save(adapter, tmp_path / "adapter.pt")
        load_any(tmp_path / "adapter.pt")
