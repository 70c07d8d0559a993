"""Benchmark (run by hand, on an idle machine): which speed path wins for each stage on this CPU.

The main job trains at two very different shapes: pretraining steps of 6 windows x 160 tokens
(960 tokens, the default ``PretrainConfig``) and fine-tuning steps of one example of about 110
tokens (batch 1, the card's SFT). This times one full training step (forward, loss, backward,
gradient clipping, fused Adam(W), zero_grad) of the default model at both shapes, for every
combination of autocast dtype (fp32, bf16) and thread count (1 .. the core count), interleaved
over repeats so that noise hits every variant alike, beside ``torch.mm``'s fp32 peak on the same
CPU (a 1024^3 and a 2048^3 product, the best median). It prints milliseconds per step, model
GFLOP/s (``flops.flops_per_token`` x tokens, the job's own count) and that as a share of the mm
peak, marks the fastest variant per shape and says what ``--dtype auto`` picks here.

    python bench/speed_paths.py                 # ~30 s on 2 idle cores
    python bench/speed_paths.py --repeats 3 --steps 5 --out /tmp/paths.json
    python bench/speed_paths.py --crossover     # + bf16 vs fp32 at 160 .. 960-token steps (~1 min more)

Quote ``lscpu``'s model name and flags beside the figures: a path that wins on an AVX-512 CPU
with native bf16 can lose on an AVX2-only one, where bf16 is emulated.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from part3_pretrain.flops import flops_per_token  # noqa: E402
from part3_pretrain.model import GPT  # noqa: E402
from part3_pretrain.pretrain import PretrainConfig  # noqa: E402
from part3_pretrain.trainer import AUTO_BF16_MIN_TOKENS, cpu_has_fast_bf16, resolve_dtype  # noqa: E402

SHAPES = {"pretraining": (6, 160), "fine-tuning": (1, 110)}  # (rows, tokens per row) of one step


def mm_peak(threads: int, repeats: int) -> float:
    """Best median GFLOP/s of fp32 ``torch.mm`` over two square sizes, ``threads`` threads."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        rates = []
        for _ in range(repeats):
            t0, calls = time.perf_counter(), 0
            while time.perf_counter() - t0 < 0.3:
                torch.mm(a, b)
                calls += 1
            rates.append(2 * n**3 * calls / (time.perf_counter() - t0) / 1e9)
        best = max(best, statistics.median(rates))
    return best


def make_step(model: GPT, rows: int, tokens: int, dtype: torch.dtype):
    """One training step of ``model`` on a fixed random batch, under ``dtype`` autocast."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (rows, tokens), generator=g)
    y = torch.randint(0, model.config.vocab_size, (rows, tokens), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            out = model(x, targets=y)
        (out.loss_sum / y.numel()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def time_interleaved(variants: dict, repeats: int, steps: int) -> dict:
    """Seconds per step of each ``{key: (threads, step)}`` variant, one sample per repeat: every
    variant warmed up first, then run in turn each repeat (rotated), so noise hits them all alike."""
    samples: dict = {k: [] for k in variants}
    for threads, step in variants.values():  # warm-up: kernels chosen, memory allocated
        torch.set_num_threads(threads)
        for _ in range(3):
            step()
    keys = list(variants)
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:  # rotated order
            threads, step = variants[key]
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            samples[key].append((time.perf_counter() - t0) / steps)
    return samples


def time_variants(repeats: int, steps: int, max_threads: int) -> dict[str, list[float]]:
    """Seconds per step of every (shape, dtype, threads) variant, ``repeats`` medians' worth."""
    cfg = PretrainConfig()
    variants = {}
    for shape, (rows, tokens) in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            for threads in range(1, max_threads + 1):
                torch.manual_seed(0)
                model = GPT(cfg.model_config(cfg.vocab_size))
                key = f"{shape}|{str(dtype).removeprefix('torch.')}|{threads}"
                variants[key] = (threads, make_step(model, rows, tokens, dtype))
    return time_interleaved(variants, repeats, steps)


def crossover(repeats: int, steps: int, context: int = 160) -> list[dict]:
    """bf16 over fp32 speed of one training step at 1..6 rows x ``context`` tokens, all threads,
    interleaved: where ``--dtype auto``'s step-size rule (``AUTO_BF16_MIN_TOKENS``) should sit."""
    cfg = PretrainConfig()
    threads = torch.get_num_threads()
    variants = {}
    for rows in range(1, 7):
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            step = make_step(GPT(cfg.model_config(cfg.vocab_size)), rows, context, dtype)
            variants[(rows, dtype)] = (threads, step)
    samples = time_interleaved(variants, repeats, steps)
    out = []
    for rows in range(1, 7):
        f32, b16 = (statistics.median(samples[(rows, d)]) for d in (torch.float32, torch.bfloat16))
        out.append(
            {
                "tokens": rows * context,
                "fp32_ms": round(f32 * 1e3, 2),
                "bf16_ms": round(b16 * 1e3, 2),
                "bf16_speedup": round(f32 / b16, 3),
            }
        )
    return out


def report(samples: dict[str, list[float]], peaks: dict[int, float]) -> dict:
    cfg = PretrainConfig()
    per_token = flops_per_token(cfg.model_config(cfg.vocab_size))["total"]
    rows = []
    for key, values in samples.items():
        shape, dtype, threads = key.split("|")
        n_rows, tokens = SHAPES[shape]
        sec = statistics.median(values)
        gflops = per_token * n_rows * tokens / sec / 1e9
        rows.append(
            {
                "shape": shape,
                "dtype": dtype,
                "threads": int(threads),
                "ms_per_step": round(sec * 1e3, 2),
                "gflop_s": round(gflops, 1),
                "share_of_mm_peak": round(gflops / peaks[max(peaks)], 3),
                "samples_ms": [round(v * 1e3, 2) for v in values],
            }
        )
    for shape in SHAPES:
        fastest = min((r for r in rows if r["shape"] == shape), key=lambda r: r["ms_per_step"])
        fastest["fastest"] = True
    return {"rows": rows, "mm_peak_gflop_s": peaks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats per variant (default 7)")
    p.add_argument("--steps", type=int, default=10, help="training steps per repeat (default 10)")
    p.add_argument("--out", default="", help="also write every number to this JSON file")
    p.add_argument(
        "--crossover", action="store_true", help="also time fp32 against bf16 at 1..6 rows x 160 tokens (all threads)"
    )
    args = p.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be >= 1")
    cores = torch.get_num_threads()
    peaks = {t: round(mm_peak(t, 3), 1) for t in range(1, cores + 1)}
    result = report(time_variants(args.repeats, args.steps, cores), peaks)
    result["meta"] = {
        "cpu": platform.processor() or platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_fast_bf16(),
        "dtype_auto": str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch."),
        "torch": torch.__version__,
    }
    m = result["meta"]
    print(f"CPU capability {m['capability']}, native bf16: {m['native_bf16']}, --dtype auto = {m['dtype_auto']}")
    print("torch.mm fp32 peak: " + ", ".join(f"{t} thread(s) {g} GFLOP/s" for t, g in peaks.items()))
    print(f"{'stage shape':<12} {'dtype':<9} {'threads':>7} {'ms/step':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for r in result["rows"]:
        mark = "  <- fastest" if r.get("fastest") else ""
        print(
            f"{r['shape']:<12} {r['dtype']:<9} {r['threads']:>7} {r['ms_per_step']:>8.2f} "
            f"{r['gflop_s']:>8.1f} {100 * r['share_of_mm_peak']:>7.1f}%{mark}"
        )
    if args.crossover:
        result["crossover"] = crossover(max(3, args.repeats // 2), args.steps)
        print(
            f"bf16 over fp32 by step size ({torch.get_num_threads()} threads; "
            f"auto uses bf16 from {AUTO_BF16_MIN_TOKENS} tokens):"
        )
        for c in result["crossover"]:
            print(
                f"  {c['tokens']:>5} tokens: fp32 {c['fp32_ms']:7.2f} ms, bf16 {c['bf16_ms']:7.2f} ms, "
                f"{c['bf16_speedup']:.2f}x"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
