"""Pretraining data: documents -> one uint16 token stream on disk -> shuffled fixed-length windows.

The stream is the documents joined with EOS after each one, stored as a flat ``uint16`` file and
read back through ``numpy.memmap`` (the corpus never has to fit in RAM twice). ``TokenWindows`` cuts
it into non-overlapping windows of ``block_size + 1`` tokens and serves them in a seeded random
order per epoch; its position (epoch, index) is part of every checkpoint, so a resumed run reads
exactly the windows the uninterrupted run would have read. Under DDP each rank takes its own
slice of every global batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_file
from .model import IGNORE_INDEX
from .tokenizer import RetailTokenizer


def encode_documents(docs: Sequence[str], tokenizer: RetailTokenizer) -> np.ndarray:
    """Token ids of ``docs`` with EOS after each document, as a uint16 array."""
    if tokenizer.vocab_size > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"vocab_size {tokenizer.vocab_size} does not fit in uint16")
    out: list[int] = []
    for ids in tokenizer.encode_batch(docs):
        out.extend(ids)
        out.append(tokenizer.eos_id)
    return np.asarray(out, dtype=np.uint16)


def write_tokens(tokens: np.ndarray, path: str | os.PathLike) -> Path:
    """Write the stream to ``path`` atomically (``fileio.atomic_file``: temp file, fsync, rename)."""
    path = Path(path)
    with atomic_file(path, "wb") as f:
        f.write(tokens.astype(np.uint16).tobytes())
    return path


def read_tokens(path: str | os.PathLike) -> np.ndarray:
    return np.memmap(path, dtype=np.uint16, mode="r")


def split_documents(docs: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Whole documents go to train or validation (never a window straddling both)."""
    if len(docs) < 2:
        raise ValueError("need at least 2 documents to hold some out for validation")
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(len(docs) - 1, max(1, round(len(docs) * val_fraction)))
    val_idx = set(order[:n_val])
    return ([d for i, d in enumerate(docs) if i not in val_idx], [d for i, d in enumerate(docs) if i in val_idx])


def document_starts(tokens: np.ndarray, eos_id: int, block_size: int) -> np.ndarray:
    """Window starts at document boundaries: where each document begins (the stream's start and
    every position after an EOS) and, in a document longer than a window, every ``block_size``
    tokens into it (so no text is left unread); only starts from which a whole window of
    ``block_size + 1`` tokens fits in the stream."""
    begins = np.concatenate(([0], np.flatnonzero(np.asarray(tokens) == eos_id) + 1))
    ends = np.append(begins[1:], len(tokens))
    counts = 1 + np.maximum(0, (ends - begins - 2) // block_size)  # windows each document needs
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # k-th window of its document
    starts = np.repeat(begins, counts) + block_size * k
    return starts[starts + block_size + 1 <= len(tokens)].astype(np.int64)


def document_ids(input_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, T) index of the document each input token belongs to within its window: an EOS closes
    its document, the token after it opens the next (``GPT.forward(doc_ids=...)``)."""
    eos = (input_ids == eos_id).long()
    return eos.cumsum(dim=1) - eos


def window_batch(rows: np.ndarray, eos_id: int | None) -> dict[str, torch.Tensor]:
    """Inputs and next-token labels of windows of ``block_size + 1`` tokens; with ``eos_id``,
    also their ``doc_ids`` (attention kept inside each document)."""
    chunk = torch.from_numpy(rows.astype(np.int64))  # (B, block + 1)
    batch = {"input_ids": chunk[:, :-1], "labels": chunk[:, 1:]}
    if eos_id is not None:
        batch["doc_ids"] = document_ids(batch["input_ids"], eos_id)
    return batch


class TokenWindows:
    """Random windows of a token stream, resumable, rank-sharded.

    Without ``starts`` the windows are the stream's non-overlapping ``block_size`` cuts, so most
    begin inside a document. With ``starts`` (``document_starts``) every window begins where a
    document begins: each token is predicted with its document's beginning in view (never an
    agent's reply without the message it answers), and an epoch is one window per document start
    (the windows overlap: a document is first in one window and later in its predecessors').
    With ``eos_id`` every batch also says which document each token belongs to (``doc_ids``).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        starts: np.ndarray | None = None,
        eos_id: int | None = None,
    ) -> None:
        self.tokens, self.block, self.batch = tokens, block_size, batch_size
        self.eos_id = eos_id
        self.seed, self.rank, self.world = seed, rank, world_size
        self.starts = starts
        self.n_windows = (len(tokens) - 1) // block_size if starts is None else len(starts)
        if self.n_windows < batch_size * world_size:
            raise ValueError(
                f"token stream of {len(tokens)} tokens has {self.n_windows} windows of "
                f"{block_size}; a batch needs {batch_size * world_size}: use more text or "
                f"a smaller --block-size/--batch-size"
            )
        self.epoch, self.index = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_windows, generator=g)

    def next_batch(self) -> dict[str, torch.Tensor]:
        global_batch = self.batch * self.world
        if self.index + global_batch > self.n_windows:  # drop the ragged end of the epoch
            self.epoch, self.index = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        start = self.index + self.rank * self.batch
        picked = self._perm[start : start + self.batch]
        starts = (picked * self.block).tolist() if self.starts is None else self.starts[picked.numpy()].tolist()
        self.index += global_batch
        return window_batch(np.stack([self.tokens[s : s + self.block + 1] for s in starts]), self.eos_id)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._perm = self._permutation(self.epoch)


def sequential_batches(
    tokens: np.ndarray,
    block_size: int,
    batch_size: int,
    max_batches: int,
    starts: np.ndarray | None = None,
    eos_id: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The first ``max_batches`` batches of windows in stream order: a fixed validation set. The
    windows are consecutive cuts, or begin at ``starts`` (``document_starts``) when the training
    windows do, and carry ``doc_ids`` when given ``eos_id``, so the validation loss measures what
    training optimises."""
    starts = np.arange((len(tokens) - 1) // block_size) * block_size if starts is None else starts
    n = min(len(starts), batch_size * max_batches)
    if n == 0:
        raise ValueError(f"validation stream of {len(tokens)} tokens is shorter than one block ({block_size})")
    rows = np.stack([tokens[s : s + block_size + 1] for s in starts[:n]])
    return [window_batch(rows[i : i + batch_size], eos_id) for i in range(0, n, batch_size)]


@torch.no_grad()
def mean_loss(model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Token-weighted mean loss and token accuracy of ``model`` over ``batches``."""
    device = next(model.parameters()).device
    total, count, correct = 0.0, 0, 0
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        out = model(
            b["input_ids"],
            attention_mask=b.get("attention_mask"),
            targets=b["labels"],
            with_accuracy=True,
            doc_ids=b.get("doc_ids"),
        )
        total += out.loss_sum.item()
        count += int((b["labels"] != IGNORE_INDEX).sum())
        correct += int(out.n_correct)
    return {"loss": total / max(count, 1), "token_acc": correct / max(count, 1)}
