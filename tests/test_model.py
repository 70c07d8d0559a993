"""Tests for part3_pretrain.model: parity with transformers' GPT-2 for the same tiny config and
weights (plain and left-padded), causality, KV-cache decoding vs full recomputation, lm_loss vs
F.cross_entropy, overfitting one batch, and the GPT-2 init/tying/config invariants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from part3_pretrain.model import GPT, IGNORE_INDEX, GPTConfig, KVCache, attention, lm_loss

V, BLOCK, N_LAYER, N_HEAD, N_EMBD = 97, 32, 2, 4, 32


def tiny_config(**kw) -> GPTConfig:
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD)
    return GPTConfig(**{**base, **kw})


def tiny_model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_config(**kw)).eval()


def scrambled_model(seed: int = 0, **kw) -> GPT:
    """A tiny model with large random weights everywhere (biases and LayerNorms included).

    GPT-2's init (std 0.02) keeps activations so small that e.g. exact vs tanh GELU, or a
    missing bias, changes the logits by less than 1e-5; random O(1) weights make every piece count.
    """
    model = tiny_model(seed, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or "ln_f" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() == 2 and "wte" not in name and "wpe" not in name else 1
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in) * (1.0 if p.dim() == 2 else 0.3))
    return model


def hf_twin(model: GPT):
    """A ``transformers.GPT2LMHeadModel`` with the same config and (copied) weights as ``model``."""
    transformers = pytest.importorskip("transformers")
    c = model.config
    hf_cfg = transformers.GPT2Config(**c.gpt2_kwargs(), bos_token_id=1, eos_token_id=1, pad_token_id=0)
    hf_cfg._attn_implementation = "eager"  # the textbook attention: an independent reference
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    ours = model.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    new = {}
    for name, p in hf.state_dict().items():
        if name not in ours:  # buffers of old HF versions (attn.bias / masked_bias)
            continue
        w = ours[name]
        # HF's Conv1D stores (in, out); nn.Linear stores (out, in).
        new[name] = w.t() if name.endswith(conv1d) else w
        assert new[name].shape == p.shape, name
    # smeared keys with every gate fully open (sigmoid = 1) are GPT-2's keys: nothing to copy
    missing = {n for n in set(ours) - set(new) if not (n.endswith("attn.smear") and bool((ours[n] > 40).all()))}
    assert not missing, f"our parameters without an HF counterpart: {sorted(missing)}"
    hf.load_state_dict(new, strict=False)
    assert torch.equal(hf.lm_head.weight, model.lm_head.weight)
    return hf


def _random_ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, V, (B, T), generator=g)  # 0 is PAD in the padded tests


def _left_padded(lengths: list[int], T: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    ids = _random_ids(len(lengths), T, seed)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, T - n :] = 1
    return ids.masked_fill(mask == 0, 0), mask


# ------------------------------------------------------------------------------ reference GPT-2


def test_logits_equal_transformers_gpt2() -> None:
    model = scrambled_model()
    hf = hf_twin(model)
    idx = _random_ids(3, BLOCK)
    with torch.no_grad():
        ours = model(idx)
        ref = hf(idx).logits
    assert ours.shape == (3, BLOCK, V)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_left_padded_batch_equals_transformers_with_mask_and_positions() -> None:
    model = scrambled_model(seed=3)
    hf = hf_twin(model)
    T = 12
    idx, mask = _left_padded([12, 7, 3], T)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(idx, attention_mask=mask)
        ref = hf(idx, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("smear", [False, True])
def test_left_padding_does_not_change_real_rows(smear: bool) -> None:
    """A padded row's real positions give the same logits as the row alone, unpadded."""
    model = scrambled_model(seed=4, smear_keys=smear)
    T = 10
    idx, mask = _left_padded([10, 4], T)
    with torch.no_grad():
        batch = model(idx, attention_mask=mask)
        alone = model(idx[1:, T - 4 :])
    torch.testing.assert_close(batch[1, T - 4 :], alone[0], atol=1e-5, rtol=0)


def test_smeared_keys_with_open_gates_are_gpt2_and_closed_gates_change_the_logits() -> None:
    model = scrambled_model(seed=7, smear_keys=True)
    idx = _random_ids(2, BLOCK)
    with torch.no_grad():
        mixed = model(idx)
        for block in model.transformer.h:
            block.attn.smear.fill_(50.0)  # sigmoid(50) == 1 in fp32: each key is its own
        hf = hf_twin(model)
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=1e-5, rtol=0)
    assert not torch.allclose(mixed, hf(idx).logits, atol=1e-3)


def test_smeared_key_is_the_gated_mix_of_a_key_and_its_predecessor() -> None:
    """One layer, one head: the attention layer's keys are g * k_t + (1 - g) * k_{t-1}, k_{-1} = 0."""
    model = tiny_model(smear_keys=True, n_layer=1, n_head=1)
    attn = model.transformer.h[0].attn
    assert torch.equal(attn.smear, torch.zeros(1))  # init: an even mix
    x = torch.randn(1, 5, N_EMBD)
    k = attn.c_attn(x).split(N_EMBD, dim=2)[1].view(1, 5, 1, N_EMBD).transpose(1, 2)
    with torch.no_grad():
        attn.smear.fill_(0.7)
        got = attn._smear(k, GPT._prev_real(5, 0, None, "cpu"), None, 0)
    g = torch.sigmoid(torch.tensor(0.7))
    want = g * k + (1 - g) * torch.cat([torch.zeros_like(k[:, :, :1]), k[:, :, :-1]], dim=2)
    torch.testing.assert_close(got, want)


# ------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("smear", [False, True])
@pytest.mark.parametrize("t", [0, 5, BLOCK - 2])
def test_causality_future_token_does_not_change_past_logits(t: int, smear: bool) -> None:
    model = scrambled_model(smear_keys=smear)
    idx = _random_ids(2, BLOCK)
    changed = idx.clone()
    changed[:, t + 1] = (changed[:, t + 1] + 7) % V
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1], b[:, t + 1])  # the change itself is visible


@pytest.mark.parametrize("smear", [False, True])
def test_causality_with_attention_mask(smear: bool) -> None:
    model = scrambled_model(smear_keys=smear)
    idx, mask = _left_padded([16, 9], 16)
    changed = idx.clone()
    changed[:, 12] = (changed[:, 12] + 5) % V
    with torch.no_grad():
        a, b = model(idx, attention_mask=mask), model(changed, attention_mask=mask)
    torch.testing.assert_close(a[:, :12], b[:, :12], atol=1e-6, rtol=0)


@pytest.mark.parametrize("smear", [False, True])
def test_kv_cache_decoding_equals_full_forward(smear: bool) -> None:
    model = scrambled_model(seed=5, smear_keys=smear)
    idx = _random_ids(2, 20)
    prefill = 8
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(model.config, 2, 20, device="cpu", dtype=torch.float32)
        steps = [model(idx[:, :prefill], kv_cache=cache)]
        for t in range(prefill, 20):
            steps.append(model(idx[:, t : t + 1], kv_cache=cache))
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("smear", [False, True])
def test_kv_cache_decoding_left_padded_batch(smear: bool) -> None:
    model = scrambled_model(seed=6, smear_keys=smear)
    T, prefill = 16, 6
    idx, mask = _left_padded([16, 11, 4], T)  # row 2 is all padding during the prefill
    with torch.no_grad():
        full = model(idx, attention_mask=mask)
        cache = KVCache(model.config, 3, T, device="cpu", dtype=torch.float32)
        steps = [model(idx[:, :prefill], attention_mask=mask[:, :prefill], kv_cache=cache)]
        for t in range(prefill, T):
            steps.append(model(idx[:, t : t + 1], attention_mask=mask[:, : t + 1], kv_cache=cache))
    inc = torch.cat(steps, dim=1)
    real = mask.bool()
    assert torch.isfinite(inc).all()
    torch.testing.assert_close(inc[real], full[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("smear", [False, True])
def test_doc_ids_make_a_packed_window_equal_its_documents_alone(smear: bool, dtype) -> None:
    """A window holding three documents with ``doc_ids``: every position's logits equal those of
    its document run alone from position 0 (fp32 and CPU bf16 autocast), and changing a token
    changes nothing in the other documents; without ``doc_ids`` later documents see earlier ones."""
    from part3_pretrain.data import document_ids

    model = scrambled_model(smear_keys=smear, smear_init=-1.0)
    eos = 1
    docs = [_random_ids(1, n, seed=n)[0] for n in (7, 11, 6)]
    docs[0][-1] = docs[1][-1] = eos  # an EOS closes each of the first two
    window = torch.cat(docs).unsqueeze(0)
    doc_ids = document_ids(window, eos)
    assert doc_ids.tolist() == [[0] * 7 + [1] * 11 + [2] * 6]
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), autocast:
        packed = model(window, doc_ids=doc_ids).float()
        alone = torch.cat([model(d.unsqueeze(0)).float() for d in docs], dim=1)
        plain = model(window).float()
    torch.testing.assert_close(packed, alone, atol=1e-5 if dtype is None else 0.0, rtol=0.0 if dtype else 1e-5)
    assert not torch.allclose(plain[:, 7:], alone[:, 7:], atol=1e-3)
    x = window.clone()
    x[0, 3] = (x[0, 3] + 1) % V  # change a token of the first document only
    with torch.no_grad():
        changed = model(x, doc_ids=document_ids(x, eos))
        base = model(window, doc_ids=doc_ids)
    assert torch.equal(changed[:, 7:], base[:, 7:]) and not torch.equal(changed[:, 3:7], base[:, 3:7])


def test_doc_ids_exclude_padding_masks_and_caches() -> None:
    model = tiny_model()
    ids = _random_ids(1, 8)
    doc_ids = torch.zeros_like(ids)
    with pytest.raises(ValueError, match="doc_ids"):
        model(ids, attention_mask=torch.ones_like(ids), doc_ids=doc_ids)
    with pytest.raises(ValueError, match="doc_ids"):
        model(ids, kv_cache=KVCache(model.config, 1, 8, "cpu", torch.float32), doc_ids=doc_ids)


def test_kv_cache_overflow_and_block_size_are_errors() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="block_size"):
        KVCache(model.config, 1, BLOCK + 1, device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="block_size"):
        model(_random_ids(1, BLOCK + 1))
    cache = KVCache(model.config, 1, 4, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        model(_random_ids(1, 4), kv_cache=cache)
        with pytest.raises(ValueError, match="overflow"):
            model(_random_ids(1, 1), kv_cache=cache)


@pytest.mark.parametrize("T,S,padded", [(9, 9, False), (9, 9, True), (4, 9, False), (1, 9, False)])
def test_attention_applies_the_mask_it_means(T: int, S: int, padded: bool) -> None:
    """``attention`` against SDPA with the explicit mask it means: causal, left-padded, queries
    after a cache (S > T: bottom-right aligned) and one new token."""
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 3, T, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 3, S, 8, generator=g, requires_grad=True)
    v = torch.randn(2, 3, S, 8, generator=g, requires_grad=True)
    if padded:
        mask = GPT._sdpa_mask(torch.tensor([[0, 0, 0] + [1] * (S - 3), [1] * S]), T, S - T)
    else:
        mask = None
    explicit = mask if mask is not None else torch.ones(T, S, dtype=torch.bool).tril(S - T)
    ours = attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=explicit)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    go = torch.randn(ours.shape, generator=g)
    for a, b in zip(torch.autograd.grad(ours, (q, k, v), go), torch.autograd.grad(ref, (q, k, v), go), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_runs_attention_in_fp32(monkeypatch) -> None:
    """Under CPU bf16 autocast the attention itself sees fp32 inputs (autocast off), so its T x T
    scores never round to bf16."""
    import part3_pretrain.model as model_mod

    seen = []

    def spy(q, k, v, attn_mask, dropout_p=0.0):
        seen.append((q.dtype, k.dtype, v.dtype, torch.is_autocast_enabled("cpu")))
        return attention(q, k, v, attn_mask, dropout_p)

    monkeypatch.setattr(model_mod, "attention", spy)
    model = tiny_model(seed=9)
    idx = torch.randint(0, V, (2, BLOCK), generator=torch.Generator().manual_seed(9))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(idx)
    assert seen and all(s == (torch.float32, torch.float32, torch.float32, False) for s in seen), seen


def test_bf16_autocast_forward_is_close_to_fp32() -> None:
    """CPU bf16 autocast (bf16 products, fp32 attention) stays near the fp32 logits."""
    model = tiny_model(seed=8)
    idx = torch.randint(0, V, (2, BLOCK), generator=torch.Generator().manual_seed(8))
    mask = torch.ones(2, BLOCK, dtype=torch.long)
    mask[0, :5] = 0
    with torch.no_grad():
        ref = model(idx, attention_mask=mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(idx, attention_mask=mask)
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.02, rel


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_lm_loss_equals_cross_entropy_over_unignored_positions(reduction: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, V, generator=g)
    targets = torch.randint(0, V, (3, 7), generator=g)
    targets[0, :4] = IGNORE_INDEX
    targets[2, -2:] = IGNORE_INDEX
    keep = targets != IGNORE_INDEX
    ref = F.cross_entropy(logits[keep], targets[keep], reduction=reduction)
    torch.testing.assert_close(lm_loss(logits, targets, reduction=reduction), ref, atol=1e-6, rtol=1e-6)
    if reduction == "mean":  # by hand: mean negative log-likelihood of the kept targets
        nll = -logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        torch.testing.assert_close(lm_loss(logits, targets), nll[keep].mean(), atol=1e-6, rtol=1e-6)


def test_lm_loss_is_float32_for_bf16_logits() -> None:
    logits = torch.randn(2, 3, V).bfloat16()
    targets = torch.randint(0, V, (2, 3))
    assert lm_loss(logits, targets).dtype == torch.float32


def test_tiny_model_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = GPT(tiny_config(block_size=16))
    idx = torch.randint(0, V, (2, 17), generator=torch.Generator().manual_seed(1))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = lm_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert first > math.log(V) - 0.5  # started near chance
    assert loss.item() < 0.1


# ------------------------------------------------------------------------------ structure


def test_weight_tying() -> None:
    model = tiny_model()
    assert model.lm_head.weight is model.transformer.wte.weight
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names  # one tensor, registered once


def test_gpt2_init_statistics() -> None:
    torch.manual_seed(0)
    n_layer = 8
    model = GPT(tiny_config(n_layer=n_layer, n_embd=64, vocab_size=512))
    resid_std = 0.02 / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.std().item() - resid_std) < 0.15 * resid_std, name
        elif name.endswith(("c_attn.weight", "c_fc.weight", "wte.weight", "wpe.weight")):
            assert abs(p.std().item() - 0.02) < 0.15 * 0.02, name
        elif name.endswith("bias") and ".ln_" not in name and "ln_f" not in name:
            assert torch.all(p == 0), name
        elif "ln_" in name:
            assert torch.all(p == (1.0 if name.endswith("weight") else 0.0)), name


def test_num_params_counts_tied_weights_once() -> None:
    model = tiny_model()
    c = model.config
    per_block = (
        2 * 2 * c.n_embd  # two LayerNorms
        + c.n_embd * 3 * c.n_embd
        + 3 * c.n_embd  # c_attn
        + c.n_embd * c.n_embd
        + c.n_embd  # attn c_proj
        + c.n_embd * 4 * c.n_embd
        + 4 * c.n_embd  # c_fc
        + 4 * c.n_embd * c.n_embd
        + c.n_embd
    )  # mlp c_proj
    expected = c.vocab_size * c.n_embd + c.block_size * c.n_embd + c.n_layer * per_block + 2 * c.n_embd
    assert model.num_params() == expected
    assert model.num_params(non_embedding=True) == expected - c.block_size * c.n_embd
    unique = {id(p): p.numel() for p in model.state_dict(keep_vars=True).values()}
    assert model.num_params() == sum(unique.values())


@pytest.mark.parametrize(
    "bad, word",
    [
        (dict(n_embd=30, n_head=4), "divisible"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(n_layer=0), "n_layer"),
        (dict(block_size=-1), "block_size"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_invalid_config_raises(bad: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        GPT(tiny_config(**bad))


def test_config_dict_round_trip_and_unknown_keys() -> None:
    c = tiny_config(dropout=0.1)
    assert GPTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown"):
        GPTConfig.from_dict({**c.to_dict(), "n_kv_head": 2})


def test_dropout_only_in_train_mode() -> None:
    model = tiny_model(dropout=0.5)
    idx = _random_ids(1, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(idx), model(idx), atol=0, rtol=0)
        model.train()
        assert not torch.allclose(model(idx), model(idx))


def test_smear_init_sets_every_gate_and_round_trips_the_config() -> None:
    # A negative start keys each position mostly by its predecessor (sigmoid(-2) = 12% its own).
    model = tiny_model(0, smear_keys=True, smear_init=-2.0)
    gates = [p for n, p in model.named_parameters() if n.endswith("attn.smear")]
    assert gates and all(bool((g == -2.0).all()) for g in gates)
    assert GPTConfig.from_dict(model.config.to_dict()).smear_init == -2.0
    # the default start is the even mix the shipped checkpoints were trained from
    assert all(bool((p == 0).all()) for n, p in tiny_model(0, smear_keys=True).named_parameters() if "smear" in n)
