"""The Overview model: load a VLM (Qwen2.5-VL by default) once, then map many (image, expression)
pairs to A_C. The model family's specifics (classes, chat turn, image preprocessing, image-token
span, decoder-layer path, capture hook) are its adapter's (:mod:`rsvg_zeroov.models.vlm`).

Two tiers (as SAM's predictor): ``Overview(config, device).load()`` once, then
``overview([(image, expression), ...])`` -> list of :class:`OverviewResult`, batched by
``config.batch_size`` with left padding. Used by the stage driver and by one-process pipelines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .answer import DEFAULT_CONVENTION, parse_answer, to_original
from .config import OverviewConfig
from .fuse import fuse, fuse64, stack_dump
from .generate import StopAtBracket, TokenClosesAnswer, TokenProgress, cut_answer, eos_ids, generation_config


@dataclass(frozen=True)
class OverviewResult:
    """Stage 1 output for one (image, expression).

    fused: float32 (gh, gw) A_C = sum_l w_l minmax(a_l), values in [0, sum(weights)].
    per_layer: float32 (n_layers, gh, gw) raw a_l (mean attention probability, not renormalised),
        in config.layers order. Cell (i, j) covers image pixels of the resized image
        ``[28 i, 28 (i+1)) x [28 j, 28 (j+1))`` (rows = y).
    grid: (gh, gw) merged-token grid. image_hw: (H, W) of the original image. resized_hw: (H', W')
        pixels seen by the vision tower (multiples of 28). (The sidecar writes both as the
        ``image_size`` / ``resized_size`` lists [W, H]; the properties of those names give that order.)
    answer: decoded generated text (special tokens removed, surrounding whitespace stripped as the
        released script does). token_ids: generated ids up to and
        including the first EOS. prompt: user text; chat_prompt: chat-templated text.
    layers: the decoder layers of ``per_layer``. extra: sidecar keys of families other than
        Qwen2.5-VL (``box_convention`` and ``answer_box``, the answer in original pixels or None;
        the Qwen2.5-VL sidecar keeps its layout, :func:`rsvg_zeroov.overview.answer.box_from_sidecar`
        reads its box).
    """

    fused: np.ndarray
    per_layer: np.ndarray
    answer: str
    prompt: str
    chat_prompt: str
    grid: tuple[int, int]
    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    token_ids: tuple[int, ...]
    layers: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H) of the original image: the sidecar's ``image_size`` order."""
        return self.image_hw[1], self.image_hw[0]

    @property
    def resized_size(self) -> tuple[int, int]:
        """(W', H') seen by the vision tower: the sidecar's ``resized_size`` order."""
        return self.resized_hw[1], self.resized_hw[0]

    def dump(self) -> np.ndarray:
        """float32 (1 + n_layers, gh, gw): [0] = A_C, [1:] = a_l (the RUN/overview/<id>.npy layout)."""
        return stack_dump(self.fused, self.per_layer)


def resolve_dtype(name: str | None, device: str):
    import torch

    if name is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, name)


class Overview:
    """A VLM with last-row attention capture at ``config.layers``. Call :meth:`load` first.

    After loading: ``adapter`` (the model family's :class:`~rsvg_zeroov.models.vlm.VLMAdapter`),
    and its ``model``, ``processor`` and ``ref`` (the resolved model name). ``requested`` is the
    config as given; ``config`` the same with its layers decided once the model is known
    (``layers=None``: the adapter's layer rule, :mod:`rsvg_zeroov.overview.layers`)."""

    def __init__(self, config: OverviewConfig | None = None, device: str = "cpu"):
        self.requested = self.config = config or OverviewConfig()
        self.device = str(device)
        self.adapter = self.model = self.processor = self.ref = None
        self._closes_answer = None

    def load(self) -> "Overview":
        """Load the adapter's model + processor (sdpa everywhere); check the layers exist."""
        from ..models.vlm import load_vlm

        dtype = resolve_dtype(self.config.dtype, self.device)
        self.adapter = load_vlm(self.config.model, dtype=dtype, device=self.device)
        self.model, self.processor, self.ref = self.adapter.model, self.adapter.processor, self.adapter.ref
        self._decide_layers()
        return self

    def _decide_layers(self) -> None:
        from .layers import with_layers

        self.config = with_layers(self.requested, self.adapter.layer_rule, self.adapter.num_layers)
        self.config.check_layers(self.adapter.num_layers)
        getattr(self.adapter, "check_config", lambda config: None)(self.config)

    def attach(self, model, processor, ref=None) -> "Overview":
        """Use an already built Qwen2.5-VL ``model`` + ``processor`` (benchmarks build random
        full-size models in memory) instead of :meth:`load`."""
        from ..models.base import ModelRef
        from ..models.qwen2_5_vl import Qwen25VL

        adapter = Qwen25VL(ref or ModelRef("vlm", "<in memory>", None))
        adapter.model, adapter.processor = model, processor
        self.adapter, self.model, self.processor, self.ref = adapter, model, processor, adapter.ref
        self._decide_layers()
        return self

    @property
    def released_arithmetic(self) -> bool:
        """Average in the model dtype and fuse in float64 (released fidelity, half-precision model)."""
        import torch

        return self.config.fidelity == "released" and self._require().dtype != torch.float32

    @property
    def dtype_name(self) -> str:
        return str(self._require().dtype).removeprefix("torch.")

    def _require(self):
        if self.model is None:
            raise RuntimeError("Overview model is not loaded: call Overview(config, device).load() first")
        return self.model

    def generation_config(self):
        """The checkpoint's generation config with this run's overrides (what ``generate`` gets)."""
        return generation_config(self._require(), self.config)

    def eos_ids(self, gc=None) -> list[int]:
        return eos_ids(gc or self.generation_config())

    def prepare(self, items: Sequence[tuple[object, str]]):
        """The adapter's :class:`~rsvg_zeroov.models.vlm.PreparedBatch` of ``items``."""
        self._require()
        return self.adapter.prepare(items, self.config)

    def generate_ids(self, batch, capture: bool = True):
        """Run ``generate`` on a prepared batch -> (sequences (B, L + T) on CPU, recorder or None)."""
        import torch
        from transformers import StoppingCriteriaList

        from ..progress import bar

        model = self._require()
        inputs = batch.inputs.to(model.device)
        gc = self.generation_config()
        with torch.inference_mode(), bar(gc.max_new_tokens, "stage 1 answer tokens") as ticks:
            criteria = StoppingCriteriaList([TokenProgress(ticks)])
            if not capture:
                if self.config.stop_at_bracket:
                    criteria.append(StopAtBracket(self._closes()))
                return model.generate(**inputs, generation_config=gc, stopping_criteria=criteria).cpu(), None
            with self.adapter.capture(self.config.layers, self.eos_ids(gc), self.released_arithmetic) as recorder:
                if self.config.stop_at_bracket:
                    criteria.append(StopAtBracket(self._closes(), recorder.stop_rows))
                sequences = model.generate(**inputs, generation_config=gc, stopping_criteria=criteria)
        return sequences.cpu(), recorder

    def _closes(self) -> TokenClosesAnswer:
        if self._closes_answer is None:
            self._closes_answer = TokenClosesAnswer(self.processor.tokenizer)
        return self._closes_answer

    def __call__(self, items: Sequence[tuple[object, str]]) -> list[OverviewResult]:
        """[(image, expression), ...] -> one :class:`OverviewResult` per item, in order.

        ``image``: a path (read by ``qwen_vl_utils`` as the released script does), a PIL image or
        uint8 RGB (H, W, 3); see :func:`rsvg_zeroov.models.qwen2_5_vl.vlm_image`."""
        out: list[OverviewResult] = []
        size = self.config.batch_size
        for i in range(0, len(items), size):
            out.extend(self._run_batch(items[i:i + size]))
        return out

    def _run_batch(self, items) -> list[OverviewResult]:
        return self.run(self.prepare(items))

    def run(self, batch) -> list[OverviewResult]:
        """Generate with capture on a prepared batch and read each row's maps back."""
        sequences, recorder = self.generate_ids(batch, capture=True)
        maps = {layer: m.float().cpu().numpy() for layer, m in recorder.mean_maps().items()}
        steps = recorder.steps.cpu().numpy()
        eos = set(self.eos_ids())
        closes = self._closes() if self.config.stop_at_bracket else None
        fuse_maps = fuse64 if self.config.fidelity == "released" else fuse
        convention = getattr(self.adapter, "box_convention", DEFAULT_CONVENTION)
        results = []
        for b in range(len(batch.prompts)):
            tokens = cut_answer(sequences[b, batch.prompt_len:].tolist(), eos, closes)
            assert int(steps[b]) == len(tokens), (steps[b], len(tokens))  # one counted step per generated token
            (start, end), (gh, gw) = batch.spans[b], batch.grids[b]
            per_layer = np.stack([maps[layer][b, start:end].reshape(gh, gw) for layer in self.config.layers])
            per_layer = per_layer.astype(np.float32, copy=False)
            answer = self.adapter.decode(tokens).strip()  # as released
            results.append(OverviewResult(
                fused=fuse_maps(per_layer, self.config.weights).astype(np.float32), per_layer=per_layer,
                answer=answer, prompt=batch.prompts[b], chat_prompt=batch.chat_texts[b], grid=(gh, gw),
                image_hw=batch.image_hw[b], resized_hw=batch.resized_hw[b], token_ids=tuple(tokens),
                layers=self.config.layers, extra=answer_extra(answer, convention, batch.image_hw[b],
                                                              batch.resized_hw[b])))
        return results

    def resolved(self) -> dict:
        """What loading decided, for configs and sidecars (JSON types): model source and key, dtype,
        the generation config ``generate`` gets, the attention arithmetic, the layers captured and
        the rule that chose them, and the answer's box convention."""
        from .layers import layer_record

        gc = self.generation_config()
        return {"model": self.ref.source if self.ref else self.config.model,
                "model_key": self.ref.key if self.ref else None, "dtype": self.dtype_name,
                "generation": gc.to_diff_dict() if hasattr(gc, "to_diff_dict") else gc.to_dict(),
                "arithmetic": "model dtype (released)" if self.released_arithmetic else "float32",
                "layers": list(self.config.layers),
                **layer_record(self.requested, self.adapter.layer_rule, self.adapter.num_layers),
                "box_convention": getattr(self.adapter, "box_convention", DEFAULT_CONVENTION)}

    def settings(self) -> dict:
        """``{"config": the OverviewConfig fields as given, "resolved": :meth:`resolved`}`` (JSON types)."""
        from ..runner import jsonable

        return {"config": jsonable(self.requested), "resolved": self.resolved()}


def answer_extra(answer: str, convention: str, image_hw, resized_hw) -> dict:
    """The sidecar keys a family other than Qwen2.5-VL adds: its ``box_convention`` and the answer as
    an original-pixel ``answer_box`` (None when unparseable); sizes (H, W). Empty for Qwen2.5-VL
    (:data:`DEFAULT_CONVENTION`), whose sidecar layout is unchanged."""
    if convention == DEFAULT_CONVENTION:
        return {}
    box, read_as = parse_answer(answer, convention)
    return {"box_convention": convention,
            "answer_box": None if box is None else to_original(box, read_as, image_hw, resized_hw)}
