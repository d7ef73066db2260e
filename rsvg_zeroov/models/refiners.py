"""The refiner role: what stage 3 does with its evolved mask (docs/method.md, stage 3 step 6).

A refiner is one adapter class plus one registry line below; the stage reads only what the
:class:`Refiner` protocol declares. Keys: ``vit_h`` (the paper's SAM ViT-H, default), ``vit_l``,
``vit_b`` (SAM built by ``segment_anything.sam_model_registry``), ``tiny`` (the offline
random-weight SAM) and ``box-fill`` (the filled tight box of the mask; no weights).

Every adapter class has ``load(entry, ref, device) -> Refiner``; :func:`load_refiner` builds one
from a key and an optional weights file, :func:`refiner_ref` resolves them without loading (for
:func:`rsvg_zeroov.models.base.check_models`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .base import TINY, ModelRef, Registry, load_object

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
REFINERS = Registry("refiner", probe="", checkpoint_dir="sam_checkpoint", skip_hint="--no-sam")
REFINERS.add("vit_h", adapter="rsvg_zeroov.models.sam:SamRefiner", checkpoint="sam_vit_h_4b8939.pth",
             url=SAM_URL + "sam_vit_h_4b8939.pth", size="2.4 GB", default=True, sam_type="vit_h")
REFINERS.add("vit_l", adapter="rsvg_zeroov.models.sam:SamRefiner", checkpoint="sam_vit_l_0b3195.pth",
             url=SAM_URL + "sam_vit_l_0b3195.pth", size="1.2 GB", sam_type="vit_l")
REFINERS.add("vit_b", adapter="rsvg_zeroov.models.sam:SamRefiner", checkpoint="sam_vit_b_01ec64.pth",
             url=SAM_URL + "sam_vit_b_01ec64.pth", size="375 MB", sam_type="vit_b")
REFINERS.add(TINY, adapter="rsvg_zeroov.models.sam:SamRefiner", size="~100 kB", sam_type=TINY)
REFINERS.add("box-fill", adapter="rsvg_zeroov.models.boxfill:BoxFillRefiner", size="0 (no weights)")


@runtime_checkable
class Refiner(Protocol):
    """What stage 3 (and the one-image pipeline) use of a refiner.

    key: its registry key. cpu_threads: its own work runs on torch's CPU thread pool (a SAM on the
    CPU), so the stage leaves torch multi-threaded. n_images: how many images it has embedded.
    set_image(rgb, key): make uint8 (H, W, 3) RGB the current image (``key`` names it for
    :meth:`use_image`). use_image(path, size, read): the same for a file, read with ``read(path)``
    only if it is not the current image already; ``size`` (H, W) is what the data set declares.
    refine(mask): (bool (H, W) refined mask, score or None) for the current image.
    resolved(): what loading decided (key, weights file, device), recorded in the stage config.
    """

    key: str
    cpu_threads: bool
    n_images: int

    def set_image(self, rgb: np.ndarray, key: Path | str | None = None) -> None: ...

    def use_image(self, path: Path | str, size: tuple[int, int], read: Callable) -> None: ...

    def refine(self, mask: np.ndarray) -> tuple[np.ndarray, float | None]: ...

    def resolved(self) -> dict: ...


class ImageCache:
    """The current-image bookkeeping every refiner shares; subclasses implement ``_embed(rgb)``."""

    key = ""
    cpu_threads = False

    def __init__(self) -> None:
        self.image_key: Path | None = None
        self.image_size: tuple[int, int] | None = None  # (H, W)
        self.n_images = 0

    def _embed(self, rgb: np.ndarray) -> None:
        raise NotImplementedError

    def set_image(self, rgb: np.ndarray, key: Path | str | None = None) -> None:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"the refiner needs a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")
        self._embed(rgb)
        self.image_key = None if key is None else Path(key)
        self.image_size = tuple(rgb.shape[:2])
        self.n_images += 1

    def use_image(self, path: Path | str, size: tuple[int, int], read: Callable) -> None:
        path = Path(path)
        if self.image_key == path:
            return
        rgb = read(path)
        if rgb.shape[:2] != tuple(size):
            raise ValueError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the data set says "
                             f"{size[1]}x{size[0]}; fix the annotation or the image")
        self.set_image(rgb, key=path)

    def check_mask(self, mask: np.ndarray) -> None:
        if self.image_size is None:
            raise RuntimeError(f"{type(self).__name__}.refine: set an image with use_image(...) or "
                               f"set_image(...) first")
        if mask.shape != self.image_size:
            raise ValueError(f"mask is {mask.shape}, the current image is {self.image_size} (H, W)")


def refiner_ref(name: str, checkpoint: str | None = None) -> ModelRef:
    """The weights a refiner key (and optional weights file) needs, resolved without loading.
    ``tiny`` without a file builds the offline stand-in if it is absent."""
    entry = REFINERS.entry(name)
    if entry is None:
        raise ValueError(f"unknown refiner {name!r}; choose from {', '.join(REFINERS.keys())} "
                         f"(or 'none' for no refinement)")
    if checkpoint:
        return ModelRef("refiner", str(checkpoint), entry.key)
    return REFINERS.resolve(entry.key)  # tiny: the built stand-in


def load_refiner(name: str, checkpoint: str | None = None, device: str | None = None,
                 flag: str = "--sam-checkpoint") -> Refiner:
    """Build the refiner ``name`` (a registry key) with its weights (``checkpoint`` or the default
    file). Raises ModelNotFound naming ``flag`` when the weights are missing, in one line when
    they are unreadable."""
    from .base import check_models

    ref = refiner_ref(name, checkpoint)
    check_models([("refiner", ref, flag)])
    entry = REFINERS.entry(ref.key)
    return load_object(entry.adapter).load(entry, ref, device)
