"""Everything one panel shows, gathered from the run directory and the data set (no drawing here).

Sources, per sample (docs/run-directory.md):

- ``RUN/overview/<id>.npy`` + ``.json``: the fused ``A_C`` ([0]) and the raw per-layer maps ([1:]),
  titled with the sidecar's ``layers`` (required: a missing or bad dump skips the sample).
- ``RUN/maps/<id>.npz`` (``rs_evolve.py --save-maps``): the 32-grid maps ``c, a_cs, seeds, region,
  a_e``; when absent they are recomputed from the stage 1 and 2 dumps with
  :func:`rsvg_zeroov.evolve.evolve` under the settings of ``RUN/evolve_config.json`` (else the
  paper defaults of :class:`~rsvg_zeroov.evolve.EvolveConfig`).
- ``RUN/masks/<id>.png``: the final (SAM) mask; optional (a run without stage 3 still draws).
- the data set's ground truth: the mask where it has one, else the box.

The IoU is the evaluator's (:func:`rsvg_zeroov.evaluation.score_sample` under one protocol): the
mask IoU where the data set has masks, else the box IoU of the final mask's tight box.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evolve.config import GRID, EvolveConfig
from ..rundir import DumpError, RunDir

# The keys rs_evolve.py --save-maps writes (rsvg_zeroov.evolve.EvolveResult.maps()).
MAP_KEYS = ("c", "a_cs", "seeds", "region", "a_e")
BOOL_MAPS = ("seeds", "region")


@dataclass(frozen=True)
class PanelData:
    """One sample's maps, masks and score. (H, W) = original image size in pixels.

    image: uint8 (H, W, 3) RGB. layers: per captured VLM layer ``(layer index, fusion weight,
    float32 (gh, gw) raw map a_l)`` in sidecar order. a_c: float32 (gh, gw) fused VLM map.
    a_cs, a_e: float32 (32, 32); seeds, region: bool (32, 32) (row-major 32 grid).
    evolve_mask: bool (H, W) ``upsampled A_E > alpha`` (before SAM). final_mask: bool (H, W) from
    ``RUN/masks/<id>.png``, or None when stage 3 has not written it. gt_mask: bool (H, W) or None;
    gt_box: XYXY pixels or None. iou: the score shown (None without a final mask); iou_kind:
    ``"mask"`` or ``"box"``. maps_source: ``"maps npz"`` or ``"recomputed"``.
    """

    sample_id: str
    expression: str
    answer: str | None
    image: np.ndarray
    layers: tuple[tuple[int, float | None, np.ndarray], ...]
    a_c: np.ndarray
    a_cs: np.ndarray
    seeds: np.ndarray
    region: np.ndarray
    a_e: np.ndarray
    evolve_mask: np.ndarray
    final_mask: np.ndarray | None
    gt_mask: np.ndarray | None
    gt_box: tuple[float, float, float, float] | None
    iou: float | None
    iou_kind: str
    config: EvolveConfig
    maps_source: str

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the original image in pixels."""
        return self.image.shape[0], self.image.shape[1]


# ------------------------------------------------------------------------------ settings
def load_evolve_config(run: RunDir) -> EvolveConfig:
    """The stage 3 settings recorded in ``RUN/evolve_config.json`` (any layout this project wrote),
    else the paper defaults.

    Keys that are not :class:`EvolveConfig` settings (versions, fingerprint, ...) are ignored.
    Raises :class:`DumpError` naming the file when it is unreadable or holds invalid settings.
    """
    from ..runner import read_stage_config

    path = run.config("evolve")
    if not path.is_file():
        return EvolveConfig()
    recorded = read_stage_config(path)["config"]
    try:
        return EvolveConfig.from_recorded(recorded)
    except (TypeError, ValueError) as exc:
        raise DumpError(f"{path}: invalid stage 3 settings ({exc}); fix or delete the file") from None


# ------------------------------------------------------------------------------ soft maps
def load_maps_npz(path: Path) -> dict[str, np.ndarray]:
    """The 32-grid maps of ``RUN/maps/<id>.npz``: float32 ``c, a_cs, a_e``, bool ``seeds, region``.

    Raises :class:`DumpError` naming the file when it is unreadable, lacks a key, or a map is not a
    finite (32, 32) array.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in MAP_KEYS if k not in archive.files]
            if missing:
                raise DumpError(f"{path}: lacks {', '.join(missing)} (has {', '.join(archive.files) or 'nothing'}); "
                                "delete it and rerun rs_evolve.py --save-maps")
            maps = {k: np.asarray(archive[k]) for k in MAP_KEYS}
    except DumpError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DumpError(f"{path}: unreadable or truncated .npz ({exc}); delete it and rerun rs_evolve.py "
                        "--save-maps") from None
    for key, arr in maps.items():
        if arr.shape != (GRID, GRID) or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
            raise DumpError(f"{path}: '{key}' is {arr.dtype} {arr.shape}, expected ({GRID}, {GRID}) numbers")
        if arr.dtype != bool and not np.isfinite(arr).all():
            raise DumpError(f"{path}: '{key}' contains NaN or Inf")
    return {k: (v != 0 if k in BOOL_MAPS else v.astype(np.float32)) for k, v in maps.items()}


def soft_maps(run: RunDir, sid: str, a_c: np.ndarray, size: tuple[int, int],
              config: EvolveConfig) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """(32-grid maps by :data:`MAP_KEYS`, the before-SAM mask bool (H, W), source name).

    From ``RUN/maps/<id>.npz`` when it exists (the mask re-thresholded at ``config.alpha``), else
    recomputed with :func:`rsvg_zeroov.evolve.evolve` from ``a_c`` (gh, gw) and the stage 2 dumps.
    """
    from ..evolve import evolve
    from ..evolve.interaction import load_s
    from ..evolve.resample import binarise, upsample_window

    path = run.maps_npz(sid)
    if path.is_file():
        maps = load_maps_npz(path)
        mask = binarise(upsample_window(maps["a_e"], size), size, config.alpha)
        return maps, mask, "maps npz"
    s = load_s(run, sid, config) if config.use_dm else None
    result = evolve(a_c, s, size, config)
    return result.maps(), result.mask, "recomputed"


# ------------------------------------------------------------------------------ masks, score
def load_final_mask(run: RunDir, sid: str, size: tuple[int, int]) -> np.ndarray | None:
    """The final mask bool (H, W) of ``RUN/masks/<id>.png``; None when the file does not exist.

    Raises ``EvalInputError`` (a ValueError) naming the file when it is unreadable or of another size.
    """
    from ..evaluation import load_pred_mask

    path = run.mask_png(sid)
    return load_pred_mask(path, size) if path.is_file() else None


def score(final_mask: np.ndarray | None, gt_mask: np.ndarray | None, gt_box, size: tuple[int, int],
          protocol: str | None) -> tuple[float | None, str]:
    """(IoU, kind): mask IoU where a ground-truth mask exists, else the box IoU of the final mask's
    tight box; IoU None when there is no final mask. ``protocol``: evaluation protocol name (zeroov)."""
    from ..evaluation import score_sample

    kind = "mask" if gt_mask is not None else "box"
    if final_mask is None:
        return None, kind
    s = score_sample(final_mask, gt_mask, gt_box, protocol or "zeroov", image_size=size)
    return (s.mask_iou if kind == "mask" else s.box_iou), kind


def load_image(sample) -> np.ndarray:
    """uint8 (H, W, 3) RGB of the sample, checked against the data set's (width, height)."""
    from ..images import load_rgb

    image = load_rgb(sample.image_path)
    if image.shape[:2] != (sample.height, sample.width):
        raise ValueError(f"{sample.image_path}: image is {image.shape[1]}x{image.shape[0]}, the data set "
                         f"says {sample.width}x{sample.height}")
    return image


# ------------------------------------------------------------------------------ one sample
def gather(run: RunDir, sample, config: EvolveConfig, protocol: str | None = None) -> PanelData:
    """Collect one sample's panel contents. Raises ValueError (DumpError, ImageError, DatasetError,
    EvalInputError) naming the file when an input is missing or bad."""
    sid = sample.sample_id
    maps, meta = run.load_overview(sid)
    weights = list(meta["weights"]) + [None] * len(meta["layers"])
    layers = tuple((int(layer), None if w is None else float(w), maps[1 + i])
                   for i, (layer, w) in enumerate(zip(meta["layers"], weights)))
    size = (sample.height, sample.width)
    image = load_image(sample)
    grid, evolve_mask, source = soft_maps(run, sid, maps[0], size, config)
    final = load_final_mask(run, sid, size)
    gt_mask = sample.load_mask()
    iou, kind = score(final, gt_mask, sample.box, size, protocol)
    answer = meta.get("answer")
    return PanelData(
        sample_id=sid, expression=sample.expression, answer=answer if isinstance(answer, str) else None,
        image=image, layers=layers, a_c=maps[0], a_cs=grid["a_cs"], seeds=grid["seeds"],
        region=grid["region"], a_e=grid["a_e"], evolve_mask=evolve_mask, final_mask=final,
        gt_mask=gt_mask, gt_box=sample.box, iou=iou, iou_kind=kind, config=config, maps_source=source)
