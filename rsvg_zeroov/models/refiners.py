"""The refiner role: what stage 3 does with its evolved mask (docs/method.md, stage 3 step 6).

A refiner is one adapter class plus one registry line below; the stage reads only what the
:class:`Refiner` protocol declares. Keys (``python -m rsvg_zeroov.models`` lists them):

- ``vit_h`` (the paper's SAM ViT-H, default; also accepted as ``sam-vit-h``), ``vit_l`` / ``vit_b``
  (``sam-vit-l`` / ``sam-vit-b``): segment-anything, official ``.pth`` files in ``sam_checkpoint/``;
  ``tiny`` (``tiny-sam``): its offline random-weight stand-in;
- ``box-fill``: the filled tight box of the mask (no weights);
- ``sam-hq-vit-h`` / ``-l`` / ``-b`` (transformers ``SamHQModel``), ``sam2.1-hiera-l`` / ``-b+`` /
  ``-s`` / ``-t`` (``Sam2Model``), ``sam3`` (``Sam3TrackerModel``, the promptable tracker half of
  SAM 3): hub ids, :mod:`rsvg_zeroov.models.sam_hf`; ``tiny-sam-hq``, ``tiny-sam2.1``,
  ``tiny-sam3``: their random-weight stand-ins, built offline on first use.

The stored key of the default stays ``vit_h`` (the spelling every existing run directory recorded,
so their settings and fingerprints are unchanged); an alias or a hub id given as ``--refiner`` is
turned into its key when the config is built.

A prompt (:class:`Prompt`) is a box, positive points and/or a mask prior, all in original-image
pixels; each adapter maps them into its model's own input frame. Every adapter class has
``load(entry, ref, device) -> Refiner``; :func:`load_refiner` builds one from a key and an optional
weights file (a ``.pth`` file, or a folder for the transformers refiners), :func:`refiner_ref`
resolves them without loading (for :func:`rsvg_zeroov.models.base.check_models`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .base import TINY, ModelRef, Registry, load_object

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM, _HF = "rsvg_zeroov.models.sam:SamRefiner", "rsvg_zeroov.models.sam_hf:HFSamRefiner"
_TINY_BUILD = "rsvg_zeroov.tiny.sam_hf:"
REFINERS = Registry("refiner", probe="", checkpoint_dir="sam_checkpoint", skip_hint="--no-sam")
REFINERS.add("vit_h", adapter=_SAM, checkpoint="sam_vit_h_4b8939.pth", url=SAM_URL + "sam_vit_h_4b8939.pth",
             size="2.4 GB", default=True, aliases=("sam-vit-h",), sam_type="vit_h")
REFINERS.add("vit_l", adapter=_SAM, checkpoint="sam_vit_l_0b3195.pth", url=SAM_URL + "sam_vit_l_0b3195.pth",
             size="1.2 GB", aliases=("sam-vit-l",), sam_type="vit_l")
REFINERS.add("vit_b", adapter=_SAM, checkpoint="sam_vit_b_01ec64.pth", url=SAM_URL + "sam_vit_b_01ec64.pth",
             size="375 MB", aliases=("sam-vit-b",), sam_type="vit_b")
REFINERS.add(TINY, adapter=_SAM, size="~100 kB", aliases=("tiny-sam",), sam_type=TINY)
REFINERS.add("box-fill", adapter="rsvg_zeroov.models.boxfill:BoxFillRefiner", size="0 (no weights)")
for _key, _hub, _size, _family in (
        ("sam-hq-vit-h", "syscv-community/sam-hq-vit-huge", "2.6 GB", "sam_hq"),
        ("sam-hq-vit-l", "syscv-community/sam-hq-vit-large", "1.3 GB", "sam_hq"),
        ("sam-hq-vit-b", "syscv-community/sam-hq-vit-base", "0.4 GB", "sam_hq"),
        ("sam2.1-hiera-l", "facebook/sam2.1-hiera-large", "0.9 GB", "sam2"),
        ("sam2.1-hiera-b+", "facebook/sam2.1-hiera-base-plus", "0.3 GB", "sam2"),
        ("sam2.1-hiera-s", "facebook/sam2.1-hiera-small", "0.2 GB", "sam2"),
        ("sam2.1-hiera-t", "facebook/sam2.1-hiera-tiny", "0.2 GB", "sam2"),
        ("sam3", "facebook/sam3", "3.4 GB (gated: accept the licence on the hub)", "sam3_tracker")):
    REFINERS.add(_key, adapter=_HF, hub_id=_hub, size=_size, probe="config.json", family=_family)
for _key, _family, _builder in (("tiny-sam-hq", "sam_hq", "build_tiny_sam_hq"),
                                ("tiny-sam2.1", "sam2", "build_tiny_sam2"),
                                ("tiny-sam3", "sam3_tracker", "build_tiny_sam3")):
    REFINERS.add(_key, adapter=_HF, size="~1 MB, random weights", probe="config.json", family=_family,
                 tiny_path=f"sam_hf/{_key}", tiny_build=_TINY_BUILD + _builder)

# box+mask: the mask prior becomes SAM's low-res mask logits as GAIN * (value - threshold)
MASK_LOGIT_GAIN = 20.0


@dataclass(frozen=True)
class Prompt:
    """One refiner prompt for the current image, everything in original-image pixels.

    box: float32 (4,) inclusive ``[x1, y1, x2, y2]`` pixel indices (SAM's box convention), or None.
    points: float32 (N, 2) positive points ``[x, y]`` in pixel-index coordinates (the centre of
        pixel (row i, column j) is (j, i)), or None.
    mask_prior: float (gh, gw) map spanning the whole image (stage 3's ``A_E``), or None; the
        adapter turns it into its model's low-resolution mask input (:func:`mask_input_logits`).
    prior_threshold: the value of ``mask_prior`` that becomes logit 0 (stage 3's ``alpha``).
    """

    box: np.ndarray | None = None
    points: np.ndarray | None = None
    mask_prior: np.ndarray | None = None
    prior_threshold: float = 0.5

    @property
    def pieces(self) -> tuple[str, ...]:
        """The kinds it holds, from ``("box", "points", "mask")``."""
        return tuple(name for name, value in (("box", self.box), ("points", self.points),
                                              ("mask", self.mask_prior)) if value is not None)

    @classmethod
    def box_of(cls, mask: np.ndarray) -> "Prompt | None":
        """The released prompt: the inclusive tight box of ``mask`` (None for an empty mask)."""
        from ..evaluation.iou import tight_box

        box = tight_box(mask)
        return None if box is None else cls(box=np.asarray(box, dtype=np.float32))


def mask_input_logits(prompt: Prompt, image_hw: tuple[int, int], input_size: int,
                      low_res: tuple[int, int], letterbox: bool) -> np.ndarray:
    """``prompt.mask_prior`` as a model's low-resolution mask input: float32 (1, *low_res) logits.

    The model sees the image resized into an ``input_size`` square: ``letterbox`` (SAM, SAM-HQ) =
    the longest side scaled to ``input_size`` (SAM's rounding), the image at the top left and zero
    padding; otherwise (SAM 2.1, SAM 3) stretched to fill the square. The prior is resized
    bilinearly (``align_corners=False``) onto the image's part of that square, 0 elsewhere, and
    area-averaged to ``low_res`` (the frame of the model's own low-res masks: 256 x 256 for a
    1024 input); a value v becomes the logit ``MASK_LOGIT_GAIN * (v - prior_threshold)``, so the
    model's threshold 0 falls where stage 3 binarises.
    """
    import torch
    import torch.nn.functional as F

    h, w = image_hw
    if letterbox:
        scale = input_size / max(h, w)
        content = (int(h * scale + 0.5), int(w * scale + 0.5))
    else:
        content = (input_size, input_size)
    prior = torch.from_numpy(np.ascontiguousarray(prompt.mask_prior, dtype=np.float32))[None, None]
    canvas = torch.zeros((1, 1, input_size, input_size), dtype=torch.float32)
    canvas[..., :content[0], :content[1]] = F.interpolate(prior, size=content, mode="bilinear",
                                                          align_corners=False)
    low = F.interpolate(canvas, size=tuple(low_res), mode="area")[0]
    return (MASK_LOGIT_GAIN * (low - float(prompt.prior_threshold))).numpy()


@runtime_checkable
class Refiner(Protocol):
    """What stage 3 (and the one-image pipeline) use of a refiner.

    key: its registry key. cpu_threads: its own work runs on torch's CPU thread pool (a SAM on the
    CPU), so the stage leaves torch multi-threaded. n_images: how many images it has embedded.
    prompt_pieces: the :class:`Prompt` parts it takes, from ``("box", "points", "mask")``.
    set_image(rgb, key): make uint8 (H, W, 3) RGB the current image (``key`` names it for
    :meth:`use_image`). use_image(path, size, read): the same for a file, read with ``read(path)``
    only if it is not the current image already; ``size`` (H, W) is what the data set declares.
    refine(mask, prompt=None): (bool (H, W) refined mask, score or None) for the current image;
    ``prompt`` None = the tight box of ``mask`` (the released prompt).
    resolved(): what loading decided (key, weights file, device), recorded in the stage config.
    needs_pixels (optional, default True; :class:`ImageCache` has it): False when only the image's
    size matters (box-fill), so callers pass the path and size instead of decoding the image.
    """

    key: str
    cpu_threads: bool
    n_images: int
    prompt_pieces: tuple[str, ...]

    def set_image(self, rgb: np.ndarray, key: Path | str | None = None) -> None: ...

    def use_image(self, path: Path | str, size: tuple[int, int], read: Callable) -> None: ...

    def refine(self, mask: np.ndarray, prompt: Prompt | None = None) -> tuple[np.ndarray, float | None]: ...

    def resolved(self) -> dict: ...


class ImageCache:
    """The current-image bookkeeping every refiner shares; subclasses implement ``_embed(rgb)``."""

    key = ""
    cpu_threads = False
    needs_pixels = True  # False: use_image reads only the image's size (the pixels do not matter)
    prompt_pieces: tuple[str, ...] = ("box", "points", "mask")

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

    def prompt_for(self, mask: np.ndarray, prompt: Prompt | None) -> Prompt | None:
        """``prompt``, or the tight box of ``mask`` when None (None again for an empty mask), after
        checking the mask against the current image and the prompt against :attr:`prompt_pieces`."""
        self.check_mask(mask)
        if prompt is None:
            return Prompt.box_of(mask)
        extra = [p for p in prompt.pieces if p not in self.prompt_pieces]
        if extra:
            raise ValueError(f"refiner {self.key!r} takes only {' / '.join(self.prompt_pieces)} prompts, "
                             f"not {' / '.join(extra)}")
        return prompt


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
