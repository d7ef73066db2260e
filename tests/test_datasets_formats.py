"""Each loader against small hand-written fixtures in the real on-disk format (docs/datasets.md)."""
from __future__ import annotations

import json
import logging
import os
import sys
import pickle

import numpy as np
import pytest
from PIL import Image

from rsvg_zeroov.datasets import DatasetError, load_samples
from rsvg_zeroov.datasets.coco_seg import compressed_counts
from rsvg_zeroov.datasets.safe_pickle import load_restricted


class _StderrHandler(logging.Handler):
    def emit(self, record):
        sys.stderr.write(self.format(record) + "\n")  # whichever stderr is current (capsys's)


@pytest.fixture
def notes_to_stderr():
    """The loaders' notes (logging, INFO) written to stderr, one line each, as the scripts show them."""
    logger = logging.getLogger("rsvg_zeroov.datasets")
    handler, level = _StderrHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield
    logger.removeHandler(handler)
    logger.setLevel(level)


def _img(path, w, h, fmt=None, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3), 90, np.uint8) if value is None else value
    Image.fromarray(arr).save(path, format=fmt)
    return path


def _mask(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def _by_id(samples):
    return {s.sample_id: s for s in samples}


# ------------------------------------------------------------------------------------ DIOR / OPT-RSVG
def _xml(filename, objects):
    """objects: list of lists of (tag, text-or-children) in the order to write them."""
    out = [f"<annotation><size><width>800</width><height>800</height></size><filename>{filename}</filename>"]
    for children in objects:
        out.append("<object>")
        for tag, value in children:
            if isinstance(value, list):
                out.append(f"<{tag}>" + "".join(f"<{t}>{v}</{t}>" for t, v in value) + f"</{tag}>")
            else:
                out.append(f"<{tag}>{value}</{tag}>")
        out.append("</object>")
    return "".join(out) + "</annotation>\n"


def _obj(name, box, desc, reorder=False):
    bnd = list(zip(("xmin", "ymin", "xmax", "ymax"), box))
    if reorder:
        return [("description", desc), ("bndbox", bnd[::-1]), ("pose", "Unspecified"), ("name", name)]
    return [("name", name), ("pose", "Unspecified"), ("bndbox", bnd), ("description", desc)]


@pytest.fixture
def rsvg_root(tmp_path):
    """XML files created out of order: sorted path order is 10.xml, 9.xml, a.xml, b.xml."""
    ann = tmp_path / "Annotations"
    ann.mkdir()
    files = {
        "b.xml": ("b.jpg", [_obj("ship", (1, 2, 3, 4), "B zero"), _obj("ship", (2, 2, 4, 4), "B one")]),
        "9.xml": ("9.jpg", [_obj("storage tank", (1.5, 2.25, 10.75, 8.5), "The Nine Tank", reorder=True)]),
        "a.xml": ("a.jpg", [_obj("harbor", (0, 0, 5, 5), "A zero")]),
        "10.xml": ("10.jpg", [_obj("bridge", (3, 1, 7, 6), "Ten Zero"), _obj("dam", (0, 1, 2, 3), "Ten One")]),
    }
    for name, (image, objects) in files.items():
        (ann / name).write_text(_xml(image, objects))
        _img(tmp_path / "JPEGImages" / image, 20, 10)  # XML <size> says 800x800: the header wins
    (tmp_path / "test.txt").write_text("4\n0\n2\n")
    (tmp_path / "train.txt").write_text("1\n3\n5\n")
    return tmp_path


def test_rsvg_global_object_index_over_sorted_xml_paths(rsvg_root):
    samples = load_samples("dior_rsvg", rsvg_root, "test")
    assert [s.sample_id for s in samples] == ["4", "0", "2"]  # split-file order
    s4, s0, s2 = samples
    assert (s4.expression, s0.expression, s2.expression) == ("b zero", "ten zero", "the nine tank")
    assert s2.raw_expression == "The Nine Tank"
    assert s4.image_path == rsvg_root / "JPEGImages" / "b.jpg" and (s4.width, s4.height) == (20, 10)
    assert s0.box == (3.0, 1.0, 7.0, 6.0) and s0.category == "bridge" and s0.mask is None
    # children read by tag name: 9.xml's object lists description/bndbox/pose/name, bndbox reversed
    assert s2.box == (1.5, 2.25, 10.75, 8.5) and s2.category == "storage tank"
    train = load_samples("opt_rsvg", rsvg_root, "train")
    assert [(s.sample_id, s.expression) for s in train] == [("1", "ten one"), ("3", "a zero"), ("5", "b one")]


def test_rsvg_float_boxes_and_class_names_with_spaces(rsvg_root):
    (rsvg_root / "val.txt").write_text("2\n")
    (s,) = load_samples("opt_rsvg", rsvg_root, "val")
    assert s.box == (1.5, 2.25, 10.75, 8.5) and s.category == "storage tank"
    assert load_samples("opt_rsvg", rsvg_root, "val")[0].listing()["box"] == [1.5, 2.25, 10.75, 8.5]


def test_rsvg_out_of_range_index_names_file_and_line(rsvg_root):
    (rsvg_root / "test.txt").write_text("0\n\n6\n")
    with pytest.raises(DatasetError, match=r"test\.txt: line 3: object index 6 is out of range.* 6 <object>"):
        load_samples("dior_rsvg", rsvg_root, "test")
    (rsvg_root / "test.txt").write_text("0\nfive\n")
    with pytest.raises(DatasetError, match=r"test\.txt: line 2: expected one object index"):
        load_samples("dior_rsvg", rsvg_root, "test")


def test_rsvg_missing_split_and_missing_child(rsvg_root):
    with pytest.raises(DatasetError, match=r"val\.txt: split file is missing.*test, train"):
        load_samples("dior_rsvg", rsvg_root, "val")
    (rsvg_root / "Annotations" / "a.xml").write_text(_xml("a.jpg", [[("name", "x"), ("bndbox", [])]]))
    load_samples("dior_rsvg", rsvg_root, "test")  # a.xml holds object 3, not in the test split
    with pytest.raises(DatasetError, match=r"a\.xml: <object> #0 <bndbox>: <xmin> is missing"):
        load_samples("dior_rsvg", rsvg_root, "train")


# ------------------------------------------------------------------------------------ RRSIS-D (REFER)
def _rle(mask):
    from pycocotools import mask as mu

    rle = mu.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def _write_refer(root, refs, anns, images, cats=({"id": 1, "name": "ship"}, {"id": 2, "name": "storage tank"})):
    (root / "rrsisd").mkdir(parents=True, exist_ok=True)
    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (root / "rrsisd" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": list(cats)}))
    for im in images:
        _img(root / "images" / "rrsisd" / "JPEGImages" / im["file_name"], im["width"], im["height"])


def _ref(ref_id, ann_id, sents, split="test", cat=1):
    sentences = [{"raw": raw, "sent": sent, "tokens": sent.split(), "sent_id": sid} for sid, raw, sent in sents]
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": 1, "category_id": cat, "split": split,
            "sentences": sentences, "sent_ids": [s[0] for s in sents]}


W, H = 30, 20


def _masks():
    a = np.zeros((H, W), bool)
    a[3:9, 4:14] = True  # tight box x 4..13, y 3..8
    b = np.zeros((H, W), bool)
    b[10:18, 20:27] = True
    return a, b


def _refer_fixture(root, convention):
    a, b = _masks()
    boxes = {"xywh": ([4, 3, 10, 6], [20, 10, 7, 8]), "xyxy": ([4, 3, 14, 9], [20, 10, 27, 18])}[convention]
    # b: two polygon parts (left and right halves), OR-ed
    polys = [[20, 10, 23, 10, 23, 18, 20, 18], [23, 10, 27, 10, 27, 18, 23, 18]]
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "bbox": boxes[0], "segmentation": [_rle(a)]},
            {"id": 12, "image_id": 1, "category_id": 2, "bbox": boxes[1], "segmentation": polys}]
    refs = [_ref(7, 11, [(70, "The BIG Ship.", "The BIG ship"), (71, "ship top", "ship top")]),
            _ref(8, 12, [(80, "the tank", "the tank")], cat=2),
            _ref(9, 12, [(90, "train tank", "train tank")], split="train", cat=2)]
    _write_refer(root, refs, anns, [{"id": 1, "file_name": "P0001.jpg", "height": H, "width": W}])
    return a, b, polys


def test_rrsisd_masks_ids_and_expressions(tmp_path):
    from pycocotools import mask as mu

    a, b, polys = _refer_fixture(tmp_path, "xywh")
    samples = load_samples("rrsisd", tmp_path, "test")
    by = _by_id(samples)
    assert list(by) == ["7_70", "7_71", "8"]  # multi-sentence ref -> <ref_id>_<sent_id>
    assert by["7_70"].expression == "the big ship" and by["7_70"].raw_expression == "The BIG Ship."
    assert by["7_70"].category == "ship" and by["8"].category == "storage tank"
    assert by["7_70"].image_path == tmp_path / "images/rrsisd/JPEGImages/P0001.jpg"
    assert (by["8"].width, by["8"].height) == (W, H)
    assert np.array_equal(by["7_70"].load_mask(), a)  # compressed RLE
    parts = [mu.decode(r).astype(bool) for r in mu.frPyObjects(polys, H, W)]
    union = by["8"].load_mask()
    assert union.dtype == bool and union.shape == (H, W)
    assert np.array_equal(union, parts[0] | parts[1]) and union.sum() > max(p.sum() for p in parts)
    assert by["8"].listing()["mask_area"] == int(union.sum())


@pytest.mark.parametrize("convention", ["xywh", "xyxy"])
def test_rrsisd_bbox_convention_detected(tmp_path, capsys, notes_to_stderr, convention):
    _refer_fixture(tmp_path, convention)
    samples = load_samples("rrsisd", tmp_path, "test")
    assert _by_id(samples)["7_70"].box == (4.0, 3.0, 14.0, 9.0)
    assert _by_id(samples)["8"].box == (20.0, 10.0, 27.0, 18.0)
    assert all(dict(s.extra)["bbox_format"] == convention for s in samples)
    err = capsys.readouterr().err
    assert f"bbox convention detected as {convention}" in err and err.count("\n") == 1


def test_rrsisd_forced_convention_inverted_box_is_an_error(tmp_path):
    _refer_fixture(tmp_path, "xywh")  # ann 12 bbox [20, 10, 7, 8] read as xyxy is inverted
    with pytest.raises(DatasetError, match=r"instances\.json: annotation 12 bbox read as xyxy .* is not XYXY"):
        load_samples("rrsisd", tmp_path, "test", bbox_format="xyxy")


def test_rrsisd_forced_values(tmp_path, capsys, notes_to_stderr):
    a, _ = _masks()
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "bbox": [4, 3, 14, 9], "segmentation": [_rle(a)]}]
    _write_refer(tmp_path, [_ref(7, 11, [(70, "a", "a")])], anns,
                 [{"id": 1, "file_name": "P0001.jpg", "height": H, "width": W}])
    assert load_samples("rrsisd", tmp_path, "test")[0].box == (4.0, 3.0, 14.0, 9.0)  # detected xyxy
    forced = load_samples("rrsisd", tmp_path, "test", bbox_format="xywh")[0]
    assert forced.box == (4.0, 3.0, 18.0, 12.0) and dict(forced.extra)["bbox_format"] == "xywh"
    assert capsys.readouterr().err.count("detected as xyxy") == 1  # only the auto load reports


def test_rrsisd_note_logged_once_per_file_and_mutable(tmp_path, caplog):
    from rsvg_zeroov.datasets import notes_muted

    _refer_fixture(tmp_path / "a", "xywh")
    _refer_fixture(tmp_path / "b", "xywh")
    with caplog.at_level(logging.INFO, logger="rsvg_zeroov.datasets"):
        with notes_muted():
            load_samples("rrsisd", tmp_path / "b", "test")
        assert not caplog.records  # muted: a later stage of a run whose first stage showed it
        for _ in range(3):
            load_samples("rrsisd", tmp_path / "a", "test")
            load_samples("rrsisd", tmp_path / "a", "train")
        load_samples("rrsisd", tmp_path / "b", "test")
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 2 and all("bbox convention detected as xywh" in n for n in notes), notes
    assert str(tmp_path / "a") in notes[0] and str(tmp_path / "b") in notes[1]


def test_rrsisd_unknown_split_and_bad_segmentation(tmp_path):
    a, b, _ = _refer_fixture(tmp_path, "xywh")
    with pytest.raises(DatasetError, match=r"refs\(unc\)\.p: no refs with split 'val'; splits present: test, train"):
        load_samples("rrsisd", tmp_path, "val")
    inst = tmp_path / "rrsisd" / "instances.json"
    data = json.loads(inst.read_text())
    data["annotations"][0]["segmentation"] = [{"size": [H, W], "counts": "0?~~"}]
    inst.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances\.json: annotation 11 segmentation\[0\]: malformed"):
        load_samples("rrsisd", tmp_path, "test")
    data["annotations"][0]["segmentation"] = [_rle(np.zeros((H + 1, W), bool))]
    inst.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"RLE size \[21, 30\] does not match"):
        load_samples("rrsisd", tmp_path, "test")


def test_compressed_counts_matches_pycocotools():
    from pycocotools import mask as mu

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, size=2)
        m = rng.random((h, w)) < rng.random()
        runs = compressed_counts(_rle(m)["counts"])
        assert runs.sum() == h * w
        back = np.zeros(h * w, np.uint8)
        pos = np.cumsum(np.concatenate(([0], runs)))
        for i in range(1, len(runs), 2):
            back[pos[i]:pos[i + 1]] = 1
        assert np.array_equal(back.reshape(w, h).T.astype(bool), m)
        assert mu.area(mu.encode(np.asfortranarray(m.astype(np.uint8)))) == m.sum()
    assert compressed_counts("0?~") is None and compressed_counts("a" * 5 + "\x7f") is None


# ------------------------------------------------------------------------------------ RRSIS-D zeroov-json
def test_rrsisd_zeroov_json(tmp_path):
    m = np.zeros((10, 16), bool)
    m[2:5, 3:9] = True
    _img(tmp_path / "images" / "00007.jpg", 16, 10)
    _mask(tmp_path / "targetmask" / "00007.png", m)
    (tmp_path / "rrsisd.json").write_text(json.dumps(
        {"test": [{"iid": 7, "refs": ["The ship", "other"], "bbox": [3, 2, 8, 4]}], "val": []}))
    (s,) = load_samples("rrsisd", tmp_path, "test", format="zeroov-json")
    assert s.listing() == {"sample_id": "00007", "image": str(tmp_path / "images" / "00007.jpg"),
                           "expression": "The ship", "width": 16, "height": 10, "box": [3.0, 2.0, 8.0, 4.0],
                           "mask_area": 18}
    with pytest.raises(DatasetError, match=r"rrsisd\.json: no split 'train'; splits present: test, val"):
        load_samples("rrsisd", tmp_path, "train", format="zeroov-json")


# ------------------------------------------------------------------------------------ restricted unpickler
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_restricted_unpickler_refuses_globals_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, _Evil(f"touch {marker}")], protocol=2))
    with pytest.raises(DatasetError, match=r"evil\.p: refused to unpickle.*system"):
        load_restricted(path)
    assert not marker.exists()
    # the same through the RRSIS-D loader
    (tmp_path / "rrsisd").mkdir()
    (tmp_path / "rrsisd" / "refs(unc).p").write_bytes(path.read_bytes())
    with pytest.raises(DatasetError, match=r"refs\(unc\)\.p: refused"):
        load_samples("rrsisd", tmp_path, "test")
    assert not marker.exists()


def test_restricted_unpickler_plain_data_and_other_types(tmp_path):
    data = [{"a": (1, 2.5, True, None), "c": ["s", -3, 2 ** 70]}]
    path = tmp_path / "ok.p"
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert load_restricted(path) == data
        with_bytes = [*data, b"xy"]  # protocols 0-2 store bytes as a call to _codecs.encode: refused
        path.write_bytes(pickle.dumps(with_bytes, protocol=protocol))
        if protocol >= 3:
            assert load_restricted(path) == with_bytes
        else:
            with pytest.raises(DatasetError, match="_codecs.encode"):
                load_restricted(path)
    path.write_bytes(pickle.dumps({1, 2}, protocol=4))  # built without find_class, still refused
    with pytest.raises(DatasetError, match=r"ok\.p: refused to unpickle: it holds a set"):
        load_restricted(path)
    path.write_bytes(pickle.dumps(data)[:-5])
    with pytest.raises(DatasetError, match=r"ok\.p: damaged pickle"):
        load_restricted(path)


# ------------------------------------------------------------------------------------ RISBench / RefSegRS
def test_risbench_filename_verbatim_and_line_ids(tmp_path):
    m = np.zeros((12, 20), bool)
    m[1:4, 1:6] = True
    for name in ("P0001_0.5.tif", "x.png"):
        _img(tmp_path / "img_rgb" / name, 20, 12)
        _mask(tmp_path / "mask" / name, m)
    (tmp_path / "output_phrase_test.txt").write_text("P0001_0.5.tif the  red ship left\n\nx.png Big tank \n")
    (tmp_path / "output_phrase_train.txt").write_text("")
    a, b = load_samples("risbench", tmp_path, "test")
    assert (a.sample_id, b.sample_id) == ("000000", "000002")  # blank line counted, not listed
    assert a.image_path == tmp_path / "img_rgb" / "P0001_0.5.tif" and a.mask.path == tmp_path / "mask" / "P0001_0.5.tif"
    assert a.expression == "the  red ship left" and b.expression == "Big tank"
    assert a.listing()["mask_area"] == 15 and a.box is None and (a.width, a.height) == (20, 12)
    with pytest.raises(DatasetError, match=r"output_phrase_val\.txt: split file is missing; splits present .*: test, train"):
        load_samples("risbench", tmp_path, "val")


def test_refsegrs_tif_images_and_masks(tmp_path):
    m = np.zeros((8, 9), bool)
    m[0:2, 0:3] = True
    _img(tmp_path / "images" / "17.tif", 9, 8)
    _mask(tmp_path / "masks" / "17.tif", m)
    (tmp_path / "output_phrase_test.txt").write_text("17 the road at the top\n")
    (s,) = load_samples("refsegrs", tmp_path, "test")
    assert s.sample_id == "000000" and s.image_path == tmp_path / "images" / "17.tif"
    assert s.expression == "the road at the top" and s.listing()["mask_area"] == 6


# ------------------------------------------------------------------------------------ VRSBench
def test_vrsbench_grid_to_pixels(tmp_path):
    _img(tmp_path / "Images_val" / "P0003_0002.png", 200, 100)
    recs = [{"image_id": "P0003_0002.png", "question": "the small white car", "ground_truth": "{<10><20><50><80>}",
             "question_id": 42, "is_unique": True, "obj_cls": "small vehicle"}]
    (tmp_path / "VRSBench_EVAL_referring.json").write_text(json.dumps(recs))
    (s,) = load_samples("vrsbench", tmp_path, "test")
    assert s.sample_id == "42" and s.box == (20.0, 20.0, 100.0, 80.0) and s.category == "small vehicle"
    assert (s.width, s.height) == (200, 100) and s.mask is None
    with pytest.raises(DatasetError, match=r"VRSBench_EVAL_referring\.json: VRSBench has one evaluation split"):
        load_samples("vrsbench", tmp_path, "train")


# ------------------------------------------------------------------------------------ JSONL
def test_jsonl_relative_paths_file_and_folder_root(tmp_path):
    m = np.zeros((6, 7), bool)
    m[1:3, 1:3] = True
    sub = tmp_path / "mine"
    _img(sub / "imgs" / "a.png", 7, 6)
    _mask(sub / "masks" / "a.png", m)
    lines = [{"id": "a-1", "image": "imgs/a.png", "expression": "the field", "box": [1, 1, 2, 2], "mask": "masks/a.png"},
             {"id": 2, "image": "imgs/a.png", "expression": "no box"}]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    (sub / "anything.jsonl").write_text(text)
    (sub / "test.jsonl").write_text(text)
    for root, split in ((sub / "anything.jsonl", "whatever"), (sub, "test")):
        a, b = load_samples("jsonl", root, split)
        assert a.image_path == sub / "imgs" / "a.png" and a.listing()["mask_area"] == 4
        assert a.box == (1.0, 1.0, 2.0, 2.0) and (a.width, a.height) == (7, 6)
        assert (b.sample_id, b.box, b.mask, b.listing()["mask_area"]) == ("2", None, None, None)
    with pytest.raises(DatasetError, match=r"val\.jsonl: split file is missing; splits present .*: anything, test"):
        load_samples("jsonl", sub, "val")
    (sub / "bad.jsonl").write_text(json.dumps({"id": "../x", "image": "imgs/a.png", "expression": "e"}) + "\n")
    with pytest.raises(DatasetError, match=r"bad\.jsonl: line 1 id: sample id '\.\./x' is not filesystem-safe"):
        load_samples("jsonl", sub / "bad.jsonl", "test")


def test_missing_image_is_named(tmp_path):
    (tmp_path / "output_phrase_test.txt").write_text("gone.png the ship\n")
    with pytest.raises(DatasetError, match=r"img_rgb/gone\.png: image file is missing"):
        load_samples("risbench", tmp_path, "test")


def test_header_sizes_match_pil(tmp_path):
    from rsvg_zeroov.datasets.files import image_hw

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=(13, 21, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the header size is still the stored one, as PIL reports it
    cases = {"a.png": {}, "b.jpg": {}, "c.jpg": {"progressive": True}, "d.jpg": {"exif": exif.tobytes()},
             "e.tif": {}, "f.bmp": {}, "g.jpg": {"quality": 5, "optimize": True}}
    for name, kwargs in cases.items():
        Image.fromarray(arr).save(tmp_path / name, **kwargs)
        with Image.open(tmp_path / name) as im:
            assert image_hw(tmp_path / name) == (im.height, im.width) == (13, 21), name
    Image.fromarray(arr[..., 0]).save(tmp_path / "gray.jpg")
    assert image_hw(tmp_path / "gray.jpg") == (13, 21)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"junk\.png: unreadable image"):
        image_hw(tmp_path / "junk.png")
    with pytest.raises(DatasetError, match=r"nope\.png: image file is missing"):
        image_hw(tmp_path / "nope.png")


def test_options_and_implausible_sizes_are_refused(tmp_path, rsvg_root):
    with pytest.raises(DatasetError, match="--format not supported for --dataset dior_rsvg"):
        load_samples("dior_rsvg", rsvg_root, "test", format="zeroov-json")
    with pytest.raises(DatasetError, match="unknown RRSIS-D format 'coco'"):
        load_samples("rrsisd", tmp_path, "test", format="coco")
    _refer_fixture(tmp_path, "xywh")
    inst = tmp_path / "rrsisd" / "instances.json"
    data = json.loads(inst.read_text())
    data["images"][0]["width"] = 10 ** 9
    inst.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances\.json: image 1: implausible image size"):
        load_samples("rrsisd", tmp_path, "test")
