"""The stage-3 fast paths against their plain references: the .npy reader against ``np.load``,
``SReader`` against ``mean_s`` (to the bit), the windowed mask PNG encoder against every PNG
reader, and the order in which a batch's masks and records reach the disk."""
import io
import json

import numpy as np
import pytest

from evolve_helpers import make_crafted_run, write_focus
from rsvg_zeroov.evolve.config import EvolveConfig
from rsvg_zeroov.evolve.interaction import SReader, focus_names, load_s, mean_s
from rsvg_zeroov.maskpng import encode_mask_png
from rsvg_zeroov.npyio import DumpError, NpyBuffer, load_npy, read_npy
from rsvg_zeroov.rundir import FOCUS_64TO32, FOCUS_SELF_32, RunDir, save_npy


def _write_npy(path, arr, **kw):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, **kw)


@pytest.mark.parametrize("case", ["f2", "f4", "fortran", "big_endian", "v2_header", "0d", "empty"])
def test_read_npy_equals_np_load(tmp_path, case):
    rng = np.random.default_rng(0)
    arr = {"f2": rng.random((3, 5, 7)).astype(np.float16), "f4": rng.random((4, 6)).astype(np.float32),
           "fortran": np.asfortranarray(rng.random((4, 6)).astype(np.float32)),
           "big_endian": rng.random((4, 6)).astype(">f4"), "v2_header": rng.random((2, 3)).astype(np.float16),
           "0d": np.float32(3.5) * np.ones((), np.float32), "empty": np.zeros((0, 4), np.float32)}[case]
    path = tmp_path / "a.npy"
    _write_npy(path, arr, version=(2, 0) if case == "v2_header" else None)
    ref = np.load(path, allow_pickle=False)
    buf = NpyBuffer()
    for out in (read_npy(path), read_npy(path, buffer=buf)):
        assert out.shape == ref.shape and out.dtype.kind == "f" and out.dtype.itemsize == ref.dtype.itemsize
        np.testing.assert_array_equal(out, ref)


def test_read_npy_reuses_its_buffer_and_validates(tmp_path):
    buf = NpyBuffer()
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    save_npy(a, np.ones((8, 8), np.float16))
    save_npy(b, np.full((8, 8), 2, np.float16))
    first = read_npy(a, (8, None), buffer=buf)
    second = read_npy(b, buffer=buf)
    assert np.shares_memory(first, second) and (first == 2).all()  # a view, overwritten by the next read
    with pytest.raises(DumpError, match=r"a\.npy: shape \(8, 8\), expected \(4, \*\)"):
        read_npy(a, (4, None))
    bad = tmp_path / "bad.npy"
    for data, msg in [(b"", "not a .npy"), (b"\x93NUMPY\x01\x00\x76\x00{'descr'", "truncated .npy header"),
                      (b"PK\x03\x04 not numpy at all", "not a .npy"),
                      (a.read_bytes()[:-5], "truncated .npy"),
                      (b"\x93NUMPY\x01\x00\x10\x00__import__('os')", "unreadable .npy header"),
                      (b"\x93NUMPY\x01\x00\x30\x00{'descr': '<f4', 'fortran_order': False, 'shape': (10**6,)}",
                       "unreadable .npy header"),  # an expression, not a literal
                      (_header_only("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"),
                       r"truncated .npy \(0 of 4000000000000 data bytes\)"),  # refused before allocating
                      (b"\x93NUMPY\x02\x00\xff\xff\xff\x00", r"\.npy header of 16777215 bytes"),
                      (_header_only("{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 200 + ")" * 200
                                    + "}"), "unreadable .npy header")]:
        bad.write_bytes(data)
        with pytest.raises(DumpError, match=f"bad.npy: {msg}"):
            read_npy(bad)
    _write_npy(bad, np.array([{"code": 1}], dtype=object), allow_pickle=True)  # never unpickled
    with pytest.raises(DumpError, match="dtype object"):
        read_npy(bad)
    _write_npy(bad, np.zeros(3, dtype=[("x", "<f4")]))
    with pytest.raises(DumpError, match="structured dtype"):
        read_npy(bad)
    with pytest.raises(DumpError, match="none.npy: dump is missing"):
        read_npy(tmp_path / "none.npy")
    save_npy(bad, np.array([1.0, np.inf], np.float16))  # read_npy leaves finiteness to its caller
    assert np.isinf(read_npy(bad)).any()
    with pytest.raises(DumpError, match="NaN or Inf"):
        load_npy(bad)


def _header_only(text: str) -> bytes:
    """A version-1 .npy header (padded as NumPy pads it) with no data after it."""
    body = text.encode("latin1")
    body += b" " * (-(10 + len(body) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def _configs():
    return [EvolveConfig(refiner=None, resolutions=r, fidelity=f)
            for r, f in [((32,), "released"), ((32, 64), "released"), ((64,), "corrected"),
                         ((16, 32, 64), "released"), ((16, 32, 64), "corrected")]]


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32, np.float32), (np.float16, np.float16, np.float16),
                                    (np.float16, np.float32, np.float16)])
def test_sreader_equals_mean_s_to_the_bit_and_reuses_memory(tmp_path, dtypes):
    run = RunDir(tmp_path)
    rng = np.random.default_rng(1)
    mats = {}
    for i, sid in enumerate(["p", "q", "r"]):
        m = [rng.random((1024, 1024)).astype(np.float32) for _ in range(5)]
        m = [x / x.sum(1, keepdims=True) for x in m]
        write_focus(run, sid, m[0].reshape(32, 32, 1024), {"released": m[1], "corrected": m[2]},
                    {"released": m[3], "corrected": m[4]}, dtype=dtypes[i])
        if i == 2:  # one sample mixes dtypes between its files
            other = np.float32 if dtypes[i] == np.float16 else np.float16
            save_npy(run.focus_file(sid, FOCUS_SELF_32), m[0].reshape(32, 32, 1024).astype(other))
        mats[sid] = m
    for config in _configs():
        reader = SReader(run, config)
        outs = []
        for sid in ["p", "q", "r", "p"]:
            expect = mean_s(run.load_focus(sid, name) for name in focus_names(config))
            got = reader.read(sid)
            assert got.dtype == np.float32 and got.shape == (1024, 1024)
            assert np.array_equal(got, expect), (config.resolutions, config.fidelity, sid)
            assert np.array_equal(load_s(run, sid, config), expect)
            outs.append(got)
        assert all(o is outs[0] for o in outs)  # one array, rewritten per sample


def test_sreader_names_the_non_finite_file(tmp_path):
    run = RunDir(tmp_path)
    s = np.full((1024, 1024), 1 / 1024, np.float32)
    bad = s.copy()
    bad[5, 7] = np.nan
    write_focus(run, "n", s.reshape(32, 32, 1024), {"released": bad, "corrected": s}, dtype=np.float16)
    config = EvolveConfig(refiner=None)
    with pytest.raises(DumpError, match=r"n/self_64to32_released\.npy: contains NaN or Inf"):
        SReader(run, config).read("n")
    save_npy(run.focus_file("n", FOCUS_64TO32["released"]), np.full((1024, 1024), 6e4, np.float16))
    save_npy(run.focus_file("n", FOCUS_SELF_32), np.full((32, 32, 1024), 6e4, np.float16))
    assert np.isfinite(SReader(run, config).read("n")).all()  # large but finite: no false alarm
    save_npy(run.focus_file("n", FOCUS_SELF_32), np.zeros((16, 16, 256), np.float32))
    with pytest.raises(DumpError, match=r"self_32\.npy: shape \(16, 16, 256\), expected 1024x1024"):
        SReader(run, config).read("n")


def _masks():
    rng = np.random.default_rng(2)
    out = [np.zeros((1, 1), bool), np.ones((1, 1), bool), np.zeros((9, 4), bool), np.ones((4, 9), bool),
           np.zeros((3, 5000), bool), np.ones((700, 2), bool)]
    for y, x in [(0, 0), (0, 39), (29, 0), (29, 39), (15, 20)]:
        m = np.zeros((30, 40), bool)
        m[y, x] = True
        out.append(m)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 260, 2))
        m = np.zeros((h, w), bool)
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > rng.random()
        out.append(m)
    out.append(np.where(rng.random((50, 60)) > 0.5, 7, 0).astype(np.uint8))  # non-bool: non-zero = in
    return out


def test_mask_png_encoder_decodes_identically_everywhere():
    import zlib

    import cv2
    from PIL import Image

    from rsvg_zeroov.evaluation.predictions import decode_gray8_png

    for mask in _masks():
        data = encode_mask_png(mask)
        expect = (np.asarray(mask) != 0).astype(np.uint8) * 255
        pil = Image.open(io.BytesIO(data))
        assert pil.mode == "L" and np.array_equal(np.asarray(pil), expect), mask.shape
        assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), expect)
        assert np.array_equal(decode_gray8_png(data), expect)
        idat = data[41:-16]  # one IDAT chunk: a single zlib stream whose Adler-32 zlib verifies
        assert zlib.decompress(idat) == np.concatenate([np.zeros((expect.shape[0], 1), np.uint8), expect], 1).tobytes()
    with pytest.raises(ValueError, match="non-empty 2-D"):
        encode_mask_png(np.zeros((0, 5), bool))


def test_masks_are_on_disk_before_their_records(tmp_path, monkeypatch):
    """Appending a batch's records first syncs the file system, when its masks are already in place
    and the records file does not yet hold them."""
    from evolve_helpers import cli

    from rsvg_zeroov.rundir import evolve as records

    jsonl, run, _ = make_crafted_run(tmp_path)
    seen = []
    real = records.sync_filesystem

    def spy(path):
        rec_file = run.evolve_records(0)
        lines = rec_file.read_text().splitlines() if rec_file.exists() else []
        masks = sorted(p.stem for p in (run.root / "masks").glob("*.png"))
        seen.append((len(lines), masks))
        real(path)

    monkeypatch.setattr(records, "sync_filesystem", spy)
    assert cli(jsonl, run, "--no-sam", "--batch-size", "3") == 0
    written = [json.loads(line)["sample_id"] for line in run.evolve_records(0).read_text().splitlines()]
    assert len(seen) == -(-len(written) // 3)
    for i, (n_lines, masks) in enumerate(seen):
        assert n_lines == 3 * i  # this batch's records are not yet in the file
        assert set(written[3 * i:3 * i + 3]) <= set(masks)  # but its masks are
