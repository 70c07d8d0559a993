"""The user's data files read as text, and the one error for a bad one (part 3's corpus, part 4's pairs).

``read_text`` returns a file's text with a UTF-8 BOM stripped and CRLF / CR line ends made
``\\n``, or raises ``DataError`` for a missing, directory, unreadable, non-UTF-8 or empty file.
``DataError``'s message is one line, ``<path>: <problem>``, ``<path>:<line>: <problem>`` or
``<path>: record <N>: <problem>``, so a user can jump straight to the bad place.
"""

from __future__ import annotations

import os
from pathlib import Path


class DataError(ValueError):
    """A problem with the user's data file; ``str(err)`` is one line naming file and place."""

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None, *, record: bool = False) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        if line is None:
            where = f"{self.path}:"
        elif record:
            where = f"{self.path}: record {line}:"
        else:
            where = f"{self.path}:{line}:"
        # Messages go to a terminal one per line; never let a path or value break that.
        message = f"{where} {problem}".replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(message)


def read_text(path: str | os.PathLike, shown: str | os.PathLike | None = None) -> str:
    """The file's text; a missing, directory, unreadable, non-UTF-8 or empty file is a DataError
    naming ``shown`` (default: ``path``). A BOM (Excel's UTF-8 export) is dropped, line ends are
    normalised to ``\\n``."""
    path = Path(path)
    shown = path if shown is None else shown
    if not path.exists():
        raise DataError(shown, "no such file")
    if path.is_dir():
        raise DataError(shown, "is a directory, not a regular file")
    if not path.is_file():
        raise DataError(shown, "not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(shown, f"cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        problem = f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); save the file as UTF-8"
        raise DataError(shown, problem, line) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError(shown, "file is empty")
    return text
