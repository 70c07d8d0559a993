"""The typed config parts that entry points compose: optimisation and execution settings.

Each entry point nests them with ``cli.part(default, omit=..., help=...)`` and its own defaults
(pretraining: AdamW at 5e-3; fine-tuning: Adam at 5e-5), so a setting is defined, checked and
turned into ``TrainerConfig`` fields in one place. ``OptimConfig`` is part of a run's identity (it
changes the result); ``ExecConfig`` is not (device, dtype, threads, generation batch, progress).
"""

from __future__ import annotations

from dataclasses import dataclass

from .cli import below, option
from .trainer import AUTO_BF16_MIN_TOKENS, DEVICES, DTYPES, OPTIMIZERS, SCHEDULES


@dataclass
class OptimConfig:
    """How the weights move: optimizer, learning-rate schedule, batch, clipping."""

    lr: float = option(1e-3, "peak learning rate")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    schedule: str = option("cosine", "LR schedule after warmup", choices=SCHEDULES)
    warmup_steps: int = option(0, "linear warmup steps")
    min_lr_ratio: float = option(0.1, "final LR as a fraction of --lr (cosine and wsd decay)")
    decay_fraction: float = option(0.2, "share of the steps at the end in which wsd decays to --lr x --min-lr-ratio")
    weight_decay: float = option(0.0, "decoupled weight decay (matrices only)")
    beta1: float = option(0.9, "Adam beta1")
    beta2: float = option(0.95, "Adam beta2")
    batch_size: int = option(16, "examples per micro-batch (per process)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    grad_clip: float = option(1.0, "gradient-norm clip; 0 disables")

    def problems(self) -> list[str]:
        p = below(self, ("batch_size", "grad_accum"), 1)
        p += below(self, ("warmup_steps", "weight_decay", "grad_clip"), 0)
        p += below(self, ("lr",), 0, strict=True)
        if not 0 <= self.min_lr_ratio <= 1:
            p.append(f"--min-lr-ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if not 0 < self.decay_fraction <= 1:
            p.append(f"--decay-fraction must be in (0, 1] (got {self.decay_fraction})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                p.append(f"--{name} must be in [0, 1) (got {getattr(self, name)})")
        return p

    def trainer_fields(self) -> dict:
        """The ``TrainerConfig`` fields this part sets (batch size is the data loader's)."""
        names = ("lr", "optimizer", "schedule", "warmup_steps", "min_lr_ratio", "decay_fraction")
        names += ("weight_decay", "beta1", "beta2", "grad_accum", "grad_clip")
        return {n: getattr(self, n) for n in names}


@dataclass
class ExecConfig:
    """Where and how a run executes; none of it is part of the run's identity."""

    device: str = option("auto", "device", choices=DEVICES)
    dtype: str = option(
        "auto",
        "autocast dtype for training (auto: bf16 where the hardware has it, fp32 for CPU steps under "
        f"{AUTO_BF16_MIN_TOKENS} tokens)",
        choices=DTYPES,
    )
    compile: bool = option(False, "torch.compile the model")
    threads: int = option(0, "CPU threads for PyTorch (0: its default, one per core); 1 helps on a busy machine")
    eval_batch_size: int = option(128, "prompts generated at once (a sampled reply does not depend on it)")
    progress: bool = option(True, "show progress bars")

    def problems(self) -> list[str]:
        return below(self, ("eval_batch_size",), 1) + below(self, ("threads",), 0)

    def trainer_fields(self) -> dict:
        return {"device": self.device, "dtype": self.dtype, "compile": self.compile, "progress": self.progress}
