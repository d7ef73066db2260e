"""Stage 1 settings: one frozen object with the paper/released defaults (docs/method.md, stage 1).

Everything the stage does is decided here; CLI flags only override fields they are given.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..cli import flag
from ..fidelity import FIDELITIES  # noqa: F401 - re-exported
from .layers import PAPER_LAYERS

# The released grounding prompt, verbatim (note the two spaces after "description.").
PROMPT_TEMPLATE = ("Locate it according to the following description.  {q} "
                   "The output format should be like [x1, y1, x2, y2] without any other text.")
DTYPES = ("float32", "float16", "bfloat16")


class LayerError(ValueError):
    """A configured decoder layer that the loaded model does not have."""


@dataclass(frozen=True)
class OverviewConfig:
    """How the Overview map A_C is computed.

    layers: 0-based decoder layers whose attention is captured. None (default) = the paper's
        16, 17, 18, 19, carried to the model's depth by its adapter's layer rule (Qwen2.5-VL: as
        they are; other families: the same relative depth; :mod:`rsvg_zeroov.overview.layers`).
    weights: fusion weight of each layer, same order (paper: 0.1, 0.1, 0.3, 0.5).
    max_new_tokens: generation budget (paper: 1024).
    min_new_tokens: None (released) or a fixed lower bound (tests/benchmarks fix the answer length).
    prompt_template: the user text; ``{q}`` is replaced by the referring expression.
    max_pixels: qwen_vl_utils ``max_pixels`` for the image; None = the qwen_vl_utils default
        (16384 cells: 16384 * 28 * 28 for Qwen2.5-VL, 16384 * 32 * 32 for Qwen3-VL). ``min_pixels``
        likewise (None = 4 cells). LLaVA-family models take a fixed square and refuse both.
    greedy: None = the checkpoint's own generation config (released); True forces greedy
        decoding (``do_sample=False``); False forces sampling.
    dtype: "float32" | "float16" | "bfloat16" | None (= bfloat16 on CUDA, float32 on CPU).
    batch_size: samples per ``generate`` call (left padding; the same maps as one by one).
    model: registry key, hub id or local folder (None = the registry default, Qwen2.5-VL-7B);
        other families: Qwen3-VL, the LLaVA layout (``python -m rsvg_zeroov.models`` lists the keys).
    stop_at_bracket: stop generating at the first answer token containing "]" (not in the paper;
        off = released). The maps average the steps up to that token.
    fidelity: "released" (default) or "corrected". Released fuses the layers in float64 as the
        released script does and, with a half-precision model, takes the attention probabilities in
        the model dtype, averages over heads and then over steps in that dtype and casts to float32
        afterwards; corrected accumulates in float32 and rounds each layer's min-max to float32
        before the sum (the arithmetic of earlier versions; A_C differs by at most 1 float32 ulp
        in a float32 run, by ~1-2 % of its maximum in bfloat16).
    """

    layers: tuple[int, ...] | None = field(default=None, metadata=flag(
        "--layers", "0-based decoder layers whose attention is captured; none means the paper's 16,17,18,19 "
        "(Qwen2.5-VL: as they are; other families: at the same relative depth of their decoder)"))
    weights: tuple[float, ...] = field(default=(0.1, 0.1, 0.3, 0.5), metadata=flag(
        "--weights", "fusion weights, one per layer"))
    max_new_tokens: int = field(default=1024, metadata=flag("--max-new-tokens", "generation budget"))
    min_new_tokens: int | None = field(default=None, metadata=flag(
        "--min-new-tokens", "not in the paper; fixes the answer length"))
    prompt_template: str = PROMPT_TEMPLATE
    max_pixels: int | None = field(default=None, metadata=flag(
        "--max-pixels", "qwen_vl_utils max_pixels; none means its own 16384 cells (16384*28*28 for Qwen2.5-VL)"))
    min_pixels: int | None = field(default=None, metadata=flag(
        "--min-pixels", "qwen_vl_utils min_pixels; none means its own 4 cells (4*28*28 for Qwen2.5-VL)"))
    greedy: bool | None = field(default=None, metadata=flag(
        "--greedy", "force greedy (--greedy) or sampling (--no-greedy); none means the checkpoint's config"))
    dtype: str | None = field(default=None, metadata=flag(
        "--dtype", "model dtype; none means bfloat16 on CUDA, float32 on CPU", choices=DTYPES))
    batch_size: int = field(default=1, metadata=flag("--batch-size", "samples per generate call (left padding)"))
    model: str | None = field(default=None, metadata=flag(
        "--model", "VLM: registry key (qwen2.5-vl-7b, qwen3-vl-8b, llava-1.5-7b, tiny, ...; python -m rsvg_zeroov.models lists them), hub id or local folder; none means qwen2.5-vl-7b",
        aliases=("--vlm", "--model_id", "--model-id")))
    stop_at_bracket: bool = field(default=False, metadata=flag(
        "--stop-at-bracket", "not in the paper: stop generating once the answer contains its closing ']' "
        "(a quick setting; the released script generates until EOS)"))
    fidelity: str = field(default="released", metadata=flag(
        "--fidelity", "released: half-precision arithmetic as the released script; corrected: float32 "
        "accumulation", choices=FIDELITIES))

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
        object.__setattr__(self, "weights", tuple(float(v) for v in self.weights))
        layers = PAPER_LAYERS if self.layers is None else self.layers
        if not layers:
            raise ValueError("OverviewConfig.layers is empty; give at least one decoder layer (e.g. 16,17,18,19)")
        if len(set(layers)) != len(layers) or min(layers) < 0:
            raise ValueError(f"OverviewConfig.layers={layers}: layers must be distinct and >= 0")
        if len(self.weights) != len(layers):
            what = "layers" if self.layers is not None else "default layers (the paper's, at the model's depth)"
            raise ValueError(f"OverviewConfig: {len(layers)} {what} {layers} but {len(self.weights)} "
                             f"weights {self.weights}; give one weight per layer")
        if self.max_new_tokens < 1 or (self.min_new_tokens is not None and
                                       not 0 <= self.min_new_tokens <= self.max_new_tokens):
            raise ValueError(f"OverviewConfig: need max_new_tokens >= 1 and 0 <= min_new_tokens <= max_new_tokens, "
                             f"got {self.max_new_tokens} / {self.min_new_tokens}")
        if "{q}" not in self.prompt_template:
            raise ValueError("OverviewConfig.prompt_template must contain '{q}' (the referring expression)")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"OverviewConfig.dtype={self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"OverviewConfig.fidelity={self.fidelity!r}; choose from {', '.join(FIDELITIES)}")
        if self.batch_size < 1:
            raise ValueError(f"OverviewConfig.batch_size={self.batch_size}; must be >= 1")

    def prompt(self, expression: str) -> str:
        """The user text for one referring expression."""
        return self.prompt_template.replace("{q}", expression)

    def check_layers(self, num_layers: int) -> None:
        """Raise if a configured layer does not exist in a model with ``num_layers`` decoder layers."""
        bad = [layer for layer in self.layers or () if layer >= num_layers]
        if bad:
            raise LayerError(f"overview layers {bad} do not exist: the model has {num_layers} decoder layers "
                             f"(0..{num_layers - 1}); pass --layers within that range")

    def override(self, **changes) -> "OverviewConfig":
        """A copy with the non-None ``changes`` applied (CLI flags default to None)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
