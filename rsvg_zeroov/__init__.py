"""RSVG-ZeroOV: training-free zero-shot open-vocabulary visual grounding in remote-sensing images.

Stages: overview (Qwen2.5-VL attention) -> focus (Stable Diffusion self-attention) -> evolve
(attention evolution + SAM refinement). See METHOD.md for the algorithm; the package is importable
without loading any model.
"""
__version__ = "0.1.0"
