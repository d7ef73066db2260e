"""RSVG-ZeroOV: training-free zero-shot open-vocabulary visual grounding in remote-sensing images.

Stages: overview (Qwen2.5-VL attention) -> focus (Stable Diffusion self-attention) -> evolve
(attention evolution + SAM refinement); docs/method.md describes the algorithm.

    from rsvg_zeroov import Grounder, PipelineConfig
    grounder = Grounder(PipelineConfig.quick_tiny()).load()   # or PipelineConfig() for the real models
    result = grounder.ground("scene.png", "the storage tank left of the road")
    result.mask, result.box                                  # bool (H, W); [x1, y1, x2, y2] or None

``load_samples(dataset, root, split)`` lists a data set and ``evaluate(samples, run)`` scores a run
directory. The names are imported on first use, so ``import rsvg_zeroov`` loads no model library.
"""
from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_EXPORTS = {
    "Grounder": ".pipeline",
    "GroundingResult": ".pipeline",
    "PipelineConfig": ".pipeline",
    "load_samples": ".datasets",
    "evaluate": ".evaluation",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
