"""Model registries by role: one :class:`Registry` per role, each entry a key -> adapter class.

Roles: ``"vlm"`` (stage 1), ``"diffusion"`` (stage 2), ``"refiner"`` (stage 3's mask refiner).
Each role module registers its own entries when imported (``models/vlm.py``, ``models/diffusion.py``,
``models/refiners.py``), so adding a backbone is one adapter module plus one ``add(...)`` line::

    VLMS.add("qwen2.5-vl-7b", adapter="rsvg_zeroov.models.qwen2_5_vl:Qwen25VL",
             hub_id="Qwen/Qwen2.5-VL-7B-Instruct", size="7B", default=True)

A model name given on a command line is a registry key, a hub id or a local folder/file;
:meth:`Registry.resolve` turns it into a :class:`ModelRef` without loading anything, and
:func:`check_models` tells, before any compute, every model of a command that is not available,
in one message. Loading never runs remote code.

``tiny`` resolves to the offline random-weight stand-ins written by ``python -m rsvg_zeroov.tiny``
under :func:`tiny_root`; they are built on first use (seeded, a few MB, seconds). Other backends
register their own stand-in as an entry with ``tiny_path="<folder under tiny_root>"`` and
``tiny_build="package.module:function"`` (``function(out_path, seed)`` writes it); it resolves the
same way, built on first use.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

TINY = "tiny"
TINY_SUBDIRS = {"vlm": "qwen", "diffusion": "sd", "refiner": "sam/sam_tiny.pth"}
ROLE_MODULES = {"vlm": "rsvg_zeroov.models.vlm", "diffusion": "rsvg_zeroov.models.diffusion",
                "refiner": "rsvg_zeroov.models.refiners"}
ROLE_NAMES = {"vlm": "VLM", "diffusion": "diffusion model", "refiner": "refiner"}


class ModelNotFound(RuntimeError):
    """A model that is neither a local path nor in the hub cache. The message says what to do."""


def tiny_root() -> Path:
    """Where the tiny offline models live: $RSVG_ZEROOV_TINY_DIR, else ``outputs/tiny_models``."""
    return Path(os.environ.get("RSVG_ZEROOV_TINY_DIR", "outputs/tiny_models"))


def ensure_tiny(role: str) -> Path:
    """Path of the tiny model of ``role``, building all three stand-ins if it is absent."""
    path = tiny_root() / TINY_SUBDIRS[role]
    if not path.exists():
        from ..tiny import build_all

        build_all(tiny_root())
    return path


def tiny_entry_path(entry: "Entry") -> Path:
    """Where the tiny stand-in of a ``tiny_path=...`` registry entry lives (under :func:`tiny_root`)."""
    return tiny_root() / entry.options["tiny_path"]


def ensure_tiny_entry(entry: "Entry") -> Path:
    """Path of a ``tiny_path=..., tiny_build="module:function"`` entry's stand-in, built (seeded,
    atomically) on first use by :func:`rsvg_zeroov.tiny.build_one`."""
    path = tiny_entry_path(entry)
    if not path.exists():
        from ..tiny import build_one

        build_one(entry.options["tiny_build"], path)
    return path


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name: ``source`` is a local path or a hub id; ``key`` the registry key, if any."""

    role: str
    source: str
    key: str | None
    is_tiny: bool = False

    @property
    def family(self) -> str:  # the name earlier versions used for ``role``
        return self.role


@dataclass(frozen=True)
class Entry:
    """One registry line.

    adapter: ``"package.module:ClassName"``, imported only when the model is built.
    hub_id: the Hugging Face repository (VLMs, diffusion models), or None.
    checkpoint: a file name under ``checkpoint_dir`` (SAM-style ``.pth`` refiners), or None.
    url: where that checkpoint is downloaded from. size: a human label ("7B", "2.4 GB").
    """

    key: str
    role: str
    adapter: str
    hub_id: str | None = None
    checkpoint: str | None = None
    url: str | None = None
    size: str = ""
    default: bool = False
    aliases: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)


class Registry:
    """The keys of one role. ``probe``: the file whose presence makes a folder or hub cache entry
    count as available (``config.json`` for transformers models, ``model_index.json`` for pipelines).
    ``checkpoint_dir``: where checkpoint-file entries live (``sam_checkpoint/``). ``skip_hint``: how a
    command runs without this role, named in the missing-model message (``--no-sam``)."""

    def __init__(self, role: str, probe: str = "config.json", checkpoint_dir: str | None = None,
                 skip_hint: str = ""):
        self.role, self.probe, self.skip_hint = role, probe, skip_hint
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._entries: dict[str, Entry] = {}
        REGISTRIES[role] = self

    # ---------------------------------------------------------------------------- entries
    def add(self, key: str, *, adapter: str, hub_id: str | None = None, checkpoint: str | None = None,
            url: str | None = None, size: str = "", default: bool = False, aliases: Iterable[str] = (),
            **options) -> Entry:
        if key in self._entries:
            raise ValueError(f"{self.role} registry: key {key!r} is registered twice")
        if default and any(e.default for e in self._entries.values()):
            raise ValueError(f"{self.role} registry: two default entries ({self.default.key!r}, {key!r})")
        entry = Entry(key, self.role, adapter, hub_id, checkpoint, url, size, default, tuple(aliases), options)
        self._entries[key] = entry
        return entry

    def keys(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    @property
    def default(self) -> Entry:
        for e in self._entries.values():
            if e.default:
                return e
        raise LookupError(f"{self.role} registry has no default entry")

    def entry(self, name: str | None) -> Entry | None:
        """The entry named by a key, an alias or its hub id; None for anything else (paths)."""
        if name is None:
            return self.default
        for e in self._entries.values():
            if name == e.key or name in e.aliases or (e.hub_id is not None and name == e.hub_id):
                return e
        return None

    def adapter_class(self, name: str | None) -> type:
        """The adapter class of an entry (imported now). Raises KeyError for names not registered."""
        e = self.entry(name)
        if e is None:
            raise KeyError(f"{name!r} is not a {self.role} registry key; known: {', '.join(self.keys())}")
        return load_object(e.adapter)

    # ---------------------------------------------------------------------------- resolving
    def resolve(self, name: str | None) -> ModelRef:
        """A key, hub id or path -> :class:`ModelRef` (None = the default entry). Loads nothing;
        ``tiny`` builds the offline stand-ins if they are absent."""
        e = self.entry(name)
        if e is not None and e.key == TINY:
            return ModelRef(self.role, str(ensure_tiny(self.role)), TINY, is_tiny=True)
        if e is not None and "tiny_build" in e.options:  # another backend's offline stand-in
            return ModelRef(self.role, str(ensure_tiny_entry(e)), e.key, is_tiny=True)
        if e is not None:
            if e.checkpoint is not None:
                return ModelRef(self.role, str((self.checkpoint_dir or Path(".")) / e.checkpoint), e.key)
            return ModelRef(self.role, e.hub_id or "", e.key)
        return ModelRef(self.role, str(name), None)

    def probe_of(self, ref: ModelRef) -> str:
        """The probe file of ``ref``: its entry's own ``probe=...`` option (a hub-id entry in a
        registry of checkpoint files), else the registry's."""
        e = self.entry(ref.key) if ref.key else None
        return e.options.get("probe", self.probe) if e is not None else self.probe

    def present(self, ref: ModelRef) -> bool:
        """Whether ``ref`` can be loaded without network: a local folder holding ``probe``, a local
        file, a hub id whose ``probe`` is in the Hugging Face cache, or an entry needing no file."""
        if not ref.source:
            return True
        probe = self.probe_of(ref)
        path = Path(ref.source)
        if path.is_dir():
            return bool(probe) and (path / probe).is_file()
        if path.is_file():
            return True
        if looks_like_path(ref.source) or not probe:
            return False
        from huggingface_hub import try_to_load_from_cache

        try:
            return isinstance(try_to_load_from_cache(ref.source, probe), str)
        except ValueError:  # not a valid repository id either
            return False

    def missing_message(self, ref: ModelRef, flag: str) -> str:
        """What to do about one missing model, naming the command's own ``flag``."""
        what = ROLE_NAMES.get(self.role, self.role)
        e = self.entry(ref.key) if ref.key else None
        skip = f", or run without it ({self.skip_hint})" if self.skip_hint else ""
        if e is not None and e.checkpoint is not None:
            where = self.checkpoint_dir or Path(".")
            return (f"{what} {e.key!r}: checkpoint {ref.source} not found; download {e.checkpoint}"
                    f"{f' from {e.url}' if e.url else ''} into {where}/, or pass {flag} FILE{skip}")
        if self.checkpoint_dir is not None and (e is None or e.hub_id is None) and looks_like_path(ref.source):
            return f"{what} checkpoint {ref.source} not found; pass {flag} with an existing file{skip}"
        if looks_like_path(ref.source) or Path(ref.source).exists():
            state = "does not exist" if not Path(ref.source).exists() else f"holds no {self.probe_of(ref)}"
            if e is not None and e.hub_id is not None and self.checkpoint_dir is not None:
                return (f"{what} {e.key!r}: model folder {ref.source} {state}; pass {flag} with a folder "
                        f"holding {e.hub_id}'s files, or leave {flag} out to use the hub id{skip}")
            return (f"{what}: model path {ref.source} {state}; pass {flag} with a registry key "
                    f"({', '.join(self.keys())}), a hub id or a model folder")
        return (f"{what} {ref.source!r} is not in the local Hugging Face cache: download it once with "
                f"`hf download {ref.source}` (needs network), or pass {flag} /path/to/folder"
                f"{skip}")


REGISTRIES: dict[str, Registry] = {}


def registry(role: str) -> Registry:
    """The registry of ``role``, with its role module's entries registered."""
    if role not in ROLE_MODULES:
        raise KeyError(f"unknown model role {role!r}; roles: {', '.join(ROLE_MODULES)}")
    importlib.import_module(ROLE_MODULES[role])
    return REGISTRIES[role]


def load_object(spec: str):
    """``"package.module:Name"`` -> the object (adapters are imported only when used)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def looks_like_path(name: str) -> bool:
    """A name that can only be a file system path (hub ids are ``owner/name``)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1
            or name.endswith((".pth", ".pt", ".safetensors", ".bin")))


def check_models(items: Iterable[tuple[str, "str | ModelRef | None", str]]) -> list[ModelRef]:
    """Resolve every ``(role, name or ModelRef, flag)`` of a command before any compute.

    Returns the refs; raises ONE :class:`ModelNotFound` naming every model that is not available,
    each with the command that fetches it and the command's own ``flag``."""
    refs, problems = [], []
    for role, name, flag in items:
        reg = registry(role)
        ref = name if isinstance(name, ModelRef) else reg.resolve(name)
        refs.append(ref)
        if not ref.is_tiny and not reg.present(ref):
            problems.append(reg.missing_message(ref, flag))
    if problems:
        head = "a model this command needs is missing" if len(problems) == 1 else \
            f"{len(problems)} models this command needs are missing"
        raise ModelNotFound(f"{head}:\n  - " + "\n  - ".join(problems) +
                            "\n(the key `tiny` selects the offline random-weight stand-ins of any role)")
    return refs


def describe() -> list[dict]:
    """One row per registered key of every role: role, key, its aliases, hub id / checkpoint, size,
    present."""
    rows = []
    for role in ROLE_MODULES:
        reg = registry(role)
        for e in reg.entries():
            if e.key == TINY or "tiny_build" in e.options:
                path = tiny_root() / TINY_SUBDIRS[role] if e.key == TINY else tiny_entry_path(e)
                present, source = path.exists(), f"{path} (built offline)"
            else:
                ref = reg.resolve(e.key)
                present, source = reg.present(ref), e.hub_id or ref.source or "(no weights)"
            rows.append({"role": role, "key": e.key, "aliases": list(e.aliases), "source": source,
                         "size": e.size, "default": e.default, "present": present})
    return rows
