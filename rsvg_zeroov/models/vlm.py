"""Stage 1's role: vision-language models behind one adapter interface, and their registry.

A key, hub id or folder given as ``--model`` resolves through :data:`VLMS`; a hub id or folder that
is not a registry entry picks its adapter from the ``model_type`` of its ``config.json`` (each
adapter class lists the model types it serves). Adding a VLM family is one adapter module plus
one ``VLMS.add(...)`` line here.
"""
from __future__ import annotations

from .base import Registry

VLMS = Registry("vlm")
_QWEN25 = "rsvg_zeroov.models.qwen2_5_vl:Qwen25VL"
VLMS.add("qwen2.5-vl-3b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-3B-Instruct", size="3B")
VLMS.add("qwen2.5-vl-7b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-7B-Instruct", size="7B", default=True)
VLMS.add("qwen2.5-vl-32b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-32B-Instruct", size="32B")
VLMS.add("qwen2.5-vl-72b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-72B-Instruct", size="72B")
VLMS.add("tiny", adapter=_QWEN25, size="a few MB, random weights")
