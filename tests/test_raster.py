"""Rasters, mask GeoTIFFs and vectors on generated files (no models): rsvg_zeroov.raster, geo, vectors,
and the routing of the released image readers and the data set headers to the raster reader."""
import argparse
import json
import logging

import numpy as np
import pytest

import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from rsvg_zeroov import geo, images
from rsvg_zeroov.raster import Raster, RasterError, RasterOptions, needs_raster_reader, read_rgb

TRANSFORM = from_origin(500000.0, 4200000.0, 0.5, 0.5)


def _tif(path, data, crs="EPSG:32633", transform=TRANSFORM, **profile):
    """Write (C, H, W) ``data`` as a GeoTIFF (``crs=None`` and ``transform=None``: a plain TIFF)."""
    c, h, w = data.shape
    kw = dict(driver="GTiff", width=w, height=h, count=c, dtype=data.dtype.name, **profile)
    if crs is not None:
        kw["crs"] = crs
    if transform is not None:
        kw["transform"] = transform
    with rasterio.open(path, "w", **kw) as dst:
        dst.write(data)
    return path


def _field(h, w, bands=3, seed=0, scale=3000):
    return (np.random.default_rng(seed).random((bands, h, w)) * scale + 100).astype(np.uint16)


def test_float_nodata_is_left_out_of_the_stretch(tmp_path):
    """-9999 nodata (and NaN) must not set the stretch: the valid data fills 0..255, the nodata is 0
    and invalid (a min-max stretch over all pixels put the valid data at 254-255)."""
    data = np.random.default_rng(1).uniform(0.05, 0.3, (3, 60, 70)).astype(np.float32)
    data[:, :, :15] = -9999.0
    data[:, 0, 20] = np.nan
    with Raster(_tif(tmp_path / "f.tif", data, nodata=-9999.0)) as r:
        image = r.overview(None)
        stretch = r.describe()["stretch"]
    valid = image.valid
    assert not valid[:, :15].any() and not valid[0, 20] and valid[1:, 15:].all()
    assert (image.rgb[~valid] == 0).all()
    inside = image.rgb[valid]
    assert inside.min() == 0 and inside.max() == 255 and np.median(inside) > 80
    assert all(0.05 <= lo < hi <= 0.3 for lo, hi in zip(stretch["low"], stretch["high"]))
    lo, hi = np.percentile(data[0][valid], [2, 98])
    expected = np.clip(np.rint((data[0][valid] - np.float32(lo)) / np.float32(hi - lo) * 255), 0, 255)
    assert np.abs(image.rgb[..., 0][valid].astype(int) - expected).max() <= 1
    with Raster(tmp_path / "f.tif", RasterOptions(stretch=(0, 100))) as r:  # min-max of the valid pixels
        assert r.overview(None) is not None and r.describe()["stretch"]["low"][0] == pytest.approx(data[0][valid].min())


def test_band_choice_default_and_flag(tmp_path, caplog):
    data = _field(40, 50, bands=4)
    path = _tif(tmp_path / "bgrn.tif", data, photometric="MINISBLACK")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    with Raster(path) as r:
        assert r.indexes == (3, 2, 1)  # the colour interpretation
    with Raster(path, RasterOptions(bands=(4, 3, 2))) as r:
        rgb = r.overview(None).rgb
        assert r.indexes == (4, 3, 2)
    lo, hi = np.percentile(data[3].astype(np.float32), [2, 98])
    expected = np.clip(np.rint((data[3].astype(np.float32) - np.float32(lo)) / np.float32(hi - lo) * 255), 0, 255)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    plain = _tif(tmp_path / "four.tif", data)
    with caplog.at_level(logging.INFO), Raster(plain) as r:
        assert r.indexes == (1, 2, 3)
    assert "--bands" in caplog.text
    with Raster(plain, RasterOptions(bands=(2,))) as r:  # one band: grey
        grey = r.overview(None).rgb
        assert (grey[..., 0] == grey[..., 2]).all()


def test_unsupported_layouts_name_the_flag(tmp_path, monkeypatch):
    from rsvg_zeroov import raster

    opened = []
    real_open = raster._open
    monkeypatch.setattr(raster, "_open", lambda *a, **k: opened.append(real_open(*a, **k)) or opened[-1])
    two = _tif(tmp_path / "two.tif", _field(30, 30, bands=2))
    with pytest.raises(RasterError, match=r"two\.tif: 2 bands .*--bands"):
        Raster(two)
    with pytest.raises(RasterError, match=r"--bands 5,1,1: .*2 band"):
        Raster(two, RasterOptions(bands=(5, 1, 1)))
    with pytest.raises(ValueError, match="one band .* or three"):
        RasterOptions(bands=(1, 2))
    with pytest.raises(ValueError, match="--stretch"):
        RasterOptions(stretch=(50, 10))
    rgba = np.zeros((4, 30, 30), np.uint8)
    path = _tif(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    with pytest.raises(RasterError, match="alpha band"):
        Raster(path, RasterOptions(bands=(4, 1, 2)))
    cplx = _tif(tmp_path / "c.tif", np.ones((1, 30, 30), np.complex64))
    with pytest.raises(RasterError, match="complex"):
        Raster(cplx)
    assert len(opened) == 4 and all(ds.closed for ds in opened)  # a refused layout leaves no file open


def test_alpha_and_palette(tmp_path):
    rgba = np.random.default_rng(2).integers(1, 255, (4, 40, 40)).astype(np.uint8)
    rgba[3] = 255
    rgba[3, 10:20, 5:30] = 0
    path = _tif(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    with Raster(path) as r:
        image = r.overview(None)
        assert r.indexes == (1, 2, 3) and r.has_invalid
    assert not image.valid[10:20, 5:30].any() and image.valid.sum() == 40 * 40 - 10 * 25
    assert (image.rgb[image.valid] == rgba[:3].transpose(1, 2, 0)[image.valid]).all()  # 8-bit: as stored
    assert (image.rgb[~image.valid] == 0).all()
    index = (np.arange(40 * 40).reshape(1, 40, 40) % 3).astype(np.uint8)
    pal = _tif(tmp_path / "pal.tif", index, photometric="PALETTE")
    colours = {0: (10, 20, 30, 255), 1: (200, 0, 0, 255), 2: (0, 250, 0, 255)}
    with rasterio.open(pal, "r+") as dst:
        dst.write_colormap(1, colours)
    assert (read_rgb(pal) == np.array([colours[i][:3] for i in range(3)], np.uint8)[index[0]]).all()


def test_reduced_reads_average_valid_pixels_and_use_overviews(tmp_path):
    data = _field(300, 200, seed=3)
    data[:, :37, :] = 0
    path = _tif(tmp_path / "big.tif", data, nodata=0, tiled=True, blockxsize=64, blockysize=64)
    with Raster(path) as r:
        full = r.overview(None)
        small = r.overview(3000)  # 300x200 -> factor 5: 60x40
        window = r.window((20, 50, 100, 120))
    assert small.rgb.shape == (60, 40, 3) and small.factor == (5.0, 5.0)
    assert np.array_equal(window.rgb, full.rgb[50:170, 20:120]) and window.factor == (1.0, 1.0)
    assert not small.valid[:7].any() and small.valid[8:].all()  # rows 35-39 still hold 3 valid rows
    block = data[0, 35:40, 0:5].astype(np.float64)
    mean = block[block != 0].mean()
    with Raster(path) as r:
        r.overview(None)
        lo, hi = r.stretch[0][0], r.stretch[1][0]
    assert abs(int(small.rgb[7, 0, 0]) - np.clip(np.rint((mean - lo) / (hi - lo) * 255), 0, 255)) <= 1
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    with Raster(path) as r:  # factor 5 needed: the 4x overview (75x50) is read, then halved
        coarse = r.overview(3000)
    assert coarse.rgb.shape == (38, 25, 3) and coarse.factor == (8.0, 8.0)


def test_a_single_strip_raster_is_read_in_bounded_pieces(tmp_path, monkeypatch):
    """An untiled, compressed TIFF stored as one strip (its block is the whole raster): every read
    is at most STRIP_ROWS rows (never the whole raster, nor its validity), and the image equals
    the one read from a tiled copy."""
    from rsvg_zeroov import raster

    data = _field(700, 90, seed=5)
    data[:, 300:320] = 0
    single = _tif(tmp_path / "single.tif", data, nodata=0, tiled=False, blockysize=700, compress="deflate")
    tiled = _tif(tmp_path / "tiled.tif", data, nodata=0, tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(single) as src:
        assert src.block_shapes[0] == (700, 90)
    heights = []
    block = raster.Raster._block
    monkeypatch.setattr(raster.Raster, "_block", lambda self, ds, win: heights.append(win.height) or block(self, ds, win))
    for budget in (None, 60 * 8):  # native; reduced by 10
        with Raster(single) as r:
            image = r.overview(budget)
            assert max(heights) <= raster.STRIP_ROWS and sum(heights) == 700
            heights.clear()
            window = r.window((5, 250, 80, 300))
            assert max(heights) <= raster.STRIP_ROWS and sum(heights) == 300
            heights.clear()
        with Raster(tiled) as r:
            expected, expected_window = r.overview(budget), r.window((5, 250, 80, 300))
            heights.clear()
        assert np.array_equal(image.rgb, expected.rgb) and np.array_equal(image.valid, expected.valid)
        assert np.array_equal(window.rgb, expected_window.rgb) and not window.valid[50:70].any()


def test_nodata_is_compared_in_the_bands_type(tmp_path):
    """A nodata value the band's type cannot hold exactly (-9999.9 for float32) matches the pixels
    that hold it in that type, as GDAL's own mask does; an integer band's nodata outside its range
    matches none. On a file the validity equals GDAL's mask, and a huge valid value stretches to
    255 without a floating-point warning."""
    import warnings

    from rsvg_zeroov.raster import _not_nodata

    band = np.array([[np.float32(-9999.9), 0.25], [np.nan, np.float32(-9999.9)]], np.float32)
    assert _not_nodata(band, -9999.9).tolist() == [[False, True], [True, False]]
    assert _not_nodata(band, float("nan")).tolist() == [[True, True], [False, True]]
    assert _not_nodata(np.array([0, 65535], np.uint16), -1.0).all()
    assert _not_nodata(np.array([0, 7], np.uint8), 7.0).tolist() == [True, False]
    data = np.random.default_rng(4).uniform(0.1, 0.5, (1, 40, 50)).astype(np.float32)
    data[:, :, :10] = np.float32(-9999.9)
    data[0, 5, 20] = np.float32(3e38)
    path = _tif(tmp_path / "f32.tif", data, nodata=-9999.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with Raster(path) as r:
            image = r.overview(None)
    with rasterio.open(path) as src:
        gdal = src.read_masks(1) > 0
    assert not image.valid[:, :10].any() and image.valid[:, 10:].all()
    assert np.array_equal(image.valid, gdal) and image.rgb[5, 20, 0] == 255


def test_routing_of_the_released_readers(tmp_path):
    from PIL import Image

    data = _field(50, 60, seed=4)
    geotiff = _tif(tmp_path / "deep.tif", data)
    plain = tmp_path / "plain.tif"
    Image.fromarray(data[:, :, :].transpose(1, 2, 0).astype(np.uint8)).save(plain)
    assert needs_raster_reader(geotiff) and not needs_raster_reader(plain)
    assert not needs_raster_reader(tmp_path / "missing.tif")
    expected = read_rgb(geotiff)
    for reader in (images.read_for_diffusion, images.read_for_sam, images.load_rgb):
        assert np.array_equal(reader(geotiff), expected), reader.__name__
    assert np.array_equal(np.asarray(images.read_for_vlm(geotiff)), expected)
    assert images.image_hw(geotiff) == (50, 60)
    assert np.array_equal(images.read_for_sam(plain), np.asarray(Image.open(plain).convert("RGB")))


def test_jsonl_listing_reads_deep_tiles_and_defers_a_broken_one(tmp_path, capsys):
    from rsvg_zeroov.datasets import load_samples
    from rsvg_zeroov.datasets.__main__ import main
    from rsvg_zeroov.datasets.files import deferred_image_errors

    _tif(tmp_path / "deep.tif", _field(40, 52, seed=5), crs=None, transform=None)  # 3-band uint16: PIL refuses
    _tif(tmp_path / "float.tif", np.ones((1, 30, 31), np.float32))
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    rows = [{"id": "deep", "image": "deep.tif", "expression": "the field"},
            {"id": "float", "image": "float.tif", "expression": "the roof"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--dataset", "jsonl", "--root", str(tmp_path), "--split", "test"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["width"], s["height"]) for s in listed] == [(52, 40), (31, 30)]
    rows.append({"id": "broken", "image": "broken.tif", "expression": "x"})
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with deferred_image_errors() as problems:  # how the stages load a data set
        samples = load_samples("jsonl", tmp_path, "test")
    assert [s.width for s in samples] == [52, 31, 0]
    assert list(problems) == [tmp_path / "broken.tif"]


def test_write_mask_like_copies_the_georeferencing_and_nodata(tmp_path):
    import warnings

    from PIL import Image
    from rasterio.errors import NotGeoreferencedWarning

    data = _field(64, 80, seed=6)
    data[:, :, :10] = 0
    image = _tif(tmp_path / "tile.tif", data, nodata=0)
    mask = np.zeros((64, 80), bool)
    mask[:, :40] = True  # covers some nodata columns
    assert geo.write_mask_like(tmp_path / "tile_mask.tif", mask, image)
    with rasterio.open(tmp_path / "tile_mask.tif") as m:
        assert m.crs.to_epsg() == 32633 and m.transform == TRANSFORM and m.nodata == geo.MASK_NODATA
        out = m.read(1)
    assert (out[:, :10] == geo.MASK_NODATA).all() and (out[:, 10:40] == 255).all() and (out[:, 40:] == 0).all()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "tile.png")
    assert not geo.write_mask_like(tmp_path / "png_mask.tif", mask, tmp_path / "tile.png")
    assert not (tmp_path / "png_mask.tif").exists()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "plain.tif")  # no georeferencing
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        assert not geo.is_geotiff(tmp_path / "plain.tif") and geo.is_geotiff(image)
    with pytest.raises(ValueError, match="mask is"):
        geo.write_mask_like(tmp_path / "x.tif", mask[:10], image)


def _pieces(h=1100, w=1300):
    a = np.zeros((300, 400), bool)
    a[50:250, 60:300] = True
    a[120:160, 150:200] = False  # a hole
    b = np.zeros((200, 200), bool)
    yy, xx = np.mgrid[:200, :200]
    b[(yy - 100) ** 2 + (xx - 90) ** 2 < 70 ** 2] = True
    pieces = [geo.MaskPiece((100, 600, 400, 300), a), geo.MaskPiece((900, 100, 200, 200), b)]
    full = np.zeros((h, w), bool)
    full[600:900, 100:500] = a
    full[100:300, 900:1100] = b
    return pieces, full


def test_scene_mask_is_tiled_and_written_by_pieces(tmp_path):
    pieces, full = _pieces()
    ref = geo.GeoRef(TRANSFORM, rasterio.crs.CRS.from_epsg(32633).to_wkt(), 1300, 1100)
    geo.write_scene_mask(tmp_path / "mask.tif", ref, pieces)
    with rasterio.open(tmp_path / "mask.tif") as m:
        assert m.profile["tiled"] and m.block_shapes[0] == (geo.TILE, geo.TILE) and m.compression.name == "deflate"
        assert (m.width, m.height, m.transform, m.nodata) == (1300, 1100, TRANSFORM, None)
        assert np.array_equal(m.read(1), full.astype(np.uint8) * 255)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_polygons_round_trip_through_every_format(tmp_path):
    import fiona
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom
    from shapely.geometry import shape

    from rsvg_zeroov.vectors import VectorOptions, mask_polygons, write_vectors

    pieces, full = _pieces()
    wkt = rasterio.crs.CRS.from_epsg(32633).to_wkt()
    polygons = mask_polygons(pieces, TRANSFORM)
    assert len(polygons) == 2 and all(p.is_valid for p in polygons)
    names = write_vectors(tmp_path, polygons, wkt, "the tank", 0.75, VectorOptions(formats=("geojson", "gpkg", "shp")))
    assert {"mask.geojson", "mask.gpkg", "mask.shp", "mask.dbf", "mask.prj"} <= set(names)

    def back(geoms):
        return rasterize([(g, 1) for g in geoms], out_shape=full.shape, transform=TRANSFORM).astype(bool)

    for name in ("mask.gpkg", "mask.shp"):
        with fiona.open(tmp_path / name) as src:
            assert src.crs.to_epsg() == 32633, name
            feats = list(src)
        assert _iou(back([f.geometry for f in feats]), full) > 0.99
        props = feats[0].properties
        assert props["expression"] == "the tank" and props["score"] == 0.75 and props["area_unit"] == "metre^2"
        assert sum(f.properties["area"] for f in feats) == pytest.approx(full.sum() * 0.25)
    gj = json.loads((tmp_path / "mask.geojson").read_text())
    assert "crs" not in gj and len(gj["features"]) == 2  # RFC 7946: WGS84, no crs member
    for f in gj["features"]:
        poly = shape(f["geometry"])
        lon, lat = poly.exterior.coords[0]
        assert 14 < lon < 16 and 37 < lat < 39 and poly.exterior.is_ccw
        assert all(not ring.is_ccw for ring in poly.interiors)
    native = [transform_geom("EPSG:4326", wkt, f["geometry"]) for f in gj["features"]]
    assert _iou(back(native), full) > 0.99
    write_vectors(tmp_path / "native", polygons, wkt, "x", None, VectorOptions(vector_crs="native"))
    assert "32633" in json.loads((tmp_path / "native" / "mask.geojson").read_text())["crs"]["properties"]["name"]
    simple = mask_polygons(pieces, TRANSFORM, simplify=2.0)
    assert sum(len(p.exterior.coords) for p in simple) < sum(len(p.exterior.coords) for p in polygons)
    assert _iou(back(simple), full) > 0.95


def test_vector_options_are_checked():
    from rsvg_zeroov.vectors import VectorOptions, _formats

    assert _formats("gpkg, geojson") == ("gpkg", "geojson") and _formats("none") == ()
    with pytest.raises(argparse.ArgumentTypeError, match="--vector"):
        _formats("kml")
    with pytest.raises(ValueError, match="--simplify"):
        VectorOptions(simplify=-1.0)
