"""Stage 1, Overview: VLM (Qwen2.5-VL; also Qwen3-VL, LLaVA) text-to-image attention -> A_C
(docs/method.md, stage 1).

- :mod:`.config`  ``OverviewConfig`` (paper/released defaults) and the prompt template.
- :mod:`.layers`  the default layers on models of other depths (the relative-depth rule).
- :mod:`.answer`  the generated answer as an original-pixel box, per family's coordinates.
- :mod:`.generate` the generation config, the optional stop at the answer's "]", token progress.
- :mod:`.capture` last-row attention capture at the chosen decoder layers (AttentionInterface).
- :mod:`.fuse`    min-max layer fusion.
- :mod:`.model`   ``Overview`` (load once, then call on (image, expression) pairs) -> ``OverviewResult``.
- :mod:`.stage`   the dataset / single-image driver writing ``RUN/overview/<id>.npy`` + ``.json``.

Importing this package is light (no torch); the model modules import torch when used.
"""
from .config import PROMPT_TEMPLATE, OverviewConfig

__all__ = ["OverviewConfig", "PROMPT_TEMPLATE"]
