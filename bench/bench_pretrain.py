"""Pretraining speed benchmark: matmul peak, training throughput, MFU, bf16 loss agreement, memory.

Run by hand from the repository root (nothing here runs on import, and no test calls it):

    python bench/bench_pretrain.py [--quick] [--repeats N] [--out bench/results.json] [--profile]

All measurements use the DEFAULT ``PretrainConfig`` model and batch (vocab, block, layers, heads,
width, batch size), on the CPU, in one process, side by side:

1. ``matmul``: ``torch.mm`` TFLOP/s, fp32 and bf16, at the model's GEMM shapes and a big square;
   the per-dtype peak is the best median over those shapes.
2. ``throughput``: tokens/s of one training step (forward, loss, backward, AdamW step, zero_grad)
   of our GPT and of ``transformers.GPT2LMHeadModel`` built from the same config and the SAME
   weights, fp32 and bf16 autocast. Variants run interleaved (A, B, C, ..., A, B, C, ...), so
   machine noise hits all of them alike; medians over repeats.
3. ``mfu``: model FLOPs/token (PaLM: 6 * matmul params incl. lm_head + 12 * L * C * T) times
   tokens/s over the measured matmul peak of the same dtype.
4. ``loss_curve``: our ``Trainer`` at the default settings in fp32 and in bf16 autocast, same seed,
   same real tokenized text, stepped alternately; relative gap of the smoothed losses.
5. ``memory``: peak RSS (VmHWM) of a subprocess running the real default pretraining for a few steps.

Numbers go to a table on stdout and to a JSON file; bench/README.md says what each one means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from part3_pretrain import cpu_gemm  # noqa: E402
from part3_pretrain.flops import flops_per_token  # noqa: E402
from part3_pretrain.model import GPT, GPTConfig, lm_loss  # noqa: E402
from part3_pretrain.pretrain import PretrainConfig  # noqa: E402
from part3_pretrain.trainer import cpu_has_fast_bf16  # noqa: E402

# Targets (see bench/README.md); checked on the final, idle-machine figures.
TARGET_OURS_OVER_HF_FP32 = 1.35
TARGET_MFU_FP32 = 0.62
TARGET_BF16_SPEEDUP = 1.45
TARGET_LOSS_REL_DIFF = 0.03
TARGET_PEAK_RSS_MIB = 2048.0
BUSY_LOADAVG = 0.5  # 1-minute load average above which the report warns that the CPU is not idle

SECTIONS = ("matmul", "throughput", "loss_curve", "memory")
SQUARE = 2048  # side of the big square matmul
# HF parameters stored as Conv1D (in, out): ours are nn.Linear (out, in), so these are transposed.
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class BenchConfig:
    """Sizes of every section; ``--quick`` shrinks them all for development."""

    quick: bool = False
    repeats: int = 7  # timed repeats per throughput variant and per matmul shape
    steps_per_repeat: int = 4  # training steps timed together in one repeat
    warmup_steps: int = 3  # untimed steps per variant before the first repeat
    mm_min_seconds: float = 0.3  # each matmul repeat loops torch.mm for at least this long
    curve_steps: int = 100
    curve_docs: int = 2000  # generated documents for the loss-curve corpus (~270k tokens)
    curve_smooth: int = 10  # losses compared as the mean of this many trailing steps
    memory_steps: int = 20
    memory_n_docs: int = 0  # 0: the pretraining default
    threads: int = 0  # 0: torch's default
    profile: bool = False
    sections: tuple[str, ...] = SECTIONS
    out: str = "bench/results.json"

    @classmethod
    def quick_config(cls, **overrides) -> BenchConfig:
        base = cls(
            quick=True,
            repeats=3,
            steps_per_repeat=2,
            warmup_steps=1,
            mm_min_seconds=0.1,
            curve_steps=40,
            curve_docs=1000,
            memory_steps=5,
            memory_n_docs=1000,
        )
        return replace(base, **overrides)


# ---------------------------------------------------------------------------------------------
# helpers


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def autocast(dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=dtype)


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]


def model_config() -> GPTConfig:
    """The default pretraining model, with the vocabulary size the config asks for."""
    pc = PretrainConfig()
    return pc.model_config(pc.vocab_size)


# ---------------------------------------------------------------------------------------------
# 1. matmul peak


def matmul_shapes(cfg: GPTConfig, batch_size: int) -> dict[str, tuple[int, int, int]]:
    """(M, K, N) of the model's forward GEMMs for one batch, plus a big square."""
    bt, c = batch_size * cfg.block_size, cfg.n_embd
    return {
        "qkv": (bt, c, 3 * c),
        "mlp_fc": (bt, c, 4 * c),
        "mlp_proj": (bt, 4 * c, c),
        "lm_head": (bt, c, cfg.vocab_size),
        "square": (SQUARE, SQUARE, SQUARE),
    }


# The GEMM kernels timed: torch.mm (MKL for fp32, oneDNN for bf16) and, in fp32, oneDNN as the
# model calls it (cpu_gemm; a (M, K) times b.T (N, K)).
KERNELS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp32_onednn": torch.float32}


def _product(kernel: str) -> Callable:
    if kernel == "fp32_onednn":
        return lambda a, b_t, out: torch.ops.mkldnn._linear_pointwise(a, b_t, None, "none", [], "")
    return lambda a, b_t, out: torch.mm(a, b_t.t(), out=out)


def time_mm(kernel: str, a: torch.Tensor, b_t: torch.Tensor, out: torch.Tensor, min_seconds: float) -> float:
    """TFLOP/s of ``a @ b_t.T`` by ``kernel`` looped for at least ``min_seconds``."""
    product = _product(kernel)
    n, t0 = 0, time.perf_counter()
    while True:
        product(a, b_t, out)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            break
    m, k = a.shape
    return 2.0 * m * k * b_t.shape[0] * n / elapsed / 1e12


def bench_matmul(bc: BenchConfig, cfg: GPTConfig, batch_size: int) -> dict:
    """Median TFLOP/s per shape and kernel, and the peaks MFU is measured against.

    ``peak_tflops["fp32"]`` is torch.mm's (what a plain PyTorch model gets: MKL), as the issue's
    62% nanoGPT figure was measured; ``peak_tflops["fp32_best"]`` is the better of torch.mm and
    oneDNN, the stricter denominator; ``peak_tflops["bf16"]`` is torch.mm's (oneDNN) in bf16.
    """
    shapes = matmul_shapes(cfg, batch_size)
    kernels = [k for k in KERNELS if k != "fp32_onednn" or cpu_gemm.onednn_available()]
    g = torch.Generator().manual_seed(0)
    ops = {}
    for name, (m, k, n) in shapes.items():
        for kern in kernels:
            dt = KERNELS[kern]
            a, b_t = torch.randn(m, k, generator=g).to(dt), torch.randn(n, k, generator=g).to(dt)
            out = torch.empty(m, n, dtype=dt)
            time_mm(kern, a, b_t, out, 0.05)  # warm up (oneDNN primitive creation, page faults)
            ops[(name, kern)] = (a, b_t, out)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in ops}
    keys = list(ops)
    for r in range(bc.repeats):  # interleaved: every shape and kernel once per repeat, rotated
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            samples[key].append(time_mm(key[1], *ops[key], bc.mm_min_seconds))
    result = {"threads": torch.get_num_threads(), "kernels": kernels, "shapes": {}, "peak_tflops": {}, "peak_shape": {}}
    for name, (m, k, n) in shapes.items():
        result["shapes"][name] = {
            "mkn": [m, k, n],
            **{f"{kern}_tflops": median(samples[(name, kern)]) for kern in kernels},
            **{f"{kern}_samples": samples[(name, kern)] for kern in kernels},
        }
    for kern in kernels:
        best = max(shapes, key=lambda s: result["shapes"][s][f"{kern}_tflops"])
        result["peak_tflops"][kern] = result["shapes"][best][f"{kern}_tflops"]
        result["peak_shape"][kern] = best
    result["peak_tflops"]["fp32_best"] = max(result["peak_tflops"][k] for k in kernels if k.startswith("fp32"))
    return result


# ---------------------------------------------------------------------------------------------
# 2. training throughput


def build_hf(cfg: GPTConfig, ours: GPT):
    """``GPT2LMHeadModel`` of the same shape holding a copy of ``ours``'s weights."""
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    hcfg = GPT2Config(**cfg.gpt2_kwargs(), bos_token_id=None, eos_token_id=None, loss_type="ForCausalLM")
    try:
        hf = GPT2LMHeadModel._from_config(hcfg, attn_implementation="sdpa")
    except (ValueError, ImportError):
        hf = GPT2LMHeadModel._from_config(hcfg, attn_implementation="eager")
    sd = {k: (v.t().contiguous() if k.endswith(CONV1D_SUFFIXES) else v.clone()) for k, v in ours.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(("attn.bias", "masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"weight copy to GPT2LMHeadModel failed: missing {missing}, unexpected {unexpected}")
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("GPT2LMHeadModel's lm_head is not tied to wte")
    return hf.train()


def ours_loss(model, x, y, dtype):
    # as the trainer does: the fused LM head + cross-entropy, summed, over the target count
    with autocast(dtype):
        return model(x, targets=y).loss_sum / y.numel()


def ours_unfused_loss(model, x, y, dtype):
    with autocast(dtype):
        logits = model(x)
    return lm_loss(logits, y)  # full logits, then F.cross_entropy outside autocast


def hf_loss(model, x, y, dtype):
    with autocast(dtype):
        logits = model(input_ids=x).logits
    return lm_loss(logits, y)  # the very same F.cross_entropy on the same targets


def hf_labels_loss(model, x, y, dtype):
    # HF's own loss path (ForCausalLMLoss: upcast, flatten, cross_entropy) on the same targets.
    with autocast(dtype):
        return model(input_ids=x, labels=x, shift_labels=y).loss


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    dtype: torch.dtype
    # fp32 products: the CPU rule (nullcontext), cpu_gemm.torch_gemm or cpu_gemm.onednn_gemm
    kernel: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.kernel():
            return self.loss_fn(self.model, x, y, self.dtype)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        with self.kernel():  # the backward products on the forward's kernel
            loss = self.loss(x, y)
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The pretraining optimizer exactly (AdamW groups, betas, lr, weight decay) via the trainer."""
    from part3_pretrain.trainer import make_optimizer as trainer_optimizer

    tc = PretrainConfig().trainer_config()
    return trainer_optimizer(model, tc, torch.device("cpu"))


# Our model as the trainer runs it (the default config: smeared keys on), then ablations of it in
# fp32: torch's own GEMM, oneDNN forced on, the unfused loss (full logits + F.cross_entropy), and
# the same function as GPT2LMHeadModel (smeared keys off: "gpt2"), fast and with every speed path
# off ("plain": torch's GEMM and the unfused loss, a nanoGPT-style model). The smear-off variants
# hold the very weights HF gets. (name, loss, dtype, smeared keys, kernel)
_RULE, _TORCH, _ONEDNN = contextlib.nullcontext, cpu_gemm.torch_gemm, cpu_gemm.onednn_gemm
OURS = (
    ("ours_fp32", ours_loss, torch.float32, True, _RULE),
    ("ours_bf16", ours_loss, torch.bfloat16, True, _RULE),
    ("ours_fp32_torch_gemm", ours_loss, torch.float32, True, _TORCH),
    ("ours_fp32_onednn", ours_loss, torch.float32, True, _ONEDNN),
    ("ours_fp32_unfused", ours_unfused_loss, torch.float32, True, _RULE),
    ("ours_fp32_gpt2", ours_loss, torch.float32, False, _RULE),
    ("ours_fp32_gpt2_plain", ours_unfused_loss, torch.float32, False, _TORCH),
)


def make_variants(cfg: GPTConfig) -> tuple[list[Variant], dict]:
    torch.manual_seed(0)
    reference = GPT(cfg)
    plain_cfg = replace(cfg, smear_keys=False)
    plain_sd = {k: v for k, v in reference.state_dict().items() if not k.endswith("attn.smear")}
    variants, info = [], {}
    for name, loss_fn, dt, smear, kernel in OURS:
        ours = GPT(cfg if smear else plain_cfg)
        ours.load_state_dict(reference.state_dict() if smear else plain_sd)
        variants.append(Variant(name, ours.train(), make_optimizer(ours), loss_fn, dt, kernel))
    reference = variants[-1].model  # smeared keys off: the weights HF can hold
    for dt in (torch.float32, torch.bfloat16):
        hf = build_hf(plain_cfg, reference)
        variants.append(Variant(f"hf_{dtype_name(dt)}", hf, make_optimizer(hf), hf_loss, dt))
    hf = build_hf(plain_cfg, reference)
    variants.append(Variant("hf_labels_fp32", hf, make_optimizer(hf), hf_labels_loss, torch.float32))
    info["hf_attn_implementation"] = hf.config._attn_implementation
    info["hf_activation"] = hf.config.activation_function
    return variants, info


def parity(variants: list[Variant], x: torch.Tensor, y: torch.Tensor) -> dict:
    """Initial fp32 loss of every variant on the batch: equal weights must give equal losses (HF
    against our smear-off twin, which computes the same function)."""
    with torch.no_grad():
        losses = {v.name: float(v.loss(x, y)) for v in variants}
    ref = losses["ours_fp32_gpt2"]
    return {
        "initial_loss": losses,
        "plain_abs_diff": abs(losses["ours_fp32_gpt2_plain"] - ref),
        "hf_fp32_abs_diff": abs(losses["hf_fp32"] - ref),
        "hf_labels_fp32_abs_diff": abs(losses["hf_labels_fp32"] - ref),
    }


def bench_throughput(bc: BenchConfig, cfg: GPTConfig, batch_size: int) -> dict:
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size + 1), generator=g)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()  # the same batch for every variant
    variants, info = make_variants(cfg)
    info["parity"] = parity(variants, x, y)
    for v in variants:
        for _ in range(bc.warmup_steps):
            v.step(x, y)
    tokens = bc.steps_per_repeat * x.numel()
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(bc.repeats):  # A, B, C, ... each repeat, rotating who goes first
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            t0 = time.perf_counter()
            for _ in range(bc.steps_per_repeat):
                v.step(x, y)
            samples[v.name].append(tokens / (time.perf_counter() - t0))
    tps = {name: median(s) for name, s in samples.items()}
    return {
        **info,
        "tokens_per_step": x.numel(),
        "steps_per_repeat": bc.steps_per_repeat,
        "tokens_per_s": tps,
        "best_tokens_per_s": {name: max(s) for name, s in samples.items()},
        "samples": samples,
        "ratios": {
            "ours_fp32_over_hf_fp32": tps["ours_fp32"] / tps["hf_fp32"],
            "ours_fp32_over_plain": tps["ours_fp32"] / tps["ours_fp32_gpt2_plain"],
            "gpt2_over_hf_fp32": tps["ours_fp32_gpt2"] / tps["hf_fp32"],
            "smear_cost": tps["ours_fp32_gpt2"] / tps["ours_fp32"],
            "ours_bf16_over_hf_bf16": tps["ours_bf16"] / tps["hf_bf16"],
            "ours_bf16_over_ours_fp32": tps["ours_bf16"] / tps["ours_fp32"],
            "hf_labels_over_hf_fp32": tps["hf_labels_fp32"] / tps["hf_fp32"],
            "ours_fp32_over_torch_gemm": tps["ours_fp32"] / tps["ours_fp32_torch_gemm"],
            "onednn_over_torch_gemm": tps["ours_fp32_onednn"] / tps["ours_fp32_torch_gemm"],
            "ours_fp32_over_unfused": tps["ours_fp32"] / tps["ours_fp32_unfused"],
            "torch_gemm_over_hf_fp32": tps["ours_fp32_torch_gemm"] / tps["hf_fp32"],
        },
        "_variants": variants,
        "_batch": (x, y),
    }


def mfu(throughput: dict, matmul: dict, cfg: GPTConfig) -> dict:
    fpt = flops_per_token(cfg)
    out = {"flops_per_token": fpt, "by_variant": {}}
    peaks = matmul["peak_tflops"]
    for name, tps in throughput["tokens_per_s"].items():
        dt = "bf16" if "bf16" in name else "fp32"
        achieved = tps * fpt["total"] / 1e12
        out["by_variant"][name] = {
            "achieved_tflops": achieved,
            "peak_dtype": dt,
            "mfu": achieved / peaks[dt],
            "mfu_best_kernel": achieved / peaks["fp32_best" if dt == "fp32" else dt],
        }
    return out


# ---------------------------------------------------------------------------------------------
# 4. loss-curve agreement through the real trainer


def curve_tokens(bc: BenchConfig, vocab_size: int):
    from part3_pretrain.corpus import generate_corpus
    from part3_pretrain.data import encode_documents
    from part3_pretrain.tokenizer import train_tokenizer

    docs = generate_corpus(bc.curve_docs, seed=0)
    tok = train_tokenizer(docs, vocab_size)
    return encode_documents(docs, tok), tok.vocab_size


def make_trainer(pc: PretrainConfig, tokens, vocab_size: int, steps: int, dtype: str):
    from part3_pretrain.data import TokenWindows
    from part3_pretrain.trainer import Trainer

    torch.manual_seed(pc.seed)
    model = GPT(pc.model_config(vocab_size))
    source = TokenWindows(tokens, pc.model.block_size, pc.optim.batch_size, pc.seed)
    tc = replace(
        pc.trainer_config(),
        max_steps=steps,
        warmup_steps=min(pc.optim.warmup_steps, steps // 4),
        eval_every=0,
        checkpoint_every=0,
        progress=False,
        device="cpu",
        dtype=dtype,
    )
    return Trainer(model, source, tc)


def bench_loss_curve(bc: BenchConfig) -> dict:
    pc = PretrainConfig()
    tokens, vocab = curve_tokens(bc, pc.vocab_size)
    trainers = {d: make_trainer(pc, tokens, vocab, bc.curve_steps, d) for d in ("float32", "bfloat16")}
    losses: dict[str, list[float]] = {d: [] for d in trainers}
    tps: dict[str, list[float]] = {d: [] for d in trainers}
    for _ in range(bc.curve_steps):  # stepped alternately: same data, same noise
        for d, tr in trainers.items():
            t0 = time.perf_counter()
            stats = tr.train_step()
            tps[d].append(stats.n_tokens / (time.perf_counter() - t0))
            losses[d].append(stats.loss)
    k = bc.curve_smooth
    smooth = {d: [sum(ls[i - k : i]) / k for i in range(k, len(ls) + 1)] for d, ls in losses.items()}
    rel = [abs(b - f) / f for f, b in zip(smooth["float32"], smooth["bfloat16"], strict=False)]
    return {
        "steps": bc.curve_steps,
        "smooth_window": k,
        "corpus_docs": bc.curve_docs,
        "corpus_tokens": int(len(tokens)),
        "vocab_size": vocab,
        "warmup_steps": trainers["float32"].cfg.warmup_steps,
        "final_smoothed_loss": {"fp32": smooth["float32"][-1], "bf16": smooth["bfloat16"][-1]},
        "final_rel_diff": rel[-1],
        "max_rel_diff_smoothed": max(rel),
        "trainer_tokens_per_s": {"fp32": median(tps["float32"][2:]), "bf16": median(tps["bfloat16"][2:])},
        "losses": {"fp32": losses["float32"], "bf16": losses["bfloat16"]},
    }


# ---------------------------------------------------------------------------------------------
# 5. peak memory of the real default pretraining

# The child reports two peaks. ru_maxrss is NOT usable here: Linux carries a process's RSS
# high-water mark across fork and exec, so a child started from this (large) process reports the
# parent's peak. VmHWM belongs to the child's own address space (fresh after exec): that is the
# figure we use.
_MEMORY_CHILD = (
    "import resource, sys\n"
    "from part3_pretrain.pretrain import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')]\n"
    "print('BENCH_VMHWM_KIB', hwm[0] if hwm else -1, flush=True)\n"
    "print('BENCH_MAXRSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
    "sys.exit(rc)\n"
)


def _child_value(stdout: str, key: str) -> int | None:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(key)]
    return int(lines[-1].split()[1]) if lines else None


def bench_memory(bc: BenchConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        args = ["--max-steps", str(bc.memory_steps), "--out-dir", tmp, "--no-progress"]
        if bc.memory_n_docs:
            args += ["--n-docs", str(bc.memory_n_docs)]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, *args], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    hwm, maxrss = _child_value(proc.stdout, "BENCH_VMHWM_KIB"), _child_value(proc.stdout, "BENCH_MAXRSS_KIB")
    if proc.returncode != 0 or hwm is None or hwm < 0:
        raise RuntimeError(
            f"pretraining subprocess failed (rc {proc.returncode}) or gave no VmHWM:\n{proc.stderr[-2000:]}"
        )
    return {
        "command": f"python -m part3_pretrain.pretrain {' '.join(args)}",
        "max_rss_mib": hwm / 1024,
        "source": "VmHWM of the child (/proc/self/status) at exit",
        "ru_maxrss_mib_inherited": maxrss / 1024 if maxrss is not None else None,
        "wall_s": wall,
        "note": "default dtype 'auto' (bf16 autocast where the CPU has it)",
    }


# ---------------------------------------------------------------------------------------------
# optional: profile one fp32 step


def profile_step(variants: list[Variant], batch, names=("ours_fp32", "ours_bf16", "hf_fp32"), rows: int = 15) -> dict:
    from torch.profiler import ProfilerActivity, profile

    x, y = batch
    out = {}
    for v in variants:
        if v.name not in names:
            continue
        v.step(x, y)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            v.step(x, y)
        ka = prof.key_averages()
        print(f"\n--- profile: one {v.name} training step (top {rows} by self CPU time) ---")
        print(ka.table(sort_by="self_cpu_time_total", row_limit=rows))
        top = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
        out[v.name] = {
            "total_self_cpu_ms": sum(e.self_cpu_time_total for e in ka) / 1e3,
            "top": [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in top],
        }
    return out


# ---------------------------------------------------------------------------------------------
# report


def targets(res: dict) -> dict:
    t = {}
    if "throughput" in res:
        r = res["throughput"]["ratios"]
        t["ours_fp32_over_hf_fp32"] = (
            r["ours_fp32_over_hf_fp32"],
            f">= {TARGET_OURS_OVER_HF_FP32}",
            r["ours_fp32_over_hf_fp32"] >= TARGET_OURS_OVER_HF_FP32,
        )
        t["bf16_over_fp32"] = (
            r["ours_bf16_over_ours_fp32"],
            f">= {TARGET_BF16_SPEEDUP}",
            r["ours_bf16_over_ours_fp32"] >= TARGET_BF16_SPEEDUP,
        )
    if "mfu" in res:
        m = res["mfu"]["by_variant"]["ours_fp32"]["mfu"]
        t["mfu_ours_fp32"] = (m, f">= {TARGET_MFU_FP32}", m >= TARGET_MFU_FP32)
    if "loss_curve" in res:
        d = res["loss_curve"]["final_rel_diff"]
        t["bf16_loss_rel_diff"] = (d, f"<= {TARGET_LOSS_REL_DIFF}", d <= TARGET_LOSS_REL_DIFF)
    if "memory" in res:
        m = res["memory"]["max_rss_mib"]
        t["peak_rss_mib"] = (m, f"< {TARGET_PEAK_RSS_MIB:.0f}", m < TARGET_PEAK_RSS_MIB)
    return {k: {"value": v, "target": s, "met": ok} for k, (v, s, ok) in t.items()}


def _print_matmul(res: dict) -> None:
    """The matmul section: median TFLOP/s per shape and kernel, then the peaks."""
    kernels = res["matmul"]["kernels"]
    print("\nmatmul (median TFLOP/s; fp32/bf16: torch.mm, fp32_onednn: as cpu_gemm calls it)")
    print(f"  {'':<33}" + "".join(f"{k:>13}" for k in kernels))
    for name, s in res["matmul"]["shapes"].items():
        mkn = "x".join(map(str, s["mkn"]))
        print(f"  {name:<9}{mkn:<24}" + "".join(f"{s[f'{k}_tflops']:>13.3f}" for k in kernels))
    p = res["matmul"]["peak_tflops"]
    print(f"  {'peak':<33}" + "".join(f"{p[k]:>13.3f}" for k in kernels))


def _print_throughput(res: dict) -> None:
    """The training-step section: tokens/s and MFU per variant, speed ratios, HF parity."""
    th = res["throughput"]
    print(f"\ntraining step (fwd+loss+bwd+AdamW), median tokens/s; HF attn={th['hf_attn_implementation']}")
    print(f"  {'variant':<22}{'median':>10}{'best':>10}   MFU vs torch.mm peak (vs best kernel)")
    for name, v in th["tokens_per_s"].items():
        mf = res.get("mfu", {}).get("by_variant", {}).get(name)
        extra = f"   {mf['mfu']:6.1%} ({mf['mfu_best_kernel']:.1%}) of {mf['peak_dtype']}" if mf else ""
        print(f"  {name:<22}{v:>10,.0f}{th['best_tokens_per_s'][name]:>10,.0f}{extra}")
    for k, v in th["ratios"].items():
        print(f"  {k:<28}{v:6.2f}x")
    pa = th["parity"]
    print(f"  parity: |loss hf - ours| at init = {pa['hf_fp32_abs_diff']:.2e} (same weights)")


def print_report(res: dict) -> None:
    """Print the results ``run`` returned, one section per part that ran."""
    meta = res["meta"]
    print(
        f"\n== bench_pretrain ({'QUICK, ' if meta['quick'] else ''}{meta['threads']} threads, "
        f"torch {meta['torch']}, {meta['cpu']}) =="
    )
    if meta["loadavg_at_start"] > BUSY_LOADAVG:
        print(
            f"WARNING: load average {meta['loadavg_at_start']:.1f} at start: the CPU is shared, "
            f"numbers are unreliable (see bench/README.md)"
        )
    m = res["model"]
    print(
        f"model: V={m['vocab_size']} T={m['block_size']} L={m['n_layer']} H={m['n_head']} "
        f"C={m['n_embd']} batch={m['batch_size']}; {m['flops_per_token'] / 1e6:.1f} MFLOP/token"
    )
    if "matmul" in res:
        _print_matmul(res)
    if "throughput" in res:
        _print_throughput(res)
    if "loss_curve" in res:
        lc = res["loss_curve"]
        f, b = lc["final_smoothed_loss"]["fp32"], lc["final_smoothed_loss"]["bf16"]
        print(
            f"\nloss curve ({lc['steps']} trainer steps, {lc['corpus_tokens']:,} tokens): mean of last "
            f"{lc['smooth_window']} fp32 {f:.4f} bf16 {b:.4f} rel diff {lc['final_rel_diff']:.2%} "
            f"(max over run {lc['max_rel_diff_smoothed']:.2%})"
        )
        tt = lc["trainer_tokens_per_s"]
        print(f"  Trainer.train_step tokens/s (interleaved): fp32 {tt['fp32']:,.0f}  bf16 {tt['bf16']:,.0f}")
    if "memory" in res:
        me = res["memory"]
        print(
            f"\npeak memory: {me['max_rss_mib']:.0f} MiB peak RSS (VmHWM) of `{me['command']}` ({me['wall_s']:.0f} s)"
        )
    if res.get("targets"):
        print("\ntargets" + (" (PROVISIONAL: quick run)" if meta["quick"] else ""))
        for k, t in res["targets"].items():
            print(f"  {k:<24}{t['value']:>10.3f}  {t['target']:<8} {'met' if t['met'] else 'NOT met'}")


def run(bc: BenchConfig) -> dict:
    if bc.threads:
        torch.set_num_threads(bc.threads)
    pc = PretrainConfig()
    cfg = model_config()
    res: dict = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "quick": bc.quick,
            "loadavg_at_start": os.getloadavg()[0],
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": cpu_name(),
            "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),  # true where emulated too
            "native_bf16": cpu_has_fast_bf16(),
            "bench_config": asdict(bc),
        },
        "model": {**cfg.to_dict(), "batch_size": pc.optim.batch_size, "flops_per_token": flops_per_token(cfg)["total"]},
    }
    t0 = time.perf_counter()
    if "matmul" in bc.sections:
        res["matmul"] = bench_matmul(bc, cfg, pc.optim.batch_size)
    if "throughput" in bc.sections:
        th = bench_throughput(bc, cfg, pc.optim.batch_size)
        variants, batch = th.pop("_variants"), th.pop("_batch")
        res["throughput"] = th
        if "matmul" in res:
            res["mfu"] = mfu(th, res["matmul"], cfg)
        if bc.profile:
            res["profile"] = profile_step(variants, batch)
        del variants
    if "loss_curve" in bc.sections:
        res["loss_curve"] = bench_loss_curve(bc)
    if "memory" in bc.sections:
        res["memory"] = bench_memory(bc)
    res["targets"] = targets(res)
    res["meta"]["seconds"] = time.perf_counter() - t0
    res["meta"]["loadavg_at_end"] = os.getloadavg()[0]
    res["meta"]["bench_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python bench/bench_pretrain.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short everything (development only)")
    p.add_argument("--repeats", type=int, help="timed repeats per variant (default 7, quick 3)")
    p.add_argument("--out", default=BenchConfig.out, help="JSON file for all numbers (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--profile", action="store_true", help="also profile one fp32 step of ours and HF")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated subset of %(default)s (mfu needs matmul and throughput)",
    )
    a = p.parse_args(argv)
    sections = tuple(s for s in a.sections.split(",") if s)
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        p.error(f"--sections: unknown {bad}; choose from {list(SECTIONS)}")
    if a.repeats is not None and a.repeats < 1:
        p.error(f"--repeats must be >= 1 (got {a.repeats})")
    if a.threads < 0:
        p.error(f"--threads must be >= 0 (got {a.threads})")
    overrides = dict(out=a.out, threads=a.threads, profile=a.profile, sections=sections)
    if a.repeats is not None:
        overrides["repeats"] = a.repeats
    return BenchConfig.quick_config(**overrides) if a.quick else BenchConfig(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    bc = parse_args(argv)
    res = run(bc)
    print_report(res)
    out = Path(bc.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
