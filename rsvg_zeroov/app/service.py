"""What the interactive page does with one request, without the web layer (no Gradio here).

    service = GroundingService(Grounder(config).load(), Limits(), workdir)
    outcome = service.run("scene.tif", "the storage tank left of the road", Settings.of(config))

The models are loaded once (the service's :class:`~rsvg_zeroov.pipeline.Grounder`); each request's
:class:`Settings` (the page's "Advanced" section) make a :meth:`~rsvg_zeroov.pipeline.Grounder.reconfigured`
Grounder that shares them. One request runs at a time (a lock; the page's queue also runs one).
An upload is checked before any model runs: its size in bytes and pixels (:class:`Limits`, from
its header), that it can be read, and the expression. It is grounded as ``ground.py`` grounds a
file (:func:`rsvg_zeroov.scene.ground_scene`): a PNG / JPEG within the VLM's pixel budget gives
what ``Grounder.ground(path, text)`` gives, a GeoTIFF is read by the raster reader, and a scene
beyond the budget is grounded coarse to fine by windows. The downloads are ``ground.py``'s files
(:func:`rsvg_zeroov.scene.write_scene_outputs`), the GeoJSON in the input's own CRS.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import cli
from ..evolve.config import EvolveConfig
from ..images import ImageError
from ..pipeline import PipelineConfig
from ..scene import SCENE_OVERVIEW

MB = 1 << 20
KEEP_REQUESTS = 16  # request folders kept under WORKDIR/requests (the page has copied their files)
MAX_STEPS = 100  # most DDIM steps a request may ask for (the page's slider ends there)
MAX_K = 64  # most seed values (K) a request may ask for (likewise)
FIDELITIES = ("released", "corrected")
INVERSIONS = ("nulltext", "ddim", "noise")
STAGE_NAMES = {"overview": "stage 1/3 overview (VLM attention)", "focus": "stage 2/3 focus (diffusion self-attention)",
               "evolve": "stage 3/3 evolve",
               SCENE_OVERVIEW: "stage 1/3 overview of the whole scene (reduced read + VLM attention)"}


def refiner_keys() -> list[str]:
    """The refiner registry's keys (:data:`rsvg_zeroov.models.refiners.REFINERS`), default first."""
    from ..models.refiners import REFINERS

    return list(REFINERS.keys())


def prompt_modes() -> tuple[str, ...] | None:
    """The choices of ``EvolveConfig.refine_prompt`` (how the refiner is prompted), or None where
    the config has no such setting or declares no choices."""
    spec = {f.name: f for f in dataclasses.fields(EvolveConfig)}.get("refine_prompt")
    choices = None if spec is None else spec.metadata.get(cli.FLAG_KEY, {}).get("choices")
    return tuple(choices) if choices else None


@dataclass(frozen=True)
class Limits:
    """The largest upload a request accepts: ``max_bytes`` of file, ``max_pixels`` (width x height)."""

    max_bytes: int = 200 * MB
    max_pixels: int = 100_000_000

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"upload limits must be positive, got {self.max_bytes} bytes, {self.max_pixels} pixels")


@dataclass(frozen=True)
class Settings:
    """The per-request settings of the page's "Advanced" section.

    fidelity: every stage's (``released`` | ``corrected``); inversion, steps: stage 2's mode and
    DDIM steps (1 to :data:`MAX_STEPS`); k (1 to :data:`MAX_K`), tau, alpha: stage 3's; refine: whether the mask is refined, by ``refiner`` (a
    refiner registry key); prompt: ``EvolveConfig.refine_prompt`` where the config has it (None:
    leave it as it is).
    """

    fidelity: str
    inversion: str
    steps: int
    k: int
    tau: float
    alpha: float
    refine: bool
    refiner: str | None
    prompt: str | None = None

    @classmethod
    def of(cls, config: PipelineConfig) -> "Settings":
        """The settings ``config`` has (what the page shows before anything is changed)."""
        ev, fc = config.evolve, config.focus
        return cls(fidelity=ev.fidelity, inversion=fc.inversion, steps=fc.num_steps, k=ev.k, tau=ev.tau,
                   alpha=ev.alpha, refine=ev.refiner is not None, refiner=ev.refiner or refiner_keys()[0],
                   prompt=getattr(ev, "refine_prompt", None))

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        """``config`` with these settings; ValueError naming the setting when one is out of range
        (a request cannot ask for more than :data:`MAX_STEPS` steps or :data:`MAX_K` seeds, so one
        request cannot hold the queue for hours). The refiner keeps ``config``'s weights file only
        when it is ``config``'s refiner."""
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity {self.fidelity!r}: choose one of {', '.join(FIDELITIES)}")
        if self.inversion not in INVERSIONS:
            raise ValueError(f"inversion {self.inversion!r}: choose one of {', '.join(INVERSIONS)}")
        if int(self.steps) != self.steps or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps={self.steps!r}: the inversion steps (--steps, the page's \"Inversion steps\") "
                             f"must be an integer from 1 to {MAX_STEPS}")
        if int(self.k) != self.k or not 1 <= self.k <= MAX_K:
            raise ValueError(f"k={self.k!r}: K, the seed values of stage 3 (the page's \"K\"), must be an integer "
                             f"from 1 to {MAX_K}")
        for name in ("tau", "alpha"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r}: the threshold must lie in [0, 1]")
        if self.refine and self.refiner not in refiner_keys():
            raise ValueError(f"refiner {self.refiner!r}: choose one of {', '.join(refiner_keys())}")
        refiner = self.refiner if self.refine else None
        evolve = {"k": int(self.k), "tau": self.tau, "alpha": self.alpha, "fidelity": self.fidelity, "refiner": refiner}
        if refiner != config.evolve.refiner:
            evolve["refiner_checkpoint"] = None
        if refiner is None:  # no refiner: nothing to prompt
            evolve.update(refine_prompt="box", refine_iters=1)
        elif self.prompt is not None:
            evolve["refine_prompt"] = self.prompt
        return config.replace(overview={"fidelity": self.fidelity}, evolve=evolve,
                              focus={"inversion": self.inversion, "num_steps": int(self.steps)})


def check_upload(path, limits: Limits) -> Path:
    """The uploaded file, checked against ``limits`` from its size and header (before decoding)
    and readable as a scene; ImageError / ValueError with a message for the user otherwise."""
    from ..scene import check_scene

    if path is None or not str(path).strip():
        raise ImageError("no image: upload a PNG, JPEG, TIFF or GeoTIFF first")
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path.name}: the uploaded file is gone; upload it again")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageError(f"{path.name}: the file is {size / MB:.1f} MB; this page accepts up to "
                         f"{limits.max_bytes / MB:.1f} MB (the app's --max-upload-mb)")
    h, w = check_scene(path)
    if h * w > limits.max_pixels:
        raise ImageError(f"{path.name}: the image is {w}x{h} = {h * w:,} pixels; this page accepts up to "
                         f"{limits.max_pixels:,} pixels (the app's --max-upload-pixels)")
    return path


@dataclass(frozen=True)
class Outcome:
    """What the page shows for one request: ``overlay`` uint8 (h, w, 3); ``box`` the box as text
    (``[x1, y1, x2, y2]`` scene pixels, ``null`` for an empty mask); ``answer`` the VLM's text;
    ``maps`` ``(picture, caption)`` per stage map (none for a scene grounded by windows);
    ``timings`` ``(stage, seconds)`` rows; ``files`` the downloads; ``status`` one line;
    ``result`` the :class:`~rsvg_zeroov.scene.SceneResult`."""

    overlay: np.ndarray
    box: str
    answer: str
    maps: list
    timings: list
    files: list
    status: str
    result: object


def timing_rows(timings: dict) -> list[tuple[str, float]]:
    """:func:`scene_timings` as ``(what, seconds)`` rows: the scene overview where there was one,
    the three stages with stage 2's phases under it (those that took no time left out), the
    refiner and the total."""
    rows = [(STAGE_NAMES[SCENE_OVERVIEW], timings[SCENE_OVERVIEW])] if SCENE_OVERVIEW in timings else []
    rows += [(STAGE_NAMES["overview"], timings.get("overview", 0.0)), (STAGE_NAMES["focus"], timings.get("focus", 0.0))]
    rows += [(f"stage 2/3 - {k.split('.', 1)[1]}", v) for k, v in timings.items() if k.startswith("focus.") and v > 0]
    rows += [(STAGE_NAMES["evolve"], timings.get("evolve", 0.0)), ("refiner (image embedding included)",
             timings.get("refine", 0.0)), ("total", timings.get("total", 0.0))]
    return [(what, round(float(v), 3)) for what, v in rows]


class GroundingService:
    """One loaded :class:`~rsvg_zeroov.pipeline.Grounder` serving requests one at a time.

    workdir: where each request's downloads are written (``requests/<n>/``; the last
    :data:`KEEP_REQUESTS` are kept). tiny: the models are the random stand-ins (recorded in box.json).
    """

    def __init__(self, grounder, limits: Limits, workdir, tiny: bool = False):
        self.grounder, self.limits, self.tiny = grounder, limits, tiny
        self.workdir = Path(workdir)
        self.refiners: dict = {}  # other refiners, loaded on first use (Grounder.reconfigured)
        self.requests = 0
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """The launch settings (the page's defaults)."""
        return Settings.of(self.grounder.config)

    def run(self, path, text: str, settings: Settings | None = None, progress=None) -> Outcome:
        """Ground ``text`` in the uploaded file ``path`` with ``settings`` (None: the launch ones).

        progress: ``callback(StageProgress)`` (:meth:`~rsvg_zeroov.pipeline.Grounder.ground_many`;
        for a scene grounded by windows, :data:`~rsvg_zeroov.scene.SCENE_OVERVIEW` first, then each
        window's stages). Raises the library's user errors
        (ImageError, ValueError, ModelNotFound) with their message."""
        from ..scene import ground_scene

        with self._lock:
            t0 = time.perf_counter()
            path = check_upload(path, self.limits)
            if text is None or not text.strip():
                raise ValueError('the Expression is empty: type the phrase to ground, e.g. "the storage tank '
                                 'left of the road"')
            config = (settings or self.settings).apply(self.grounder.config)
            grounder = self.grounder.reconfigured(config, self.refiners)
            grounder.progress = progress
            scene = ground_scene(grounder, path, [text])[0]
            self.requests += 1
            folder = self._folder(self.requests)
            files = self._write(folder, path, scene, config)
            outcome = self._outcome(scene, text, config, folder, files, time.perf_counter() - t0)
        return outcome

    def _folder(self, n: int) -> Path:
        root = self.workdir / "requests"
        folder = root / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        for old in root.iterdir():
            if old.name.isdigit() and int(old.name) <= n - KEEP_REQUESTS:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def _write(self, folder: Path, path: Path, scene, config: PipelineConfig) -> list[Path]:
        """``ground.py``'s files (mask.png, box.json with every setting and the timings, and for a
        georeferenced input mask.tif and mask.geojson in its CRS); overlay.png is shown, not offered."""
        from ..runner import jsonable
        from ..scene import write_scene_outputs
        from ..vectors import VectorOptions

        extra = {"image": path.name, "models_are_tiny_stand_ins": self.tiny, "config": jsonable(config),
                 "timings": {k: round(v, 4) for k, v in scene_timings(scene).items()}}
        record = write_scene_outputs(scene, folder, VectorOptions(vector_crs="native"), extra)
        return [folder / name for name in record["outputs"] if name != "overlay.png"]

    def _outcome(self, scene, text: str, config: PipelineConfig, folder: Path, files, seconds: float) -> Outcome:
        from PIL import Image

        from .maps import panel_data, stage_maps

        maps = []
        if scene.plain:
            maps = stage_maps(panel_data(scene.pieces[0].result, scene.image.rgb, text, config.overview.weights,
                                         config.evolve))
        with Image.open(folder / "overlay.png") as im:
            overlay = np.asarray(im.convert("RGB"))
        box = json.dumps(scene.box)
        how = "" if scene.plain else f" by {len(scene.pieces)} focus window(s) (no stage maps for a windowed scene)"
        status = (f"Request {self.requests}: grounded in {seconds:.2f} s{how}; box {box}, "
                  f"{scene.mask_pixels} mask pixels" + (", georeferenced downloads" if scene.crs else ""))
        return Outcome(overlay=overlay, box=box, answer=scene.answer, maps=maps,
                       timings=timing_rows(scene_timings(scene)), files=[str(f) for f in files],
                       status=status, result=scene)


def scene_timings(scene) -> dict:
    """Seconds per stage of a scene's grounding: its one result's ``timings``, or for a scene
    grounded by windows their sum over the windows plus :data:`~rsvg_zeroov.scene.SCENE_OVERVIEW`,
    the overview read and stage 1 on it (``SceneResult.overview_seconds``), which ``total`` includes."""
    out: dict[str, float] = {}
    if scene.overview_seconds is not None:
        out[SCENE_OVERVIEW] = out["total"] = scene.overview_seconds
    for piece in scene.pieces:
        for key, value in piece.result.timings.items():
            out[key] = out.get(key, 0.0) + value
    return out
