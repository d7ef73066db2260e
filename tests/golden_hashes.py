"""Content hashes of a run directory's dumps and results, for the byte-identity check of the demo.

Binary outputs (``.npy``, ``.png``) are hashed as they are; JSON files are hashed after dropping the
keys whose value is a path or a model location (they name the test's temporary folders), so the hash
covers every number and setting the stages wrote.
"""
import hashlib
import json
from pathlib import Path

PATH_KEYS = {"image", "model", "root", "out", "image_path", "source_run"}
PATTERNS = ("overview/*.npy", "overview/*.json", "focus/*/*.npy", "focus/*/meta.json", "masks/*.png",
            "predictions.jsonl", "metrics.json")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in PATH_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def run_hashes(run: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every stage output of ``run`` (see the module docstring)."""
    out = {}
    for pattern in PATTERNS:
        for path in sorted(run.glob(pattern)):
            data = path.read_bytes()
            if path.suffix == ".json":
                data = json.dumps(_strip(json.loads(data)), sort_keys=True).encode()
            out[path.relative_to(run).as_posix()] = hashlib.sha256(data).hexdigest()
    return out
