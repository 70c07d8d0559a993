"""Tests for part4_sft.lora: LoRA at init equals the base model, merged equals unmerged, only
adapters train, hand-counted trainable parameters, adapter save/load round trip and errors,
and the merged state dict as a plain GPT checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch

from part3_pretrain.model import GPT, GPTConfig, lm_loss
from part4_sft import lora as L

TINY = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)
C = TINY.n_embd


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(TINY).eval()


def batch(seed: int = 1, B: int = 3, T: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY.vocab_size, (B, T), generator=g)


def randomize_b(model: torch.nn.Module, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in L.lora_parameters(model).items():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def lora_gpt(targets=("c_attn",), r: int = 4, **kw) -> tuple[GPT, L.LoRAConfig, list[str]]:
    model = tiny_gpt()
    cfg = L.LoRAConfig(r=r, alpha=8.0, targets=tuple(targets), **kw)
    return model, cfg, L.apply_lora(model, cfg)


# ------------------------------------------------------------------------------ config


def test_config_problems_and_round_trip():
    assert L.LoRAConfig().problems() == []
    bad = L.LoRAConfig(r=0, alpha=0.0, dropout=1.0, targets=())
    assert len(bad.problems()) == 4
    assert L.LoRAConfig(targets="c_attn").problems()  # a bare string is not a tuple of names
    cfg = L.LoRAConfig(r=2, alpha=4.0, dropout=0.1, targets=("c_attn", "c_fc"))
    assert L.LoRAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        L.LoRAConfig.from_dict({**cfg.to_dict(), "rank": 3})
    with pytest.raises(ValueError, match="r must be"):
        L.apply_lora(tiny_gpt(), L.LoRAConfig(r=0))


# ------------------------------------------------------------------------------ apply / init


@pytest.mark.parametrize(
    "targets, expected",
    [
        (("c_attn",), ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]),
        (
            ("c_attn", "c_proj"),
            [
                "transformer.h.0.attn.c_attn",
                "transformer.h.0.attn.c_proj",
                "transformer.h.0.mlp.c_proj",
                "transformer.h.1.attn.c_attn",
                "transformer.h.1.attn.c_proj",
                "transformer.h.1.mlp.c_proj",
            ],
        ),
        (("transformer.h.1.*.c_fc",), ["transformer.h.1.mlp.c_fc"]),  # fnmatch glob on the full name
        (("attn.c_proj",), ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]),
    ],
)
def test_init_logits_equal_base(targets, expected):
    idx = batch()
    with torch.no_grad():
        ref = tiny_gpt()(idx)
    model, _, replaced = lora_gpt(targets)
    assert sorted(replaced) == expected
    for name in expected:
        assert isinstance(model.get_submodule(name), L.LoRALinear)
    assert not isinstance(model.lm_head, L.LoRALinear)
    with torch.no_grad():
        out = model(idx)
    assert torch.equal(out, ref)


def test_lm_head_never_wrapped():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="match no Linear"):
        L.apply_lora(model, L.LoRAConfig(targets=("lm_head",)))


def test_no_match_raises_with_available_suffixes():
    model = tiny_gpt()
    with pytest.raises(ValueError, match=r"c_attn.*c_fc.*c_proj"):
        L.apply_lora(model, L.LoRAConfig(targets=("q_proj",)))
    assert not L.lora_parameters(model)  # nothing changed
    assert all(p.requires_grad for p in model.parameters())


def test_apply_twice_is_an_error():
    model, cfg, _ = lora_gpt()
    with pytest.raises(ValueError, match="already"):
        L.apply_lora(model, cfg)


def test_dropout_only_in_training():
    model, _, _ = lora_gpt(dropout=0.5)
    randomize_b(model)
    idx = batch()
    with torch.no_grad():
        a, b = model(idx), model(idx)
        assert torch.equal(a, b)  # eval: dropout off, deterministic
        model.train()
        torch.manual_seed(0)
        c = model(idx)
    assert not torch.allclose(a, c)


# ------------------------------------------------------------------------------ merge


def test_merge_equals_unmerged_and_unmerge_restores():
    model, _, _ = lora_gpt(("c_attn", "c_proj", "c_fc"))
    randomize_b(model)
    layer = model.get_submodule("transformer.h.0.mlp.c_fc")
    base_w = layer.base.weight.detach().clone()
    idx = batch()
    with torch.no_grad():
        unmerged = model(idx)
        assert not torch.allclose(unmerged, tiny_gpt()(idx), atol=1e-4)  # the adapters do something
        L.merge_lora(model)
        L.merge_lora(model)  # idempotent
        assert layer.merged
        assert not torch.allclose(layer.base.weight, base_w)
        merged = model(idx)
        L.unmerge_lora(model)
        L.unmerge_lora(model)
        again = model(idx)
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert torch.allclose(layer.base.weight, base_w, atol=1e-6)
    assert torch.allclose(again, unmerged, atol=1e-6)


# ------------------------------------------------------------------------------ training


def test_only_adapters_train():
    model, _, _ = lora_gpt(("c_attn", "c_proj"))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in L.lora_parameters(model).values()}
    opt = torch.optim.Adam(trainable, lr=1e-2)
    idx = batch(B=4, T=17)
    for _ in range(3):
        loss = lm_loss(model(idx[:, :-1]), idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    adapters = set(L.lora_parameters(model))
    assert "transformer.wte.weight" in before  # the tied embedding is checked too
    for name, p in model.named_parameters():
        if name in adapters:
            assert not torch.equal(p, before[name]), name
        else:
            assert torch.equal(p, before[name]), name
            assert p.grad is None, name
    assert torch.equal(model.lm_head.weight, before["transformer.wte.weight"])


def test_trainable_count_hand_computed():
    r = 4
    model, _, _ = lora_gpt(("c_attn", "c_proj"), r=r)
    # per layer: attn.c_attn (C -> 3C), attn.c_proj (C -> C), mlp.c_proj (4C -> C)
    per_layer = r * (C + 3 * C) + r * (C + C) + r * (4 * C + C)
    trainable, total = L.count_parameters(model)
    assert trainable == TINY.n_layer * per_layer
    assert total == tiny_gpt().num_params() + trainable  # tied wte/lm_head counted once


# ------------------------------------------------------------------------------ save


def test_save_adapter_writes_only_the_adapters(tmp_path):
    model, cfg, _ = lora_gpt(("c_attn", "c_fc"))
    randomize_b(model)
    with torch.no_grad():
        for p in L.lora_parameters(model).values():
            p.add_(0.01)  # A differs from a fresh kaiming init too
    path = L.save_adapter(model, cfg, tmp_path / "adapter.pt")
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    full = tmp_path / "full.pt"
    torch.save(tiny_gpt().state_dict(), full)
    assert path.stat().st_size * 3 < full.stat().st_size
    state = torch.load(path, weights_only=True)
    assert state["format"] == "retail-sft/lora-v1" and state["lora_config"] == cfg.to_dict()
    assert set(state["adapter"]) == set(L.lora_parameters(model))
    for name, tensor in L.lora_parameters(model).items():
        assert torch.equal(state["adapter"][name], tensor)


# ------------------------------------------------------------------------------ merged state dict


def test_merged_state_dict_loads_into_plain_gpt():
    model, _, _ = lora_gpt(("c_attn", "c_proj", "c_fc"))
    randomize_b(model)
    snapshot = copy.deepcopy(model.state_dict())
    sd = L.merged_state_dict(model)
    assert "transformer.h.0.attn.c_attn.weight" in sd
    assert not any(".base." in k or "lora_" in k for k in sd)
    for k, v in model.state_dict().items():  # the model was not mutated
        assert torch.equal(v, snapshot[k]), k
    plain = GPT(TINY).eval()
    plain.load_state_dict(sd, strict=True)
    idx = batch()
    with torch.no_grad():
        want = model(idx)
        assert torch.allclose(plain(idx), want, atol=1e-5)
        L.merge_lora(model)  # already merged: the delta is not added twice
        sd_merged = L.merged_state_dict(model)
    for k in sd:
        assert torch.allclose(sd_merged[k], sd[k], atol=1e-6), k
