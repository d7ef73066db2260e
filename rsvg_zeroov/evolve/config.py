"""Stage 3 settings: one frozen config whose defaults are the paper's (docs/method.md, stages 3-4).

Each field carries its command-line flag (:func:`rsvg_zeroov.cli.flag`), so a default is written
once, here; ``rs_evolve.py`` builds its flags from this class.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .. import cli
from ..fidelity import FIDELITIES  # noqa: F401 - re-exported

GRID = 32  # every map of stage 3 lives on the 32 x 32 grid
N_TOKENS = GRID * GRID  # 1024 query/key positions of the interaction matrix S
RESOLUTIONS = (16, 32, 64)
NO_REFINER = "none"  # what --refiner takes for "no refinement" (config value None)
# what prompts the refiner (docs/method.md, stage 3 step 6); "box" is the released prompt
REFINE_PROMPTS = ("box", "box+points", "points", "box+mask")
# settings added after run directories were first written: they enter the fingerprint only when
# set away from their default, so every earlier run keeps its fingerprint (and resumes)
LATER_SETTINGS = ("refine_prompt", "refine_iters")
OUTPUT_OPTIONS = ("save_maps", "georef")  # extra files only: not in the prediction fingerprint
# earlier spellings of the refiner settings (configs written before the refiner role, old callers)
LEGACY_KEYS = ("sam", "sam_type", "sam_checkpoint")


def _refiner_name(text: str) -> str:
    return text.strip()


def _canonical_refiner(name: str) -> str:
    """A refiner alias or hub id -> its registry key (``sam-vit-h`` -> ``vit_h``); other text as it is
    (an unknown name is refused, with the known keys, when the refiner is resolved)."""
    from ..models.refiners import REFINERS

    entry = REFINERS.entry(name)
    return entry.key if entry is not None else name


@dataclass(frozen=True)
class EvolveConfig:
    """Every setting of stage 3 (recorded in ``RUN/evolve_config.json``).

    k: number of largest *distinct* values of the normalised VLM map ``c`` whose positions are seeds
        (ties give more seeds). Paper: 7.
    tau: region growing keeps positions with ``A_CS > tau`` (strict). Paper: 0.3.
    alpha: the upsampled ``A_E`` is binarised as ``A_E > alpha`` (strict). Paper: 0.4.
    resolutions: self-attention resolutions averaged into ``S`` (all reduced to the 32 grid);
        16 needs stage 2's opt-in 16->32 dump. Paper: (32, 64).
    fidelity: "released" (the behaviour that produced the published numbers) or "corrected"
        (min-max normalisation of ``c`` and the spatially correct 64->32 / 16->32 reductions).
    use_dm: False skips the interaction with ``S`` (ablation: ``A_CS`` = normalised ``c``).
    use_evolve: False skips region growing (ablation: ``A_E`` = ``A_CS``).
    refiner: the mask refiner's key in the refiner registry (:mod:`rsvg_zeroov.models.refiners`:
        ``vit_h`` (paper; alias ``sam-vit-h``), ``vit_l``, ``vit_b``, ``tiny``, ``box-fill``,
        ``sam-hq-vit-h/l/b``, ``sam2.1-hiera-l/b+/s/t``, ``sam3``, ``tiny-sam-hq``, ``tiny-sam2.1``,
        ``tiny-sam3``), or None for none. Aliases and hub ids are stored as the key.
    refiner_checkpoint: its weights file or folder (None: ``sam_checkpoint/<official file name>``,
        or the hub id's cache entry).
    refine_prompt: what prompts the refiner (beyond the paper, opt-in except ``box``; docs/method.md):
        ``box`` (released: the tight box of M), ``box+points`` (also every seed position as a
        positive point), ``points`` (the seeds only), ``box+mask`` (also ``A_E`` as the
        low-resolution mask input).
    refine_iters: refinement passes; each pass after the first re-boxes from the previous refined
        mask (the released ``num_iters``, 1). Needs a box mode when above 1.
    save_maps: also write ``RUN/maps/<id>.npz`` with ``c, a_cs, seeds, region, a_e`` (32 x 32).
    georef: also write ``RUN/masks/<id>.tif`` (the mask as a GeoTIFF with the image's CRS,
        transform and nodata) when the input image is georeferenced; other images get only the PNG.
    """

    k: int = field(default=7, metadata=cli.flag("--k", "seeds: the K largest distinct VLM values"))
    tau: float = field(default=0.3, metadata=cli.flag("--tau", "region growing threshold on A_CS"))
    alpha: float = field(default=0.4, metadata=cli.flag("--alpha", "binarisation threshold of A_E"))
    resolutions: tuple[int, ...] = field(default=(32, 64), metadata=cli.flag(
        "--resolutions", "self-attention resolutions averaged into S, from 16,32,64 "
        "(16 needs stage 2's 16->32 dump)"))
    fidelity: str = field(default="released", metadata=cli.flag(
        "--fidelity", "released (the published behaviour) or corrected", choices=FIDELITIES))
    use_dm: bool = field(default=True, metadata=cli.flag(
        "--no-dm", "ablation: skip the interaction with S (A_CS = normalised c)", store_false=True))
    use_evolve: bool = field(default=True, metadata=cli.flag(
        "--no-evolve", "ablation: skip region growing (A_E = A_CS)", store_false=True))
    refiner: str | None = field(default="vit_h", metadata=cli.flag(
        "--refiner", f"mask refiner key (vit_h = sam-vit-h, vit_l, vit_b, tiny, box-fill, sam-hq-vit-h, "
        f"sam2.1-hiera-b+, sam3, ...; '{NO_REFINER}' = no refinement; python -m rsvg_zeroov.models "
        "lists them)", metavar="KEY", parse=_refiner_name))
    refiner_checkpoint: str | None = field(default=None, metadata=cli.flag(
        "--refiner-checkpoint", "the refiner's weights file (a folder for the transformers refiners), "
        "or 'tiny'; none = sam_checkpoint/<its official file name> or its hub id",
        aliases=("--sam-checkpoint",), metavar="FILE"))
    refine_prompt: str = field(default="box", metadata=cli.flag(
        "--refine-prompt", "what prompts the refiner: box (released), box+points (plus the seeds as "
        "positive points), points, box+mask (plus A_E as the low-res mask input)", choices=REFINE_PROMPTS))
    refine_iters: int = field(default=1, metadata=cli.flag(
        "--refine-iters", "refinement passes, each after the first re-boxed from the previous mask "
        "(the released num_iters)", metavar="N"))
    save_maps: bool = field(default=False, metadata=cli.flag(
        "--save-maps", "also write RUN/maps/<id>.npz (c, a_cs, seeds, region, a_e on the 32 grid)",
        store_true=True))
    georef: bool = field(default=False, metadata=cli.flag(
        "--georef", "also write RUN/masks/<id>.tif, the mask with the input's georeferencing (CRS, "
        "transform, nodata), for each georeferenced input image", store_true=True))

    def __post_init__(self) -> None:
        res = tuple(sorted({int(r) for r in self.resolutions}))
        object.__setattr__(self, "resolutions", res)
        if not res or any(r not in RESOLUTIONS for r in res):
            raise ValueError(f"resolutions {self.resolutions!r}: choose a non-empty subset of {RESOLUTIONS}")
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity {self.fidelity!r}: choose one of {', '.join(FIDELITIES)}")
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"k={self.k!r}: the number of seed values must be a positive integer")
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "tau", float(self.tau))
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.refiner_checkpoint == "tiny":  # the old spelling --sam-checkpoint tiny
            object.__setattr__(self, "refiner", "tiny")
            object.__setattr__(self, "refiner_checkpoint", None)
        if self.refiner is not None and (not self.refiner or self.refiner.lower() == NO_REFINER):
            object.__setattr__(self, "refiner", None)
        if self.refiner is not None:
            object.__setattr__(self, "refiner", _canonical_refiner(self.refiner))
        if self.refine_prompt not in REFINE_PROMPTS:
            raise ValueError(f"refine_prompt {self.refine_prompt!r}: choose one of {', '.join(REFINE_PROMPTS)}")
        if int(self.refine_iters) != self.refine_iters or self.refine_iters < 1:
            raise ValueError(f"refine_iters={self.refine_iters!r}: the number of refinement passes must be "
                             f"a positive integer")
        object.__setattr__(self, "refine_iters", int(self.refine_iters))
        if self.refiner is None and (self.refine_prompt != "box" or self.refine_iters != 1):
            raise ValueError(f"refine_prompt={self.refine_prompt!r} / refine_iters={self.refine_iters} prompt "
                             f"the refiner, but there is none (--no-sam / --refiner none): drop "
                             f"--refine-prompt / --refine-iters, or choose a refiner")
        if self.refine_iters > 1 and "box" not in self.refine_prompt:
            raise ValueError(f"refine_iters={self.refine_iters} re-boxes from the previous mask: it needs a "
                             f"prompt with a box (--refine-prompt box, box+points or box+mask), not "
                             f"{self.refine_prompt!r}")

    # ------------------------------------------------------------------------------ earlier names
    @property
    def sam(self) -> bool:
        """Whether the mask is refined (the name earlier versions used)."""
        return self.refiner is not None

    @property
    def sam_type(self) -> str | None:
        return self.refiner

    @property
    def sam_checkpoint(self) -> str | None:
        return self.refiner_checkpoint

    def override(self, **values) -> "EvolveConfig":
        """A copy with the given fields replaced; ``None`` values are ignored (CLI flags default to
        None). The earlier ``sam`` (False = no refinement), ``sam_type`` and ``sam_checkpoint``
        are accepted too."""
        values = _translate_legacy({k: v for k, v in values.items() if v is not None})
        return dataclasses.replace(self, **values)

    @classmethod
    def from_recorded(cls, values: dict) -> "EvolveConfig":
        """The config recorded in a stage config file's ``"config"`` (any layout this project
        wrote, the earlier ``sam`` / ``sam_type`` keys included); other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = _translate_legacy({k: v for k, v in values.items() if k in names or k in LEGACY_KEYS})
        if isinstance(values.get("resolutions"), list):
            values["resolutions"] = tuple(values["resolutions"])
        return cls(**values)

    def fingerprint(self) -> str:
        """Short hash of every setting that changes the predictions (resume skips only matching records):
        every field but the output options (:data:`OUTPUT_OPTIONS`), so a field added later cannot be
        left out; the fields of :data:`LATER_SETTINGS` only when set away from their default (earlier
        runs keep their hash)."""
        keys = [f.name for f in dataclasses.fields(self) if f.name not in OUTPUT_OPTIONS
                and not (f.name in LATER_SETTINGS and getattr(self, f.name) == f.default)]
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _translate_legacy(values: dict) -> dict:
    """``sam`` / ``sam_type`` / ``sam_checkpoint`` -> ``refiner`` / ``refiner_checkpoint``."""
    values = dict(values)
    sam, sam_type = values.pop("sam", None), values.pop("sam_type", None)
    if "sam_checkpoint" in values:
        values.setdefault("refiner_checkpoint", values.pop("sam_checkpoint"))
    if sam_type is not None:
        values.setdefault("refiner", sam_type)
    if sam is False:
        values["refiner"] = None
    elif sam is True and values.get("refiner", "") is None:
        values["refiner"] = EvolveConfig.refiner
    return values


PAPER = EvolveConfig()
