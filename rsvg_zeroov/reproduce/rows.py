"""The rows of the paper's tables: what each one computes from the stage-1/2 dumps, and the tables
that list them (docs/reproduce.md).

A :class:`Row` is one variant of stage 3 (or a baseline) scored over the split. A row name that
appears in several tables (``rsvg-zeroov``, ``no-sam``) is computed once. ``sam`` rows refine the
mask with the refiner (``--refiner``); the others score the mask as it is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..evolve.config import PAPER, REFINE_PROMPTS, EvolveConfig
from .baselines import DIFFPNG_ALPHA, DIFFPNG_BETA

KINDS = ("evolve", "vlm-box", "diffpng")
PROMPT_MODES = REFINE_PROMPTS  # refiner prompt modes of the ablation
TABLES = ("main", "ablation", "sensitivity")
DEFAULT_GRID = "k=5,7,9 tau=0.2,0.3,0.4 alpha=0.3,0.4,0.5"
SENSITIVITY_PREFIX = "sens-"


@dataclass(frozen=True)
class Row:
    """One row. name: its key (file names, docs/paper-results.md); label: what the table shows;
    kind: ``evolve`` (stage 3 under ``config``), ``vlm-box`` or ``diffpng``
    (:mod:`rsvg_zeroov.reproduce.baselines`); config: the stage-3 settings (``vlm-box`` uses none
    but the fidelity, for how the refiner reads the image; ``diffpng`` its resolutions and fidelity,
    which pick ``S``); sam: refined with the refiner; prompt: the refiner prompt mode (None: the
    refiner's own box prompt)."""

    name: str
    label: str
    kind: str
    config: EvolveConfig
    sam: bool = False
    prompt: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row {self.name}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def needs_s(self) -> bool:
        """Whether the row reads stage 2's self-attention."""
        return self.kind == "diffpng" or (self.kind == "evolve" and self.config.use_dm)

    def focus_files(self) -> tuple[str, ...]:
        """The stage-2 file names this row averages into ``S`` (none without ``S``)."""
        from ..evolve.interaction import focus_names

        return tuple(focus_names(self.config)) if self.needs_s else ()

    def settings(self) -> dict:
        """Every setting that decides this row's predictions (recorded, and fingerprinted)."""
        cfg = self.config
        out: dict = {"kind": self.kind, "sam": self.sam}
        if self.kind == "evolve":
            out.update(k=cfg.k, tau=cfg.tau, alpha=cfg.alpha, resolutions=list(cfg.resolutions),
                       fidelity=cfg.fidelity, use_dm=cfg.use_dm, use_evolve=cfg.use_evolve)
        elif self.kind == "diffpng":
            out.update(resolutions=list(cfg.resolutions), fidelity=cfg.fidelity, beta=DIFFPNG_BETA,
                       threshold=DIFFPNG_ALPHA)
        else:
            out.update(fidelity=cfg.fidelity)
        if self.sam:
            out.update(refiner=cfg.refiner, refiner_checkpoint=cfg.refiner_checkpoint, prompt=self.prompt or "box")
        return out


def _evolve(name, label, base, sam=False, prompt=None, **changes) -> Row:
    return Row(name, label, "evolve", dataclasses.replace(base, **changes), sam, prompt)


def build_rows(base: EvolveConfig = PAPER) -> dict[str, Row]:
    """Every row of the main and ablation tables by name; ``base`` carries the refiner settings
    (the other fields are the paper's defaults)."""
    rows = [
        _evolve("rsvg-zeroov", "RSVG-ZeroOV (SAM, box prompt)", base, sam=True),
        Row("vlm-box", "VLM box (the answer's [x1, y1, x2, y2])", "vlm-box", base),
        Row("vlm-box+sam", "VLM box + SAM (box prompt)", "vlm-box", base, sam=True),
        Row("diffpng+vlm", "DiffPNG w/ VLM (our reading)", "diffpng", base),
        Row("diffpng+vlm+sam", "DiffPNG w/ VLM + SAM (our reading)", "diffpng", base, sam=True),
        _evolve("no-sam", "w/o SAM", base),
        _evolve("no-dm", "w/o DM", base, sam=True, use_dm=False),
        _evolve("no-dm-no-sam", "w/o DM, w/o SAM", base, use_dm=False),
        _evolve("no-evolve", "w/o Evolve", base, sam=True, use_evolve=False),
        _evolve("no-evolve-no-sam", "w/o Evolve, w/o SAM", base, use_evolve=False),
        _evolve("res32-no-sam", "resolution 32 (w/o SAM)", base, resolutions=(32,)),
        _evolve("res64-no-sam", "resolution 64 (w/o SAM)", base, resolutions=(64,)),
        _evolve("res16-32-64-no-sam", "resolutions 16 + 32 + 64 (w/o SAM)", base, resolutions=(16, 32, 64)),
        _evolve("corrected", "fidelity corrected", base, sam=True, fidelity="corrected"),
        _evolve("corrected-no-sam", "fidelity corrected, w/o SAM", base, fidelity="corrected"),
    ]
    rows += [_evolve(f"prompt-{mode}", f"refiner prompt {mode}", base, sam=True, prompt=mode)
             for mode in PROMPT_MODES if mode != "box"]
    return {r.name: r for r in rows}


# (row name, label override or None): the layout of each table; a name may appear in several.
LAYOUT: dict[str, tuple[tuple[str, str | None], ...]] = {
    "main": (("rsvg-zeroov", None), ("vlm-box", None), ("vlm-box+sam", None), ("diffpng+vlm", None),
             ("diffpng+vlm+sam", None)),
    "ablation": (("rsvg-zeroov", "full method (released fidelity, resolutions 32 + 64, SAM box prompt)"),
                 ("no-sam", None), ("no-dm", None), ("no-dm-no-sam", None), ("no-evolve", None),
                 ("no-evolve-no-sam", None), ("res32-no-sam", None), ("res64-no-sam", None),
                 ("no-sam", "resolutions 32 + 64 (w/o SAM; the default)"), ("res16-32-64-no-sam", None),
                 ("corrected", None), ("corrected-no-sam", None),
                 ("rsvg-zeroov", "refiner prompt box (the default)"),
                 *((f"prompt-{m}", None) for m in PROMPT_MODES if m != "box")),
}


def sensitivity_rows(base: EvolveConfig, spec: str) -> dict[str, Row]:
    """The K / tau / alpha grid of ``spec`` (``"k=5,7 tau=0.3 alpha=0.4"``, parsed by the sweep's
    own :func:`rsvg_zeroov.evolve.sweep.parse_grid`) as rows without refinement, in grid order."""
    from ..evolve.sweep import parse_grid

    rows = {}
    for st in parse_grid(spec, base):
        name = f"{SENSITIVITY_PREFIX}k{st.k}-tau{st.tau:g}-alpha{st.alpha:g}"
        rows[name] = Row(name, f"K {st.k}, tau {st.tau:g}, alpha {st.alpha:g}", "evolve",
                         dataclasses.replace(base, k=st.k, tau=st.tau, alpha=st.alpha))
    return rows


def row_config(row: Row) -> EvolveConfig:
    """The stage-3 config the row runs under, its refiner prompt mode included."""
    if row.prompt is not None:
        return dataclasses.replace(row.config, refine_prompt=row.prompt)
    return row.config
