"""Tests for part3_pretrain.generate: a scripted mock model for PAD/EOS/length handling, a tiny
real GPT for cache-vs-recompute parity, padding invariance and seeding, and sample_next units."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from part3_pretrain.generate import GenerationResult, allowed_repeats, generate, repeat_bans, sample_next
from part3_pretrain.model import GPT, GPTConfig
from part3_pretrain.prompt_copy import CopyBlend
from part3_pretrain.value_grounding import ValueGrounding

PAD, EOS, FILLER, V = 0, 1, 2, 16


class ScriptedModel(nn.Module):
    """Mock LM: a row whose real tokens are ``prompt + n generated`` scores ``script[n]`` next.

    PAD always has the largest logit (so only banning it keeps it out); past the end of the script
    the favourite is FILLER. Takes no cache, so it is only usable with ``use_cache=False``.
    """

    def __init__(self, scripts: dict[tuple[int, ...], list[int]], block_size: int | None = None) -> None:
        super().__init__()
        self.scripts = scripts
        self.dummy = nn.Parameter(torch.zeros(1))  # gives generate a device
        self.training_seen: list[bool] = []
        if block_size is not None:
            self.config = SimpleNamespace(block_size=block_size)

    def _favourite(self, real: list[int]) -> int:
        for prompt, script in self.scripts.items():
            if tuple(real[: len(prompt)]) == prompt:
                n = len(real) - len(prompt)
                return script[n] if n < len(script) else FILLER
        return FILLER

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.training_seen.append(self.training)
        B, T = idx.shape
        logits = torch.zeros(B, T, V)
        logits[:, :, PAD] = 10.0
        for b in range(B):
            real = idx[b][attention_mask[b].bool()].tolist()
            logits[b, -1, self._favourite(real)] = 5.0
        return logits


def _mock_generate(model: nn.Module, prompts: Sequence[Sequence[int]], **kw) -> list[GenerationResult]:
    kw.setdefault("temperature", 0.0)
    return generate(model, prompts, eos_id=EOS, pad_id=PAD, use_cache=False, **kw)


# ------------------------------------------------------------------------------ mock model


def test_greedy_follows_script_never_pad_and_stops_at_eos() -> None:
    model = ScriptedModel({(7,): [3, 4, EOS, 9], (8, 9, 9): [5, 6, 5, 6, 5, 6]})
    out = _mock_generate(model, [[7], [8, 9, 9]], max_new_tokens=4)
    assert out[0] == GenerationResult([3, 4], True)  # EOS excluded, later tokens ignored
    assert out[1] == GenerationResult([5, 6, 5, 6], False)  # budget spent, no EOS


def test_temperature_sampling_never_picks_pad() -> None:
    model = ScriptedModel({(7,): [3] * 20})
    out = _mock_generate(model, [[7]] * 16, max_new_tokens=20, temperature=3.0)
    toks = [t for r in out for t in r.tokens]
    assert toks and PAD not in toks
    assert all(len(r.tokens) <= 20 for r in out)


def test_max_new_tokens_and_zero() -> None:
    model = ScriptedModel({})
    assert _mock_generate(model, [[7]], max_new_tokens=5) == [GenerationResult([FILLER] * 5, False)]
    assert _mock_generate(model, [[7]], max_new_tokens=0) == [GenerationResult([], False)]


def test_block_size_stops_without_eos() -> None:
    model = ScriptedModel({}, block_size=6)
    out = _mock_generate(model, [[7, 7, 7, 7]], max_new_tokens=10)
    assert out == [GenerationResult([FILLER] * 2, False)]  # prompt + new tokens fill the block


def test_prompt_validation_and_empty_list() -> None:
    model = ScriptedModel({}, block_size=6)
    assert _mock_generate(model, []) == []
    with pytest.raises(ValueError, match="prompt 1 has length 6"):
        _mock_generate(model, [[7], [7] * 6])
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        _mock_generate(model, [[]])
    with pytest.raises(ValueError, match="top_p"):
        _mock_generate(model, [[7]], top_p=0.0)


def test_chunks_equal_one_batch_and_mode_restored() -> None:
    model = ScriptedModel({(7,): [3, EOS], (8,): [4, 4, 4], (9, 9): [EOS]})
    prompts = [[7], [8], [9, 9], [8]]
    model.train()
    assert _mock_generate(model, prompts, batch_size=3) == _mock_generate(model, prompts)
    assert model.training and model.training_seen and not any(model.training_seen)


def test_no_repeat_ngram_breaks_a_loop() -> None:
    # The script loops 5 6 7 5 6 7 ...; with n = 3 the second "5 6 7" is banned at its 7, and the
    # mock's next best token (all others tie at 0, PAD is banned) is id 1, EOS: the reply stops.
    model = ScriptedModel({(1, 2): [5, 6, 7] * 3})
    assert _mock_generate(model, [[1, 2]], max_new_tokens=9)[0].tokens == [5, 6, 7] * 3
    fixed = _mock_generate(model, [[1, 2]], max_new_tokens=9, no_repeat_ngram=3)[0].tokens
    assert fixed == [5, 6, 7, 5, 6]
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        _mock_generate(model, [[5]], no_repeat_ngram=-1)


def test_repeat_bans_units() -> None:
    assert repeat_bans([1, 2, 3, 1, 2], 3) == [3]
    assert repeat_bans([1, 2, 3, 1, 2], 2) == [3]  # the last token 2 was followed by 3
    assert repeat_bans([1, 2, 1, 4, 1], 2) == [2, 4]
    assert repeat_bans([1, 2], 3) == [] and repeat_bans([1, 2, 1], 0) == []
    assert repeat_bans([4, 4, 2], 1) == [2, 4]
    assert repeat_bans([1, 2, 3, 1, 2], 3, allowed={(1, 2, 3)}) == []  # the prompt says "1 2 3"


def test_repeat_bans_stop_a_third_back_to_back_copy_of_a_short_ngram() -> None:
    """Repeats shorter than n: "still still still" and "a b a b a b" pass the n-gram rule (no
    n-gram occurs twice yet) and are banned at their third copy, unless the prompt holds them."""
    assert repeat_bans([5, 7, 7], 4) == [7]  # a third "7"
    assert repeat_bans([5, 7], 4) == []  # a second one is fine ("no no")
    assert repeat_bans([1, 2, 1, 2, 1], 4) == [2]  # a third "1 2"
    assert repeat_bans([1, 2, 3, 1, 2, 3, 1, 2], 4) == [3]  # a third "1 2 3"
    assert repeat_bans([9, 1, 2, 3, 1, 2], 3) == [3]  # k = n: the n-gram rule already bans it
    assert repeat_bans([0, 0], 4, allowed=allowed_repeats([11, 0, 0, 0], 4)) == []  # "A1000" in the message
    assert repeat_bans([0, 0], 4, allowed=allowed_repeats([11, 0, 0], 4)) == [0]
    assert allowed_repeats([1, 2, 3], 0) == set()


def test_repeat_bans_read_through_punctuation() -> None:
    """ "the order number, and the order number and": with "," (id 9) skipped the 4-gram
    "the order number and" repeats, so "and" (id 4) is banned; punctuation itself never is."""
    the, order, number, and_, comma = 1, 2, 3, 4, 9
    reply = [the, order, number, comma, and_, the, order, number]
    assert repeat_bans(reply, 4) == [comma]  # token by token only the comma repeats a 4-gram
    assert repeat_bans(reply, 4, skip={comma}) == [and_]
    assert repeat_bans(reply + [comma], 4, skip={comma}) == [and_]
    prompt = allowed_repeats([the, order, number, and_], 4, skip={comma})
    assert repeat_bans(reply, 4, allowed=prompt, skip={comma}) == []  # the message says it
    assert repeat_bans([7, comma, 7, comma], 4, skip={comma}) == [7]  # "no, no, no"


def test_no_repeat_ngram_lets_a_reply_restate_the_prompt_twice() -> None:
    # "7 8 9" is in the prompt: the reply may say it twice; after another prompt it may not
    model = ScriptedModel({(7, 8, 9): [7, 8, 9, 3, 7, 8, 9, EOS], (1,): [7, 8, 9, 3, 7, 8, 9, EOS]})
    out = _mock_generate(model, [[7, 8, 9], [1]], max_new_tokens=8, no_repeat_ngram=3)
    assert out[0] == GenerationResult([7, 8, 9, 3, 7, 8, 9], True)
    assert out[1] == GenerationResult([7, 8, 9, 3, 7, 8], True)  # 9 banned; the next best is EOS


def test_on_token_streams_exactly_the_kept_tokens_in_order() -> None:
    model = ScriptedModel({(7,): [3, 4, EOS], (8,): [4, 4, 4]})
    seen: list[tuple[int, int]] = []
    out = _mock_generate(
        model, [[7], [8], [8]], max_new_tokens=3, batch_size=2, on_token=lambda b, t: seen.append((b, t))
    )
    for b, r in enumerate(out):
        assert [t for i, t in seen if i == b] == r.tokens  # EOS never streamed; chunk offsets right
    assert {i for i, _ in seen} == {0, 1, 2}


# ------------------------------------------------------------------------------ tiny real GPT


@pytest.fixture(scope="module")
def gpt() -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=32))
    # At GPT-2's init (std 0.02) greedy decoding just repeats the last token, which would hide
    # position and mask bugs; larger matrices make the output depend on the whole context.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3, generator=g)
    return model


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [20, 21, 22, 23], [30]]


def _gpt_generate(model: GPT, prompts: Sequence[Sequence[int]], **kw) -> list[GenerationResult]:
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_new_tokens", 12)
    return generate(model, prompts, eos_id=EOS, pad_id=PAD, **kw)


def test_cache_equals_recompute_with_left_padding(gpt: GPT) -> None:
    cached = _gpt_generate(gpt, PROMPTS, use_cache=True)
    assert cached == _gpt_generate(gpt, PROMPTS, use_cache=False)
    assert len({tuple(r.tokens) for r in cached}) == len(PROMPTS)  # the check is not vacuous


def test_prompt_alone_equals_inside_padded_batch(gpt: GPT) -> None:
    batch = _gpt_generate(gpt, PROMPTS)
    alone = [_gpt_generate(gpt, [p])[0] for p in PROMPTS]
    assert batch == alone


def test_copy_blend_keeps_cache_and_padding_exact(gpt: GPT) -> None:
    """With the copy blend on (a large share, so it acts), the cache, left padding and batching
    still give what the reference path gives, and the blend changes some replies."""
    blend = CopyBlend(0.6)
    prompts = [*PROMPTS, list(range(2, 45))]  # the last holds most ids: its reply starts runs
    cached = _gpt_generate(gpt, prompts, use_cache=True, copy=blend)
    assert cached == _gpt_generate(gpt, prompts, use_cache=False, copy=blend)
    assert cached == [_gpt_generate(gpt, [p], copy=blend)[0] for p in prompts]
    assert cached != _gpt_generate(gpt, prompts)


def test_value_grounding_keeps_cache_and_padding_exact(gpt: GPT) -> None:
    """With the value grounding on (its mark: a token the model writes, so it acts), the cache,
    left padding and batching still give what the reference path gives, and the grounding changes
    some replies."""
    plain = _gpt_generate(gpt, PROMPTS)
    marks = frozenset({plain[0].tokens[0], plain[2].tokens[0]})
    ids = {tuple(p): ([[p[0], p[-1], p[0]]] if len(p) > 1 else []) for p in PROMPTS}  # the last: no id
    ground = ValueGrounding(dict.fromkeys(marks, "#"), frozenset({3, 4}), encode=lambda s: [], decode=lambda ids: "")
    object.__setattr__(ground, "prompt_values", lambda prompt: {"#": ids[tuple(prompt)]})
    cached = _gpt_generate(gpt, PROMPTS, use_cache=True, ground=ground)
    assert cached == _gpt_generate(gpt, PROMPTS, use_cache=False, ground=ground)
    assert cached == [_gpt_generate(gpt, [p], ground=ground)[0] for p in PROMPTS]
    assert cached != plain
    for r, p in zip(cached, PROMPTS, strict=True):
        for i, t in enumerate(r.tokens):
            if t in marks:  # a mark only where the prompt has an id, and that id after it
                assert ids[tuple(p)] and r.tokens[i + 1 : i + 4] == ids[tuple(p)][0][: len(r.tokens) - i - 1]


def test_seed_reproducible_and_different(gpt: GPT) -> None:
    a = _gpt_generate(gpt, PROMPTS, temperature=5.0, seed=1)
    assert a == _gpt_generate(gpt, PROMPTS, temperature=5.0, seed=1)
    assert a != _gpt_generate(gpt, PROMPTS, temperature=5.0, seed=2)


def test_sampled_replies_do_not_depend_on_the_batch(gpt: GPT) -> None:
    # each prompt draws from its own stream (seed, index): chunking and other rows change nothing
    together = _gpt_generate(gpt, PROMPTS, temperature=1.5, seed=3, batch_size=4)
    assert _gpt_generate(gpt, PROMPTS, temperature=1.5, seed=3, batch_size=1) == together
    assert _gpt_generate(gpt, PROMPTS, temperature=1.5, seed=3, batch_size=3) == together
    assert _gpt_generate(gpt, PROMPTS, temperature=1.5, seed=3, batch_size=4, use_cache=False) == together
    # but a row's index is part of its stream: the same prompt twice samples two replies
    twice = _gpt_generate(gpt, [PROMPTS[0]] * 2, temperature=5.0, seed=3)
    assert twice[0] != twice[1]


def test_top_k_one_equals_greedy(gpt: GPT) -> None:
    assert _gpt_generate(gpt, PROMPTS, temperature=1.0, top_k=1) == _gpt_generate(gpt, PROMPTS)


def test_training_mode_restored(gpt: GPT) -> None:
    gpt.train()
    _gpt_generate(gpt, PROMPTS[:1], max_new_tokens=2)
    assert gpt.training
    gpt.eval()
    _gpt_generate(gpt, PROMPTS[:1], max_new_tokens=2)
    assert not gpt.training


# ------------------------------------------------------------------------------ sample_next


def test_banned_ids_never_chosen() -> None:
    logits = torch.tensor([[9.0, 8.0, 0.0, 0.0], [0.0, 9.0, 8.0, 0.0]])  # (B=2, V=4)
    assert sample_next(logits, temperature=0.0, banned_ids=(0, 1)).tolist() == [2, 2]
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        ids = sample_next(logits, temperature=2.0, banned_ids=(0, 1), generator=g)
        assert set(ids.tolist()) <= {2, 3}


def test_sampling_follows_the_distribution() -> None:
    """Frequencies of 20,000 draws (rows of one batch) match softmax(logits / T) within 4
    standard errors; the id of probability 0 (last) is never drawn."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.log().expand(20_000, -1).clone()  # log 0 = -inf
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(sample_next(logits, temperature=1.0, generator=g), minlength=5).double()
    freq = counts / counts.sum()
    se = (probs.double() * (1 - probs.double()) / counts.sum()).sqrt()
    assert counts[-1] == 0
    assert ((freq - probs.double()).abs() <= 4 * se + 1e-12).all(), freq


def test_top_p_keeps_at_least_one_token() -> None:
    logits = torch.tensor([[5.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # a tiny top_p leaves exactly the most likely token
        assert sample_next(logits, temperature=1.0, top_p=1e-6, generator=g).tolist() == [0, 2]


def test_top_p_keeps_smallest_covering_set() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen = {sample_next(logits, temperature=1.0, top_p=0.75, generator=g).item() for _ in range(200)}
    assert seen == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3


def test_argmax_at_temperature_zero() -> None:
    logits = torch.randn(8, 30, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=-1.0),
        dict(temperature=1.0, top_k=-1),
        dict(temperature=1.0, top_p=0.0),
        dict(temperature=1.0, top_p=1.5),
    ],
)
def test_sample_next_rejects_bad_settings(kw: dict) -> None:
    with pytest.raises(ValueError):
        sample_next(torch.zeros(1, 4), **kw)
