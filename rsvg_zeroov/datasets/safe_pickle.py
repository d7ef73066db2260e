"""A restricted unpickler for annotation pickles (RRSIS-D ``refs(unc).p``).

A pickle can name any importable callable and have it called while loading (GLOBAL/STACK_GLOBAL +
REDUCE), so ``pickle.load`` on a downloaded file runs arbitrary code. Annotation pickles hold only
plain containers and scalars (dict, list, tuple, str, int, float, bool, None, bytes), which the
pickle machine builds with its own opcodes without looking anything up. This unpickler therefore
refuses every lookup (``find_class``), persistent id and extension code, so nothing outside the
pickle machine is ever imported or called; the refusal is a DatasetError naming the file.
(``bytes`` pickled with protocols 0-2 are stored as a call to ``_codecs.encode`` and are refused
too; REFER pickles hold no bytes.)
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from .base import DatasetError
from .files import require_file

ALLOWED_TYPES = (dict, list, tuple, str, int, float, bool, type(None), bytes)


class _Refused(Exception):
    """Raised inside the unpickler when the pickle asks for something other than plain data."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds plain containers and scalars only; any global lookup is refused."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle hook
        raise _Refused(f"refers to {module}.{name}; only plain containers and scalars "
                       f"({', '.join(t.__name__ for t in ALLOWED_TYPES)}) are allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("uses a persistent id; only plain containers and scalars are allowed")


# Problems a damaged or hostile pickle can raise inside the pickle machine.
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                  AttributeError, OverflowError, MemoryError, UnicodeDecodeError)


def loads_restricted(data: bytes, path: Path) -> Any:
    """Unpickle ``data`` (read from ``path``, named in errors) with :class:`RestrictedUnpickler`.

    Python-2 ``str`` objects are decoded as UTF-8. Trailing bytes after the STOP opcode are refused.
    """
    stream = io.BytesIO(data)
    try:
        obj = RestrictedUnpickler(stream, encoding="utf-8").load()
    except _Refused as exc:
        raise DatasetError(f"{path}: refused to unpickle: the pickle {exc}") from None
    except _PICKLE_ERRORS as exc:
        raise DatasetError(f"{path}: damaged pickle ({type(exc).__name__}: {exc})") from None
    if stream.read(1):
        raise DatasetError(f"{path}: damaged pickle (data after the end of the pickle)")
    _check_plain(obj, path)
    return obj


def load_restricted(path: Path) -> Any:
    """Read and unpickle the file at ``path`` without executing anything (see module doc)."""
    require_file(path, "pickle file")
    return loads_restricted(path.read_bytes(), path)


def _check_plain(obj: Any, path: Path) -> None:
    """Belt and braces: every object reached is one of ALLOWED_TYPES (iterative, no recursion limit).

    The pickle machine can build sets, frozensets and bytearrays without any lookup; refuse them.
    """
    containers = (dict, list, tuple)
    if type(obj) not in ALLOWED_TYPES:
        raise DatasetError(f"{path}: refused to unpickle: it holds a {type(obj).__name__}")
    stack, seen = [obj] if type(obj) in containers else [], set()
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        for child in ((*cur.keys(), *cur.values()) if type(cur) is dict else cur):
            kind = type(child)
            if kind in containers:
                stack.append(child)
            elif kind not in ALLOWED_TYPES:
                raise DatasetError(f"{path}: refused to unpickle: it holds a {kind.__name__}")
