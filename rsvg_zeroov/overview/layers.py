"""Which decoder layers stage 1 captures when ``--layers`` is not given, for models of any depth.

The paper captures layers 16, 17, 18, 19 (0-based) of Qwen2.5-VL-7B, whose language model has 28
decoder layers (:data:`PAPER_LAYERS`, :data:`PAPER_DEPTH`). Each adapter declares a
``layer_rule`` (:data:`LAYER_RULES`) saying how that default carries over to its depths:

- ``"absolute"`` (Qwen2.5-VL, every size): the layer numbers as they are, 16-19, as the released
  code does also on the 3B (36 layers), 32B (64) and 72B (80); the faithful default.
- ``"relative"`` (Qwen3-VL, LLaVA): the block of four moves as a whole so that its first layer sits
  at the same relative depth as layer 16 of 28: ``first = floor(16 * depth / 28 + 1/2)``, then
  ``first, first + 1, first + 2, first + 3`` (moved down to end at the last layer if the model is
  too shallow). The spacing and the fusion weights stay the paper's. For example 28 layers ->
  16-19, 32 -> 18-21, 36 -> 21-24, 64 -> 37-40.

A configured ``layers`` (``--layers``, or ``OverviewConfig(layers=...)``) is used as given by every
family, and the model's weights are never changed. Stage 1 records the layers it used and the rule
that chose them in ``RUN/overview_config.json`` (``resolved``: ``layers``, ``layer_rule``).
"""
from __future__ import annotations

import math
from dataclasses import replace

PAPER_LAYERS = (16, 17, 18, 19)
PAPER_DEPTH = 28
LAYER_RULES = ("absolute", "relative")


def default_layers(rule: str, depth: int | None) -> tuple[int, ...]:
    """The default layers under ``rule`` for a language model of ``depth`` decoder layers."""
    if rule == "absolute":
        return PAPER_LAYERS
    if rule != "relative":
        raise ValueError(f"unknown layer rule {rule!r}; choose from {', '.join(LAYER_RULES)}")
    if depth is None or depth < len(PAPER_LAYERS):
        raise ValueError(f"the relative-depth layer rule needs a model with at least {len(PAPER_LAYERS)} "
                         f"decoder layers, got {depth}; pass --layers")
    first = math.floor(PAPER_LAYERS[0] * depth / PAPER_DEPTH + 0.5)
    first = min(first, depth - (PAPER_LAYERS[-1] - PAPER_LAYERS[0]) - 1)
    return tuple(first + layer - PAPER_LAYERS[0] for layer in PAPER_LAYERS)


def with_layers(config, rule: str, depth: int | None):
    """``config`` with its layers decided: as configured, else :func:`default_layers`."""
    return config if config.layers is not None else replace(config, layers=default_layers(rule, depth))


def layer_record(requested, rule: str, depth: int | None) -> dict:
    """What the stage config's ``resolved`` says about the choice (JSON types)."""
    if requested.layers is not None:
        how = "configured (--layers)"
    elif rule == "absolute":
        how = f"absolute: the paper's layers {PAPER_LAYERS[0]}-{PAPER_LAYERS[-1]} as they are"
    else:
        how = (f"relative: the paper's layers {PAPER_LAYERS[0]}-{PAPER_LAYERS[-1]} of {PAPER_DEPTH} moved to the "
               f"same relative depth of this model's {depth} decoder layers")
    return {"layer_rule": how, "model_depth": depth}


def planned_layers(config) -> tuple[int, ...] | None:
    """The layers stage 1 will capture for ``config``, decided before the model is loaded (from its
    registry entry or ``config.json``); None when that cannot be told yet (an unreadable or missing
    model: loading it then says what is wrong)."""
    if config.layers is not None:
        return config.layers
    from ..models.vlm import VLMS, adapter_class

    try:
        entry = VLMS.entry(config.model)
        cls = VLMS.adapter_class(entry.key) if entry is not None else None
        if cls is not None and cls.layer_rule == "absolute":
            return default_layers("absolute", None)
        ref = VLMS.resolve(config.model)
        cls = cls or adapter_class(ref)
        return default_layers(cls.layer_rule, cls.depth_of(ref) if cls.layer_rule == "relative" else None)
    except (KeyError, ValueError, OSError):
        return None
