"""The thin command-line layer shared by every script: flags generated from the config dataclasses,
the data set arguments, ``--config`` re-runs, and the one place that turns errors into exit codes.

A setting is written once, in its config dataclass, with the flag that sets it::

    k: int = field(default=7, metadata=cli.flag("--k", "seeds: the K largest distinct VLM values"))

:func:`add_config_flags` adds every annotated field to a parser (default None, so only flags the
user gives override the dataclass; the help text shows the dataclass default), and
:func:`config_from_args` builds the config from the parsed flags, optionally on top of the config
recorded in ``RUN/<stage>_config.json`` (``--config``). :func:`main` runs a script's main function:
:class:`~rsvg_zeroov.runner.UsageError`, ``ModelNotFound``, ``ImageError``, ``DatasetError`` and
``ValueError`` become one ``error: ...`` line on stderr and exit status 2 (``RSVG_ZEROOV_TRACEBACK=1``
shows the traceback instead); notes and progress of the library go to stderr through ``logging``.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable

from .runner import UsageError, add_dataset_args, read_stage_config  # noqa: F401 - re-exported

FLAG_KEY = "rsvg_zeroov.flag"


def flag(name: str, help: str = "", *, choices=None, aliases: tuple[str, ...] = (), store_false: bool = False,
         store_true: bool = False, metavar: str | None = None, parse: Callable[[str], Any] | None = None) -> dict:
    """``dataclasses.field`` metadata declaring a field's command-line flag.

    store_false: a bool field set to False by this flag (``--no-sam`` for ``sam=True``);
    store_true: a bool field set to True by this flag (``--save-maps``); otherwise bools get
    ``--x/--no-x``. parse: a converter for the flag's text (tuples of numbers have one built in).
    """
    return {FLAG_KEY: {"name": name, "help": help, "choices": choices, "aliases": tuple(aliases),
                       "store_false": store_false, "store_true": store_true, "metavar": metavar, "parse": parse}}


def flagged_fields(config_cls) -> list[tuple[dataclasses.Field, dict]]:
    """(field, flag spec) of every field of ``config_cls`` that declares a flag, in field order."""
    return [(f, f.metadata[FLAG_KEY]) for f in dataclasses.fields(config_cls) if FLAG_KEY in f.metadata]


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _show(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _sequence_parser(item: type, name: str):
    def parse(text: str):
        try:
            return tuple(item(v) for v in text.replace(" ", "").split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} expects comma-separated {item.__name__}s like "
                                             f"{'16,17,18' if item is int else '0.1,0.3'}, got {text!r}") from None
    return parse


def _scalar_type(annotation):
    """int / float / str from an annotation like ``int | None``; (tuple, item) for tuples."""
    base = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(base) is tuple:
        return tuple, typing.get_args(base)[0]
    return base, None


def add_config_flags(parser, config_cls, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per annotated field of ``config_cls`` (see :func:`flag`) to ``parser`` or a group."""
    hints = typing.get_type_hints(config_cls)
    for f, spec in flagged_fields(config_cls):
        if f.name in skip:
            continue
        names = [spec["name"], *spec["aliases"]]
        text = f"{spec['help']} (default: {_show(_default(f))})".lstrip()
        base, item = _scalar_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
        if base is bool and spec["store_false"]:
            kw.update(action="store_const", const=False, help=spec["help"])
        elif base is bool and spec["store_true"]:  # --x, and --no-x to undo a --config file's True
            kw.update(action=argparse.BooleanOptionalAction, help=spec["help"])
        elif base is bool:
            kw.update(action=argparse.BooleanOptionalAction)
        else:
            kw["type"] = spec["parse"] or (_sequence_parser(item, spec["name"]) if base is tuple else base)
            if spec["choices"] is not None:
                kw["choices"] = spec["choices"]
            if spec["metavar"]:
                kw["metavar"] = spec["metavar"]
        parser.add_argument(*names, **kw)


def config_from_args(config_cls, args: argparse.Namespace, base=None):
    """``base`` (default ``config_cls()``) with every flag the user gave applied; UsageError if the
    resulting config is invalid (the dataclass's own message)."""
    given = {f.name: getattr(args, f.name) for f, _ in flagged_fields(config_cls)
             if getattr(args, f.name, None) is not None}
    try:
        return dataclasses.replace(base if base is not None else config_cls(), **given)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def config_from_file(config_cls, path: str | Path):
    """The config recorded in a ``RUN/<stage>_config.json`` (any layout this project wrote), as
    ``config_cls`` (through its ``from_recorded`` when it has one, for renamed settings). Settings
    the class does not know are refused by name in the current layout (another stage's file?);
    the earlier flat layout mixed run information in, so there they are skipped."""
    recorded = read_stage_config(path)
    stage = config_cls.__name__.removesuffix("Config").lower()  # OverviewConfig -> "overview"
    stages = ("overview", "focus", "evolve")
    if stage in stages and recorded.get("stage") in stages and recorded["stage"] != stage:
        raise UsageError(f"{path} is the config of stage {recorded['stage']!r}; this script runs "
                         f"{stage!r}: pass RUN/{stage}_config.json")
    values, names = recorded["config"], {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown and (recorded["layout"] == "current" or not set(values) & names) \
            and not hasattr(config_cls, "from_recorded"):
        raise UsageError(f"{path}: settings {unknown} are not {config_cls.__name__} fields; "
                         f"is this the config of another stage?")
    try:
        if hasattr(config_cls, "from_recorded"):
            return config_cls.from_recorded(values)
        hints = typing.get_type_hints(config_cls)
        known = {k: tuple(v) if _scalar_type(hints[k])[0] is tuple and isinstance(v, list) else v
                 for k, v in values.items() if k in names}
        return config_cls(**known)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def add_common_args(parser) -> None:
    """``--config FILE`` (re-run from a recorded config) and ``--device``."""
    parser.add_argument("--config", dest="config_file", default=None, metavar="RUN/<stage>_config.json",
                        help="start from the settings recorded in a stage config file; flags given "
                             "here override them")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default cuda:$LOCAL_RANK "
                        "when available, else cpu)")


def build_config(config_cls, args: argparse.Namespace):
    """The config of a script: ``--config`` file (if given) then the flags."""
    base = config_from_file(config_cls, args.config_file) if getattr(args, "config_file", None) else None
    return config_from_args(config_cls, args, base)


def setup_logging(verbose: bool = False) -> None:
    """Library notes (``logging``) to stderr, one plain line each."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not sys.stderr.isatty():  # a log file: no "Loading weights" bars from transformers / hub
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions whose message is for the user (exit status 2, no traceback)."""
    from .datasets import DatasetError
    from .images import ImageError
    from .models.base import ModelNotFound
    from .rundir import DumpError

    return (UsageError, ModelNotFound, ImageError, DatasetError, DumpError, ValueError)


def main(fn: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's ``fn(argv) -> exit status`` with logging set up. A user error prints one
    ``error:`` line and raises ``SystemExit(2)``, as argparse does for a bad flag."""
    setup_logging()
    try:
        return int(fn(argv) or 0)
    except user_errors() as exc:
        if os.environ.get("RSVG_ZEROOV_TRACEBACK"):
            raise
        msg = str(exc).strip() or type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
