"""Atomic file writes for every file the project produces: a reader never sees half a file.

Every write goes to a temporary file in the target's directory (same filesystem, so the rename
is atomic), is fsynced, then ``os.replace``d onto the final path: an interrupted write (an
exception, Ctrl-C, a ``kill -9``) leaves the previous content in place. ``atomic_file`` is the
one place this happens; ``write_text_atomic`` (JSON, CSV, ...), ``save_atomic`` (``torch.save``)
and ``save_figure_atomic`` (matplotlib) are its callers. A ``kill -9`` can still leave the temp
file behind: ``remove_stale_temps`` deletes those where a run starts writing.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in ``path``'s directory (same filesystem, so the rename is atomic), with the
    permissions a plain ``open`` would give (mkstemp's default 0600 would surprise users)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


# mkstemp's names: prefix + 8 characters from this alphabet + suffix (CPython's tempfile)
_TEMP_RANDOM = "[a-z0-9_]{8}"


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files an interrupted atomic write of ``path`` left beside it
    (``.<name>.<8 random chars>.tmp``: a ``kill -9`` between ``mkstemp`` and ``os.replace``).

    Call it where a run starts writing into its folder, before its first write of ``path``, and
    only from the one process that writes there: a temp file of a save in progress looks the
    same. Other files are never touched. Returns the removed paths."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    ours = re.compile(re.escape(f".{path.name}.") + _TEMP_RANDOM + re.escape(".tmp"))
    removed = []
    for p in path.parent.iterdir():
        if ours.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync and rename it onto ``path``.

    On any error (or Ctrl-C) the temp file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON, CSV, ...) atomically."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def save_figure_atomic(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` (a matplotlib Figure) to ``path`` atomically, in the format its suffix names."""
    path = Path(path)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or None, **savefig_kwargs)
    return path
