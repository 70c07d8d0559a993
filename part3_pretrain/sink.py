"""The one metrics sink: ``log(dict, step)`` to JSONL, optionally mirrored to TensorBoard.

Plots and reports read the JSONL back (``read_metrics``); the experiment mode turns on the
TensorBoard mirror so runs can be compared side by side. Only the main process writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .fileio import write_text_atomic


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """All records of a metrics JSONL file (an absent file is an empty list).

    A torn LAST line (the process was killed mid-write) is dropped: that record was never
    complete. A bad line anywhere else is damage, and raises ValueError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    records = []
    for k, (i, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i}: not a JSON record") from None
    return records


class MetricsSink:
    """Append-only JSONL of ``{"step": int, **metrics}`` records.

    ``resume_step``: when continuing a run, records after that step (written by the interrupted
    run after its last checkpoint) are dropped so the file matches the resumed state exactly.
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        tensorboard_dir: str | os.PathLike | None = None,
        enabled: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None and enabled else None
        self._writer = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # atomic: a kill -9 during the rewrite must not lose the records being kept
            kept = (
                [] if resume_step is None else [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            )
            write_text_atomic("".join(json.dumps(r) + "\n" for r in kept), self.path)
        if tensorboard_dir is not None and enabled:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency, imported lazily

            # TensorBoard drops every event at or after purge_step; the resumed run continues
            # after resume_step, so the checkpoint step's own scalars must survive.
            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=purge)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.path is None:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def _plain(v: Any) -> Any:
    """Tensors and numpy scalars to Python numbers so JSON can hold them."""
    if hasattr(v, "item"):
        return v.item()
    return v
