"""The one training loop that pretraining (part 3) and fine-tuning (part 4) share.

What it does for every caller: device and dtype choice, the optimizer (Adam, AdamW, or Muon for
the transformer blocks' weight matrices with AdamW for every other parameter), linear warmup then
a cosine, constant or warmup-stable-decay ("wsd": constant, then a linear decay over the last
``decay_fraction`` of the steps) learning rate, gradient clipping, gradient accumulation with the
loss normalised by the number of target tokens of the whole optimizer step (not per micro-batch),
periodic evaluation, a tqdm bar with loss and tokens/s, the metrics sink, atomic checkpoints that
hold everything needed to resume exactly (model, optimizer, step, data position, RNG), and DDP
under ``torchrun`` (gloo on CPU, nccl on GPU) where only rank 0 writes.

Data comes from a ``BatchSource``: anything with ``next_batch()`` returning
``{"input_ids", "labels"[, "attention_mask"]}`` (labels already aligned with the inputs, -100
where nothing is to be learned) plus ``state_dict``/``load_state_dict`` for its position.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from .checkpoint import FORMAT, non_finite_tensors
from .fileio import remove_stale_temps, save_atomic
from .model import IGNORE_INDEX
from .sink import MetricsSink

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")
OPTIMIZERS = ("adam", "adamw", "muon")
SCHEDULES = ("cosine", "constant", "wsd")
MUON_MOMENTUM = 0.95  # torch.optim.Muon's default (and Keller Jordan's): Nesterov momentum on the matrices


class BatchSource(Protocol):
    def next_batch(self) -> dict[str, torch.Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping knobs; entry points fill it from their own configs."""

    max_steps: int
    lr: float
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 0
    schedule: str = "cosine"  # one of SCHEDULES (see lr_at)
    min_lr_ratio: float = 0.1  # cosine and wsd decay to lr * min_lr_ratio at max_steps
    decay_fraction: float = 0.2  # wsd: the last decay_fraction of max_steps decays linearly
    grad_clip: float = 1.0  # 0 disables clipping (the norm is still logged)
    grad_accum: int = 1
    eval_every: int = 0  # 0: evaluate only at the end
    log_every: int = 1  # metrics.jsonl gets train loss every `log_every` steps
    checkpoint_every: int = 0  # 0: checkpoint only at the end
    stop_after: int = 0  # stop (with a checkpoint) after this many steps; 0 = run to max_steps
    device: str = "auto"
    dtype: str = "auto"
    # tokens of one micro-batch (pretraining: rows x context; fine-tuning: rows x the mean example
    # length; 0: unknown): picks auto's precision on a CPU
    step_tokens: int = 0
    compile: bool = False
    progress: bool = True
    desc: str = "train"
    extra_log: dict = field(default_factory=dict)  # constant scalars added to every log record


# ---------------------------------------------------------------------------------------------
# device, dtype, distributed


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES} (got {name!r})")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_info().local_rank if dist_info().world > 1 else 0)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps requested but MPS is not available on this machine")
    if name == "cuda" and dist_info().world > 1:
        return torch.device("cuda", dist_info().local_rank)
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (AVX-512 BF16 or AMX), where
    autocast pays off.

    Not oneDNN's ``_is_mkldnn_bf16_supported``: that is true on every AVX-512 core, bf16 native or
    emulated. On an Intel Xeon whose AVX-512 lacks BF16 and AMX (family 6 model 207 as this VM
    exposes it) it said yes, and a bf16 training step at the default pretraining shape took
    155.7 ms against 76.8 ms in fp32 (``bench/speed_paths.py``, 2 threads), so the main job
    pretrained at half its speed.
    """
    cpu = getattr(torch, "cpu", None)
    probes = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes)
    return bool({"avx512_bf16", "amx_bf16"} & _cpuinfo_flags())  # an older torch: the kernel's word


def _cpuinfo_flags() -> set[str]:
    """The first CPU's ``flags`` in /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# With ``--dtype auto`` on a CPU with native bf16, a training step of fewer tokens than this
# (``TrainerConfig.step_tokens``) runs in fp32: autocast casts every weight and activation
# each step, and at small steps the casts cost more than bf16's products save. Measured with
# bench/speed_paths.py (one full training step of the default model, 2 threads) on an Intel Xeon
# with AVX-512 BF16 and AMX (``--crossover``; the LM head in fp32 and attention in fp32 as shipped),
# bf16 over fp32: 0.91x at 160 tokens (the card's batch-1 fine-tuning), 1.04x at 320, 1.09x at 480,
# 1.13x at 640, 1.17x at 800, 1.24x at 960 (pretraining). (With bf16 attention it was 0.77x at 160
# and 0.98x at 640: the rule said 720 then.) CPUs without native bf16 run every step in fp32 anyway.
AUTO_BF16_MIN_TOKENS = 320


def resolve_dtype(name: str, device: torch.device, step_tokens: int = 0) -> torch.dtype:
    """Autocast dtype: ``auto`` is bf16 where the hardware runs it natively, else fp32; on a CPU
    also fp32 for steps of fewer than ``AUTO_BF16_MIN_TOKENS`` tokens (``step_tokens``, rows x
    context of one micro-batch; 0: unknown, treated as large)."""
    if name not in DTYPES:
        raise ValueError(f"--dtype must be one of {DTYPES} (got {name!r})")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        small = 0 < step_tokens < AUTO_BF16_MIN_TOKENS
        return torch.bfloat16 if cpu_has_fast_bf16() and not small else torch.float32
    return torch.float32


def describe_dtype(name: str, dtype: torch.dtype, device: torch.device, step_tokens: int = 0) -> str:
    """One line for the log: the autocast dtype a run trains in, and why."""
    chosen = str(dtype).removeprefix("torch.")
    if name != "auto":
        return f"{chosen} (--dtype {name})"
    if device.type != "cpu":
        return f"{chosen} (auto on {device.type})"
    if not cpu_has_fast_bf16():
        return f"{chosen} (auto: this CPU has no native bf16)"
    if dtype == torch.float32:
        return f"{chosen} (auto: {step_tokens}-token steps, under {AUTO_BF16_MIN_TOKENS}, are faster in fp32)"
    return f"{chosen} (auto: native bf16 on this CPU)"


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class DistInfo(NamedTuple):
    """Where this process sits in a torchrun job."""

    rank: int  # 0 .. world - 1; rank 0 writes the files
    world: int  # number of processes
    local_rank: int  # rank on this machine: its GPU index


def dist_info() -> DistInfo:
    """(rank, world, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return DistInfo(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group if there is one; True when running distributed."""
    if dist_info().world <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return True


def close_distributed() -> None:
    """Leave the torchrun process group together: every rank waits here, then the group is torn
    down. A rank that simply exits while another still holds the group can abort in gloo's
    threads ("terminate called without an active exception", seen once in CI)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process. Under torchrun this joins the process group if nobody has yet:
    entry points synchronise on files (tokenizer, token streams) before any Trainer exists,
    and a no-op barrier there would let other ranks read files rank 0 has not written."""
    if dist_info().world > 1 and not dist.is_initialized():
        # Both backends when CUDA is present: barriers run on gloo (CPU) and a later DDP on
        # CUDA tensors still gets nccl, so the Trainer's device choice is not constrained.
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# schedule and optimizer


def lr_at(step: int, cfg: TrainerConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then

    - ``cosine``: a half cosine from ``lr`` after warmup to ``lr * min_lr_ratio`` at ``max_steps``;
    - ``constant``: ``lr``;
    - ``wsd`` (warmup-stable-decay): ``lr`` until the last ``decay_fraction`` of ``max_steps``, then a
      linear decay to ``lr * min_lr_ratio`` at ``max_steps`` (never starting before warmup ends).
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    min_lr = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "wsd":
        start = max(float(cfg.warmup_steps), cfg.max_steps * (1.0 - cfg.decay_fraction))
        if step < start:
            return cfg.lr
        span = cfg.max_steps - start
        progress = min(1.0, (step - start) / span) if span > 0 else 1.0
        return cfg.lr - (cfg.lr - min_lr) * progress
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be one of {SCHEDULES} (got {cfg.schedule!r})")
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def muon_split(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """(Muon's, AdamW's) trainable ``(name, parameter)`` pairs for ``--optimizer muon``.

    Muon gets the hidden weight matrices: 2-D parameters of the transformer blocks
    (``transformer.h.*``: attention's fused q/k/v ``c_attn`` as one (3C, C) matrix, ``c_proj``,
    the MLP's ``c_fc``/``c_proj``, and LoRA's A/B factors when they are the trainable ones).
    AdamW gets everything else: the token embedding (which is also the tied ``lm_head``:
    ``named_parameters`` yields a shared tensor once), the position table, norm gains and biases.
    Frozen parameters (``requires_grad`` False, e.g. a LoRA run's base weights) go to neither.
    """
    hidden, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (hidden if name.startswith("transformer.h.") and p.ndim == 2 else rest).append((name, p))
    return hidden, rest


class MuonWithAdamW:
    """Muon on the hidden matrices and AdamW on the rest (see ``muon_split``), behind the part of
    the optimizer interface the trainer uses: ``param_groups`` (Muon's, then AdamW's: the same
    dicts, so setting a group's ``lr`` reaches the optimizer that owns it), ``state``, ``step``,
    ``zero_grad`` and ``state_dict``/``load_state_dict`` (``{"muon": ..., "adamw": ...}``).

    Muon runs with ``adjust_lr_fn="match_rms_adamw"`` (Moonshot, "Muon is Scalable for LLM
    Training"): its update of an A x B matrix is scaled by 0.2 * sqrt(max(A, B)), giving it about
    the RMS of an AdamW update, so both groups share the one ``--lr`` (and its schedule) and the
    one ``--weight-decay`` (decoupled in both: ``p *= 1 - lr * wd``).
    """

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.optimizers = {"muon": muon, "adamw": adamw}

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    @property
    def state(self) -> dict:
        """Per-parameter state of both (their parameters are disjoint)."""
        return {p: st for opt in self.optimizers.values() for p, st in opt.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers.values():
            opt.step()
        return loss

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise ValueError(
                f"optimizer state has parts {sorted(state)}, expected {sorted(self.optimizers)} "
                f"(a checkpoint of another --optimizer)"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def make_optimizer(model: nn.Module, cfg: TrainerConfig, device: torch.device) -> torch.optim.Optimizer | MuonWithAdamW:
    """Adam, AdamW, or Muon + AdamW (``MuonWithAdamW``) over the trainable parameters; weight decay
    only on matrices (not biases/norms)."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} (got {cfg.optimizer!r})")
    if cfg.optimizer == "muon":
        hidden, rest = muon_split(model)
        if not hidden:
            raise ValueError("optimizer 'muon': the model has no trainable 2-D weights under transformer.h.")
        params = [p for _, p in rest]
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if device.type in ("cuda", "cpu"):
        # One fused kernel per step instead of a loop of small ops: on a loaded CPU the unfused
        # multi-threaded loop stalls on every op (measured 1.1 s vs 0.4 s per step when shared).
        kwargs["fused"] = True
    if cfg.optimizer == "adam":
        # Adam's weight_decay is L2 in the gradient; AdamW's is decoupled.
        return torch.optim.Adam(groups, **kwargs)
    adamw = torch.optim.AdamW(groups, **kwargs)
    if cfg.optimizer == "adamw":
        return adamw
    # Muon has no fused or foreach kernel (torch 2.13): one matrix at a time, each orthogonalised
    # by 5 Newton-Schulz iterations in bf16 (deterministic on the CPU).
    muon = torch.optim.Muon(
        [p for _, p in hidden],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=MUON_MOMENTUM,
        nesterov=True,
        adjust_lr_fn="match_rms_adamw",
    )
    return MuonWithAdamW(muon, adamw)


# ---------------------------------------------------------------------------------------------
# the loop


class TrainingDiverged(RuntimeError):
    """A step whose loss or gradient norm is NaN or inf; raised before that step's update."""


def _non_finite_optimizer_state(state: dict, prefix: str = "") -> list[str]:
    """``"<param index>.<key>"`` of an optimizer state dict's float tensors holding NaN or inf
    (``"muon.<param index>.<key>"`` and so on for ``MuonWithAdamW``'s state of two optimizers)."""
    if "state" not in state:
        return [bad for name, part in state.items() for bad in _non_finite_optimizer_state(part, f"{prefix}{name}.")]
    return [
        f"{prefix}{i}.{k}"
        for i, st in state["state"].items()
        for k, v in st.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


@dataclass
class StepStats:
    loss: float
    n_targets: int
    n_tokens: int
    correct: int
    grad_norm: float
    lr: float


class Trainer:
    """Runs ``cfg.max_steps`` optimizer steps of ``model`` on ``source``.

    evaluate: ``fn(model) -> {name: value}`` called (no grad, eval mode) every ``eval_every`` steps
        and at the end; its values are logged under ``val/``.
    checkpoint_path: where the resumable checkpoint goes (rank 0 only); None disables it.
    checkpoint_meta: plain data stored in every checkpoint (tokenizer, configs, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        source: BatchSource,
        cfg: TrainerConfig,
        *,
        sink: MetricsSink | None = None,
        evaluate: Callable[[nn.Module], dict] | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_meta: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device, cfg.step_tokens)
        self.dtype_note = describe_dtype(cfg.dtype, self.dtype, self.device, cfg.step_tokens)
        self.distributed = init_distributed(self.device)
        self.rank, self.world, _ = dist_info()
        self.model = model.to(self.device)  # the unwrapped module: what checkpoints save
        self.source = source
        self.sink = sink or MetricsSink(None)
        self.evaluate_fn = evaluate
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.checkpoint_meta = checkpoint_meta or {}
        self.saved_step: int | None = None  # step of the checkpoint this run last wrote or resumed from
        if self.checkpoint_path is not None and self.rank == 0:
            remove_stale_temps(self.checkpoint_path)  # left by a kill -9 during a save
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.step = 0
        self.tokens_seen = 0  # tokens processed by training steps (padding included), all ranks
        self.history: list[dict] = []  # every logged record, for callers and tests
        self._step_start: tuple[dict, torch.Tensor] | None = None
        self.forward_model = self._wrap(self.model)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": FORMAT,
            "model": self.model.state_dict(),
            "trainer": {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "optimizer": self.optimizer.state_dict(),
                "rng": rng,
                "source": self.source.state_dict(),
                "config": asdict(self.cfg),
            },
            **self.checkpoint_meta,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        """Continue from a checkpoint written by ``state_dict`` (strict weights, exact position)."""
        self.model.load_state_dict(ckpt["model"], strict=True)
        state = ckpt["trainer"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.source.load_state_dict(state["source"])
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.saved_step = self.step
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save_checkpoint(self) -> Path | None:
        """Write the resumable checkpoint atomically (rank 0). Weights or optimizer state that hold
        NaN/inf are never written: ``TrainingDiverged`` instead, and the last checkpoint stays."""
        if self.checkpoint_path is None:
            return None
        state = self.state_dict()  # every rank checks (same weights under DDP): they all stop together
        bad = non_finite_tensors(state["model"]) + [
            f"optimizer state {k}" for k in _non_finite_optimizer_state(state["trainer"]["optimizer"])
        ]
        if bad:
            raise TrainingDiverged(
                f"step {self.step}: {len(bad)} weight/optimizer tensors are not finite (NaN or "
                f"inf, e.g. {bad[0]}) after the update; not saved ({self._kept()}); "
                f"lower --lr or check the data"
            )
        path = save_atomic(state, self.checkpoint_path) if self.rank == 0 else None
        self.saved_step = self.step
        return path

    def _kept(self) -> str:
        """What the last good checkpoint is, for messages about a step that went wrong."""
        if self.checkpoint_path is None:
            return "checkpoints are off: nothing saved"
        if self.saved_step is not None:
            return f"the last good checkpoint, step {self.saved_step}, is kept in {self.checkpoint_path}"
        if self.checkpoint_path.exists():
            return f"{self.checkpoint_path} is left as it was: this run saved no checkpoint"
        return "no checkpoint was saved yet"

    # -- one optimizer step -----------------------------------------------------------------

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, with_accuracy: bool = True) -> StepStats:
        """One optimizer step over ``grad_accum`` micro-batches.

        Each micro-batch contributes ``sum of token losses / N`` where N is the number of target
        tokens in the WHOLE step (over all micro-batches and ranks): the gradient is exactly that
        of one big batch, however unevenly the targets fall into micro-batches.
        """
        # Where this step started: a Ctrl-C in the middle rolls back to it (see ``fit``).
        self._step_start = (self.source.state_dict(), torch.get_rng_state())
        micro = [self._to_device(self.source.next_batch()) for _ in range(self.cfg.grad_accum)]
        n_tgt = self._target_count(micro)
        lr = self._set_lr()
        loss_sum, correct, n_tokens = self._forward_backward(micro, n_tgt, with_accuracy)
        grad_norm = self._clip()
        step_loss = (loss_sum / n_tgt).item()
        self._check_finite(step_loss, grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._step_start = None  # the step is complete: nothing to roll back any more
        return StepStats(
            loss=step_loss,
            n_targets=int(n_tgt.item()),
            n_tokens=n_tokens * self.world,
            correct=int(correct.item()),
            grad_norm=grad_norm,
            lr=lr,
        )

    def _target_count(self, micro: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Target tokens of the whole step: every micro-batch, every rank."""
        n_tgt = torch.stack([(b["labels"] != IGNORE_INDEX).sum() for b in micro]).sum()
        n_tgt = self._all_reduce(n_tgt)
        if n_tgt.item() == 0:
            raise ValueError("a training step has no target tokens (every label is -100)")
        return n_tgt

    def _set_lr(self) -> float:
        """Put this step's scheduled learning rate into every parameter group."""
        lr = lr_at(self.step, self.cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def _forward_backward(
        self, micro: list[dict[str, torch.Tensor]], n_tgt: torch.Tensor, with_accuracy: bool
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Accumulate the step's gradient over ``micro``; returns (summed token loss and correct
        predictions, both over all ranks; tokens this rank processed)."""
        model = self.forward_model
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n_tokens = 0
        for i, b in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if (last or not self.distributed) else model.no_sync()
            with sync:
                with autocast(self.device, self.dtype):
                    # the fused LM head + cross-entropy: summed loss, no (N, V) logits in memory
                    out = model(
                        b["input_ids"],
                        attention_mask=b.get("attention_mask"),
                        targets=b["labels"],
                        with_accuracy=with_accuracy,
                        doc_ids=b.get("doc_ids"),
                    )
                loss = out.loss_sum
                # DDP averages gradients over ranks; multiply by world so the result is the
                # gradient of (global token-summed loss / global target count).
                (loss * self.world / n_tgt).backward()
            loss_sum += loss.detach()
            if with_accuracy:  # an argmax over the vocabulary: only on steps that get logged
                correct += out.n_correct
            n_tokens += int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel()
        return self._all_reduce(loss_sum), self._all_reduce(correct), n_tokens

    def _check_finite(self, loss: float, grad_norm: float) -> None:
        """Stop before a non-finite update reaches the weights: the model and the last checkpoint
        stay as they were after the previous step."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            return
        self.optimizer.zero_grad(set_to_none=True)
        self._step_start = None
        raise TrainingDiverged(
            f"step {self.step + 1}: loss {loss} / gradient norm {grad_norm} is not finite; "
            f"stopped before the update ({self._kept()}); lower --lr or check the data"
        )

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            t = t.clone()
            dist.all_reduce(t)
        return t

    # -- evaluation and logging ---------------------------------------------------------------

    def run_evaluation(self) -> dict:
        if self.evaluate_fn is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.dtype):
                result = self.evaluate_fn(self.model)
        finally:
            self.model.train(was_training)
        record = {f"val/{k}": v for k, v in result.items()}
        self._log(record)
        return result

    def _log(self, record: dict) -> None:
        record = {**self.cfg.extra_log, **record}
        self.history.append({"step": self.step, **record})
        if self.rank == 0:
            self.sink.log(record, self.step)

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> list[dict]:
        """Train from ``self.step`` to ``max_steps`` (or ``stop_after``); returns the log history.

        Ctrl-C saves a checkpoint at the last finished step before re-raising, so ``--resume``
        continues exactly from there.
        """
        cfg = self.cfg
        end = min(cfg.max_steps, cfg.stop_after) if cfg.stop_after > 0 else cfg.max_steps
        if self.step >= end:  # e.g. --resume of a finished run: nothing to train or re-log
            return self.history
        self.model.train()
        bar = tqdm(
            total=end,
            initial=self.step,
            desc=cfg.desc,
            dynamic_ncols=True,
            disable=not (cfg.progress and self.rank == 0),
        )
        try:
            self._train_until(end, bar)
        except KeyboardInterrupt:
            bar.close()
            self._forget_unfinished_step(end)
            self.save_checkpoint()
            raise
        bar.close()
        if self.step >= cfg.max_steps:
            self.run_evaluation()
        self.save_checkpoint()
        return self.history

    def _train_until(self, end: int, bar: tqdm) -> None:
        """Steps up to ``end``, with the train-loss records, evaluations and checkpoints due."""
        cfg = self.cfg
        t_last, tokens_since = time.perf_counter(), 0
        while self.step < end:
            log_now = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == end
            stats = self.train_step(with_accuracy=log_now)
            self.tokens_seen += stats.n_tokens
            tokens_since += stats.n_tokens
            if log_now:
                now = time.perf_counter()
                tps = tokens_since / max(now - t_last, 1e-9)
                t_last, tokens_since = now, 0
                self._log_train(stats, tps)
                bar.set_postfix(loss=f"{stats.loss:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
            bar.update(1)
            if cfg.eval_every > 0 and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                self.run_evaluation()
            if cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0 and self.step < end:
                self.save_checkpoint()

    def _log_train(self, stats: StepStats, tokens_per_s: float) -> None:
        self._log(
            {
                "train/loss": stats.loss,
                "train/token_acc": stats.correct / stats.n_targets,
                "train/lr": stats.lr,
                "train/grad_norm": stats.grad_norm,
                "train/tokens_per_s": tokens_per_s,
            }
        )

    def _forget_unfinished_step(self, end: int) -> None:
        """After a Ctrl-C inside a step: that step never reached the optimizer, so its data and
        RNG draws are undone and its partial gradients dropped (the checkpoint then resumes it)."""
        if self._step_start is not None and self.step < end:
            self.source.load_state_dict(self._step_start[0])
            torch.set_rng_state(self._step_start[1])
            self.optimizer.zero_grad(set_to_none=True)
