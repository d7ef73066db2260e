"""Stage 3 settings: one frozen config whose defaults are the paper's (METHOD.md sections 3-4)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

GRID = 32  # every map of stage 3 lives on the 32 x 32 grid
N_TOKENS = GRID * GRID  # 1024 query/key positions of the interaction matrix S
FIDELITIES = ("released", "corrected")
RESOLUTIONS = (16, 32, 64)


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
    sam: refine the mask with SAM (box prompt). Paper's final numbers: on.
    sam_type / sam_checkpoint: passed to :func:`rsvg_zeroov.models.registry.load_sam`
        (None -> ViT-H, ``sam_checkpoint/sam_vit_h_4b8939.pth``; "tiny" -> the offline stand-in).
    save_maps: also write ``RUN/maps/<id>.npz`` with ``c, a_cs, seeds, region, a_e`` (32 x 32).
    """

    k: int = 7
    tau: float = 0.3
    alpha: float = 0.4
    resolutions: tuple[int, ...] = (32, 64)
    fidelity: str = "released"
    use_dm: bool = True
    use_evolve: bool = True
    sam: bool = True
    sam_type: str | None = None
    sam_checkpoint: str | None = None
    save_maps: bool = False

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

    def override(self, **values) -> "EvolveConfig":
        """A copy with the given fields replaced; ``None`` values are ignored (CLI flags default to None)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def fingerprint(self) -> str:
        """Short hash of every setting that changes the predictions (resume skips only matching records):
        every field but ``save_maps``, so a field added later cannot be left out."""
        keys = [f.name for f in dataclasses.fields(self) if f.name != "save_maps"]
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


PAPER = EvolveConfig()
