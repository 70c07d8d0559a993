"""Command lines generated from composed config dataclasses, with one-line errors.

Every entry point has a dataclass config whose fields carry their help text in
``field(metadata={"help": ...})``; shared typed parts (``configs.OptimConfig``,
``configs.ExecConfig``, part 4's ``DataConfig`` and ``EvalConfig``, the model's ``GPTConfig``)
are nested in it with ``part(default, omit=..., help=...)``. ``parse_config`` flattens the tree
into ``--flags`` named after the leaf fields (the flags users type stay flat: ``--lr``, not
``--optim.lr``; a name may appear once per tree), builds the nested config, and rejects bad values
before any work is done: one line, naming the option, exit code 2. ``compose(cls, **flat)`` builds
a config from the same flat names (tests and scripts), ``flat_dict(cfg)`` is the flat view that
checkpoints store and ``--resume`` compares.
"""

from __future__ import annotations

import argparse
import copy
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


def part(default: Any, omit: Sequence[str] = (), help: dict[str, str] | None = None, checked: bool = True) -> Any:
    """A nested config part: ``default`` (an instance, copied per config) gives the entry point's
    defaults; ``omit`` names leaf fields that are not options of this entry point (they keep their
    default); ``help`` overrides a leaf's help text for this entry point; ``checked=False`` when the
    entry point checks the part's values itself (the part's own ``problems()`` is then not called)."""
    return field(
        default_factory=lambda: copy.deepcopy(default),
        metadata={"part": True, "omit": tuple(omit), "help_for": dict(help or {}), "checked": checked},
    )


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_part(f: Field) -> bool:
    return bool(f.metadata.get("part"))


def _leaves(cls: type, default: Any = None, omit: Sequence[str] = (), help_for: dict | None = None):
    """``(field, type, default value, help text)`` for every option of ``cls``, nested parts flattened."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if _is_part(f):
            sub = f.default_factory() if default is None else getattr(default, f.name)  # type: ignore[misc]
            yield from _leaves(type(sub), sub, f.metadata["omit"], f.metadata["help_for"])
            continue
        if f.name in omit or not f.metadata.get("cli", True):
            continue
        if default is not None:
            value = getattr(default, f.name)
        else:
            value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        yield f, hints[f.name], value, (help_for or {}).get(f.name, f.metadata.get("help", ""))


def options(cls: type) -> list[tuple[str, Any, str]]:
    """``(name, default, help text)`` of every command-line option of ``cls``, parts flattened."""
    return [(f.name, default, help_text) for f, _, default, help_text in _leaves(cls)]


def leaf_names(cls: type) -> list[str]:
    """The option names of ``cls`` in order (nested parts flattened); refuses a name used twice."""
    names = [name for name, _, _ in options(cls)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"{cls.__name__}: options defined twice in its parts: {twice}")
    return names


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


def _add_field(parser: argparse.ArgumentParser, f: Field, tp: Any, default: Any, help_text: str) -> None:
    scalar, _, is_seq = _base_type(tp)
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
    leaf_names(cls)  # refuses a name defined twice
    for f, tp, default, help_text in _leaves(cls):
        _add_field(parser, f, tp, default, help_text)
    return parser


def _build(cls: type[C], values: dict[str, Any], default: Any = None, omit: Sequence[str] = ()) -> C:
    """``cls`` with its leaves from ``values`` (flat names) and the rest (and the ``omit``ted ones)
    from ``default`` (or the field defaults); nested parts are built the same way from their
    entry-point defaults."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if _is_part(f):
            sub = f.default_factory() if default is None else getattr(default, f.name)  # type: ignore[misc]
            kwargs[f.name] = _build(type(sub), values, sub, f.metadata["omit"])
        elif f.name in values and f.name not in omit:
            v = values[f.name]
            if isinstance(v, list) and typing.get_origin(_strip_optional(hints[f.name])) is tuple:
                v = tuple(v)
            kwargs[f.name] = v
        elif default is not None:
            kwargs[f.name] = getattr(default, f.name)
    return cls(**kwargs)


def config_from_namespace(cls: type[C], ns: argparse.Namespace) -> C:
    return _build(cls, vars(ns))


def compose(cls: type[C], **flat: Any) -> C:
    """``cls`` from flat option names, e.g. ``compose(SFTConfig, lr=1e-3, n_pairs=50)``: each name
    lands in the part that holds it. An unknown name is a TypeError, as for a plain dataclass."""
    unknown = sorted(set(flat) - set(_all_leaf_names(cls)))
    if unknown:
        raise TypeError(f"{cls.__name__} has no option {unknown}")
    return _build(cls, flat)


def _all_leaf_names(cls: type) -> list[str]:
    """Every leaf field name that ``compose`` accepts: the options, and top-level non-CLI fields."""
    return [f.name for f in fields(cls) if not _is_part(f) and not f.metadata.get("cli", True)] + leaf_names(cls)


def flat_dict(cfg: Any, omit: Sequence[str] = ()) -> dict[str, Any]:
    """``{leaf name: value}`` of a composed config, parts flattened in field order and their omitted
    fields left out (the same dict ``dataclasses.asdict`` gave when the config was flat)."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if _is_part(f):
            out.update(flat_dict(value, f.metadata["omit"]))
        elif f.name not in omit:
            out[f.name] = copy.deepcopy(value)
    return out


def parts(cfg: Any) -> list[Any]:
    """``cfg`` and every nested part of it whose problems the CLI checks, depth first."""
    found = [cfg]
    for f in fields(cfg):
        if _is_part(f) and f.metadata["checked"]:
            found += parts(getattr(cfg, f.name))
    return found


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def below(cfg: Any, names: Sequence[str], minimum: float, strict: bool = False) -> list[str]:
    """Problems for the options of ``cfg`` (its own or its parts') below ``minimum`` (or not above
    it, when ``strict``)."""
    values = flat_dict(cfg)
    bad = [n for n in names if (values[n] <= minimum if strict else values[n] < minimum)]
    op = ">" if strict else ">="
    return [f"{flag(n)} must be {op} {minimum} (got {values[n]})" for n in bad]


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
    """Problems for float fields of ``cfg`` (and its parts) that are NaN or infinite (they pass every
    range test, since any comparison with NaN is false, and would then train on NaN)."""
    return [
        f"{flag(name)} must be a finite number (got {value})"
        for name, value in flat_dict(cfg).items()
        if isinstance(value, float) and not math.isfinite(value)
    ]


def check_config(cfg: Any) -> None:
    """Raise ConfigError with every problem of ``cfg`` on one line: non-finite numbers first (range
    checks are meaningless on them), else the ``problems()`` of every part, then of the config."""
    problems = non_finite(cfg) or [p for c in parts(cfg) if hasattr(c, "problems") for p in c.problems()]
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
