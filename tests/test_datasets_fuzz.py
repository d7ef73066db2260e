"""Fuzz: damaged annotation files either list cleanly or fail with one ``error:`` line and exit 2.

For each format, a small synthetic data set is written once; every example damages one of its
annotation files (byte edits / truncation, or a structural edit of the parsed JSON / pickle / XML),
runs the listing CLI's ``main()`` in-process, and restores the file. Never a traceback, never a
crash, never invalid JSON. Examples are derandomized so CI runs are reproducible.
"""
from __future__ import annotations

import io
import json
import pickle
import shutil
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsvg_zeroov.datasets.__main__ import main
from rsvg_zeroov.synthetic import DATASET_OF_FORMAT, build_dataset

# format -> annotation files (relative to the data folder) and how to edit them structurally
TARGETS = {
    "rrsisd": [("rrsisd/refs(unc).p", "pickle"), ("rrsisd/instances.json", "json")],
    "rrsisd-zeroov-json": [("rrsisd.json", "json")],
    "risbench": [("output_phrase_test.txt", "bytes")],
    "dior_rsvg": [("Annotations/00000.xml", "xml"), ("test.txt", "bytes")],
    "opt_rsvg": [("Annotations/00001.xml", "xml")],
    "refsegrs": [("output_phrase_test.txt", "bytes")],
    "vrsbench": [("VRSBench_EVAL_referring.json", "json")],
    "jsonl": [("test.jsonl", "bytes")],
}
KEYS = {"sample_id", "image", "expression", "width", "height", "box", "mask_area"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["0?", "../x", "{<1><2><3><4>}", "P0000_0000.png", "test"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
byte_edits = st.lists(st.tuples(st.sampled_from(["set", "delete", "insert", "truncate"]),
                                st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
paths = st.lists(st.integers(0, 10**6), max_size=6)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    return {fmt: build_dataset(fmt, base / fmt, 4, seed=11, size=32) for fmt in TARGETS}


def edit_bytes(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for op, pos, value in edits:
        pos = pos % (len(buf) + 1)
        if op == "set" and pos < len(buf):
            buf[pos] = value
        elif op == "delete":
            del buf[pos:pos + 1 + value % 8]
        elif op == "insert":
            buf[pos:pos] = bytes([value])
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


def replace_at(obj, path, value):
    """Replace the value reached by following ``path`` (indices taken modulo the container size)."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return value
    keys = list(obj) if isinstance(obj, dict) else list(range(len(obj)))
    key = keys[path[0] % len(keys)]
    obj[key] = replace_at(obj[key], path[1:], value)
    return obj


def edit_xml(data: bytes, path, value) -> bytes:
    root = ET.fromstring(data)
    elements = list(root.iter())
    target = elements[path[0] % len(elements)] if path else root
    if isinstance(value, str):
        target.text = value
    else:  # drop a child of the target (if any) or the target's text
        children = list(target)
        if children:
            target.remove(children[(path[1] if len(path) > 1 else 0) % len(children)])
        else:
            target.text = None
    return ET.tostring(root)


def damage(data: bytes, kind: str, draw) -> bytes:
    if kind == "bytes" or draw(st.booleans()):
        return edit_bytes(data, draw(byte_edits))
    if kind == "json":
        return json.dumps(replace_at(json.loads(data), draw(paths), draw(json_values))).encode()
    if kind == "pickle":
        obj = replace_at(pickle.loads(data), draw(paths), draw(json_values))
        return pickle.dumps(obj, protocol=2)
    return edit_xml(data, draw(paths), draw(st.text(max_size=12) | st.none()))


def run_listing(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


@pytest.mark.parametrize("fmt", sorted(TARGETS))
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_annotations_fail_cleanly(datasets, fmt, data):
    ds = datasets[fmt]
    folder = ds.root.parent if ds.root.is_file() else ds.root
    rel, kind = data.draw(st.sampled_from(TARGETS[fmt]))
    target = folder / rel
    original = target.read_bytes()
    dataset, opts = DATASET_OF_FORMAT[fmt]
    argv = ["--dataset", dataset, "--root", str(ds.root), "--split", "test"]
    argv += [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", v)]
    try:
        target.write_bytes(damage(original, kind, data.draw))
        rc, out, err = run_listing(argv)
    finally:
        target.write_bytes(original)
    assert "Traceback" not in err
    if rc == 0:
        for line in out.splitlines():
            row = json.loads(line, parse_constant=_reject_constant)
            assert set(row) == KEYS and isinstance(row["sample_id"], str)
    else:
        assert rc == 2, err
        errors = [line for line in err.splitlines() if not line.startswith("rrsisd: ")]
        assert len(errors) == 1 and errors[0].startswith("error: "), err


def test_fuzz_restores_files(datasets, tmp_path):
    """Sanity: the untouched data sets still list (the fuzz loop restored every file)."""
    for fmt, ds in datasets.items():
        dataset, opts = DATASET_OF_FORMAT[fmt]
        argv = ["--dataset", dataset, "--root", str(ds.root), "--split", "test"]
        argv += [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", v)]
        rc, out, err = run_listing(argv)
        assert rc == 0, err
        assert [json.loads(x)["sample_id"] for x in out.splitlines()] == [t["sample_id"] for t in ds.truth]
    shutil.rmtree(tmp_path, ignore_errors=True)
