"""Command lines generated from config dataclasses, with one-line errors.

Every entry point has a dataclass config whose fields carry their help text in
``field(metadata={"help": ...})``. ``parse_config`` turns the fields into ``--flags`` (so
``--help`` lists every option with its default), builds the config, and rejects bad values
before any work is done: one line, naming the option, exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, field, fields
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value that is out of range; the message names the flag."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def option(default: Any, help: str, **meta: Any) -> Any:
    """A config field with its ``--help`` text (and optional ``choices``/``metavar``/``cli``)."""
    return field(default=default, metadata={"help": help, **meta})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool, bool]:
    """(scalar type, is_optional, is_sequence) for an annotation like ``tuple[str, ...] | None``."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
        origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return typing.get_args(tp)[0], optional, True
    return tp, optional, False


def _add_field(parser: argparse.ArgumentParser, f: Field, tp: Any) -> None:
    scalar, _, is_seq = _base_type(tp)
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    help_text = f.metadata.get("help", "")
    kwargs: dict[str, Any] = {"default": default, "dest": f.name, "help": f"{help_text} (default: {default!r})"}
    if "choices" in f.metadata:
        kwargs["choices"] = f.metadata["choices"]
    if scalar is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = scalar
        if "choices" not in f.metadata:  # with choices, argparse shows {a,b,c} itself
            kwargs["metavar"] = f.metadata.get("metavar", scalar.__name__.upper())
        if is_seq:
            kwargs["nargs"] = "+"
    parser.add_argument(flag(f.name), **kwargs)


def build_parser(cls: type, prog: str, description: str) -> OneLineParser:
    parser = OneLineParser(prog=prog, description=description)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.metadata.get("cli", True):
            _add_field(parser, f, hints[f.name])
    return parser


def config_from_namespace(cls: type[C], ns: argparse.Namespace) -> C:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if not hasattr(ns, f.name):
            continue
        v = getattr(ns, f.name)
        if isinstance(v, list) and typing.get_origin(_strip_optional(hints[f.name])) is tuple:
            v = tuple(v)
        values[f.name] = v
    return cls(**values)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def below(cfg: Any, names: Sequence[str], minimum: float, strict: bool = False) -> list[str]:
    """Problems for the fields of ``cfg`` below ``minimum`` (or not above it, when ``strict``)."""
    bad = [n for n in names if (getattr(cfg, n) <= minimum if strict else getattr(cfg, n) < minimum)]
    op = ">" if strict else ">="
    return [f"{flag(n)} must be {op} {minimum} (got {getattr(cfg, n)})" for n in bad]


def refuse_changed(path: Any, saved: dict, current: dict, keys: Sequence[str]) -> None:
    """``--resume`` guard shared by the entry points: raise ConfigError with a one-line diff of the
    ``keys`` whose ``current`` value differs from the one ``saved`` in the checkpoint at ``path``
    (keys the checkpoint lacks are not compared; tuples and lists compare equal)."""
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    diff = [k for k in keys if k in saved and norm(saved[k]) != norm(current[k])]
    if diff:
        raise ConfigError(
            f"{path}: cannot resume with changed settings: "
            + ", ".join(f"{flag(k)} {saved[k]!r} -> {current[k]!r}" for k in diff)
        )


def non_finite(cfg: Any) -> list[str]:
    """Problems for float fields of ``cfg`` that are NaN or infinite (they pass every range test,
    since any comparison with NaN is false, and would then train on NaN)."""
    return [
        f"{flag(f.name)} must be a finite number (got {getattr(cfg, f.name)})"
        for f in fields(cfg)
        if isinstance(getattr(cfg, f.name), float) and not math.isfinite(getattr(cfg, f.name))
    ]


def check_config(cfg: Any) -> None:
    """Raise ConfigError with every problem of ``cfg`` on one line: non-finite numbers first (range
    checks are meaningless on them), else the config's own ``problems()``."""
    problems = non_finite(cfg) or cfg.problems()
    if problems:
        raise ConfigError("; ".join(problems))


def parse_config(
    cls: type[C],
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
) -> C:
    """Parse ``argv`` into a validated ``cls`` instance; exits 2 with one line on any problem.

    ``extra_args`` may add flags that are not plain fields (e.g. a repeatable ``--set``); their
    values land in the config's field of the same ``dest``.
    """
    parser = build_parser(cls, prog, description)
    if extra_args is not None:
        extra_args(parser)
    cfg = config_from_namespace(cls, parser.parse_args(argv))
    try:
        check_config(cfg)
    except ConfigError as e:
        parser.error(str(e))
    return cfg


def fail(prog: str, message: str) -> int:
    """Print a user-facing error as one line and return exit code 2 (for ``main``)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def run_main(
    cls: type[C],
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    run: Callable[[C], Any],
    user_errors: tuple[type[BaseException], ...],
) -> int:
    """The body of every ``main``: parse, run, turn user errors into one line and exit code 2,
    and Ctrl-C into exit code 130 (the trainer has saved a checkpoint by then)."""
    cfg = parse_config(cls, argv, prog, description)
    try:
        run(cfg)
    except (ConfigError, *user_errors) as e:
        return fail(prog, str(e))
    except KeyboardInterrupt:
        sys.stderr.write(f"\ninterrupted: checkpoint saved; continue with {prog} --resume\n")
        return 130
    return 0
