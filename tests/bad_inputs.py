"""Broken inputs built from the bundled sample and the tests' tiny models, for tests/test_bad_inputs*.py.

Every file is made here (nothing is downloaded or kept in the repository): damaged GeoTIFFs (cut in half, or
with the directory overwritten), model files that are not ONNX (truncated, text, empty, a pickle renamed
``.onnx``, external data outside the model's folder), models with out-of-contract metadata or graphs, a raster
whose NIR band is tagged Alpha, and a rotated raster.
"""
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper
from osgeo import gdal

from conftest import SAMPLE, SAMPLE_LABEL
from onnx_fixtures import binning_model

gdal.UseExceptions()

#: Pixels of the NIR band set to 0 in ``alpha.tif`` (rows 0..99, columns 0..199): the Alpha mask's nodata.
ALPHA_ZEROS = 100 * 200
#: Rotation of ``rotated.tif``, degrees anticlockwise.
ROTATION_DEG = 30.0


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def hashes(folder) -> dict:
    """sha256 of every file under ``folder`` (relative name -> digest)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])
    return dst


def damaged_rasters(d: Path) -> dict:
    """``img`` (a tiled, compressed copy of the sample), ``trunc`` (it cut in half: GDAL opens it, reading
    fails), ``labels`` / ``labels_trunc`` (the same for the label raster)."""
    img = d / "img.tif"
    gdal.Translate(str(img), str(SAMPLE), creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    labels = d / "labels.tif"
    gdal.Translate(str(labels), str(SAMPLE_LABEL), creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    return {"img": img, "trunc": _cut(img, d / "trunc.tif", 0.5), "labels": labels,
            "labels_trunc": _cut(labels, d / "labels_trunc.tif", 0.66)}


def broken_model_files(d: Path, good: str) -> dict:
    """Files named ``.onnx`` that are no loadable model: truncated, text, empty, pickle, and a model whose
    external data points outside its folder."""
    out = {"trunc": _cut(Path(good), d / "trunc.onnx", 0.5)}
    (d / "text.onnx").write_text("this is not a model\n")
    (d / "empty.onnx").write_bytes(b"")
    with open(d / "pickle.onnx", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    out.update(text=d / "text.onnx", empty=d / "empty.onnx", pickle=d / "pickle.onnx")
    m = onnx.load(good)
    sub = d / "escape" / "model"
    sub.mkdir(parents=True)
    for t in m.graph.initializer:
        if t.name == "tex":
            (d / "escape" / "outside.bin").write_bytes(numpy_helper.to_array(t).tobytes())
            external_data_helper.set_external_data(t, location="../outside.bin")
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(m, str(sub / "m.onnx"))
    out["escape"] = sub / "m.onnx"
    return out


def _with_meta(good: str, dst: Path, key: str, value: str) -> Path:
    m = onnx.load(good)
    for p in m.metadata_props:
        if p.key == key:
            p.value = value
            break
    else:
        m.metadata_props.add(key=key, value=value)
    onnx.save(m, str(dst))
    return dst


def _three_channel_graph(good: str, dst: Path) -> Path:
    """The graph reads 3 channels (a 1x1 convolution with 3 input channels) while its metadata lists 4."""
    m = onnx.load(good)
    g = m.graph
    g.initializer.append(numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w3"))
    for n in g.node:
        if n.op_type == "ReduceMean":
            n.input[0] = "c3"
    g.node.insert(0, helper.make_node("Conv", ["image", "w3"], ["c3"]))
    onnx.save(m, str(dst))
    return dst


def _half_height_graph(good: str, dst: Path) -> Path:
    """The ``class`` output keeps every second row: half the input's height."""
    m = onnx.load(good)
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(np.array([v], np.int64), n)
                          for n, v in (("s0", 0), ("s1", 1 << 30), ("ax", 2), ("st", 2))])
    idx = next(i for i, n in enumerate(g.node) if n.op_type == "Cast")
    g.node[idx].input[0] = "half"
    g.node.insert(idx, helper.make_node("Slice", ["clsf", "s0", "s1", "ax", "st"], ["half"]))
    onnx.save(m, str(dst))
    return dst


#: name -> (metadata key, JSON value, words the error must hold)
BAD_METADATA = {
    "huge_k": ("ktextures.num_classes", "100000000", "2..255"),
    "period": ("ktextures.texture_period_px", '"abc"', "texture_period_px"),
    "fill": ("ktextures.nodata_fill", '"x"', "nodata_fill"),
    "scale": ("ktextures.input_scale", json.dumps({"min": ["a", 0, 0, 0], "max": [1, 1, 1, 1]}), "input_scale"),
    "scale_clip": ("ktextures.input_scale", json.dumps({"min": [0, 0, 0, 0], "max": [1, 1, 1, 1], "clip": "no"}),
                   "clip"),
}
#: name -> words the error must hold, for the graphs that do not match their metadata
BAD_GRAPHS = {"three_channels": "channels", "half_height": "(N, 1, H, W)"}


def bad_models(d: Path, good: str) -> dict:
    """Models whose metadata (:data:`BAD_METADATA`) or graph (:data:`BAD_GRAPHS`) break the contract, and
    ``mathtext``: a good model whose class names are matplotlib mathtext."""
    out = {name: _with_meta(good, d / f"{name}.onnx", key, value) for name, (key, value, _) in BAD_METADATA.items()}
    out["three_channels"] = _three_channel_graph(good, d / "three_channels.onnx")
    out["half_height"] = _half_height_graph(good, d / "half_height.onnx")
    names = {"0": "$\\foo$", "1": "a_$b^c$", "2": "$", "3": "plain"}
    out["mathtext"] = _with_meta(good, d / "mathtext.onnx", "class_names", json.dumps(names))
    return out


def alpha_raster(d: Path) -> Path:
    """The sample with its NIR band (4) tagged Alpha and :data:`ALPHA_ZEROS` of its values 0."""
    p = d / "alpha.tif"
    gdal.Translate(str(p), str(SAMPLE))
    ds = gdal.Open(str(p), gdal.GA_Update)
    band = ds.GetRasterBand(4)
    a = band.ReadAsArray()
    a[:100, :200] = 0
    band.WriteArray(a)
    band.SetColorInterpretation(gdal.GCI_AlphaBand)
    ds = None
    return p


def rotated_raster(d: Path) -> Path:
    """The sample with its geotransform rotated by :data:`ROTATION_DEG` about its origin (same pixels)."""
    p = d / "rotated.tif"
    shutil.copy(SAMPLE, p)
    ds = gdal.Open(str(p), gdal.GA_Update)
    x0, px, _, y0, _, py = ds.GetGeoTransform()
    t = np.radians(ROTATION_DEG)
    # columns run along (cos t, sin t), rows along (sin t, -cos t) (py < 0: a north-up raster at t = 0)
    ds.SetGeoTransform((x0, px * np.cos(t), -py * np.sin(t), y0, px * np.sin(t), py * np.cos(t)))
    ds = None
    return p


def world_bounds(path, window) -> tuple:
    """``(xmin, ymin, xmax, ymax)`` of the pixel window ``(xoff, yoff, xsize, ysize)`` of ``path`` in map units
    (the bounding box of its four corners through the geotransform)."""
    gt = gdal.Open(str(path)).GetGeoTransform()
    x0, y0, xs, ys = window
    pts = [(gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5])
           for c in (x0, x0 + xs) for r in (y0, y0 + ys)]
    xs_, ys_ = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs_), min(ys_), max(xs_), max(ys_)


def build_case(d: Path) -> dict:
    """Every broken input in folder ``d``: name -> path (the good model as ``good``)."""
    d.mkdir(parents=True, exist_ok=True)
    good = binning_model(d / "good.onnx", k=4)
    case = {"good": Path(good), **damaged_rasters(d)}
    case.update({f"model_{k}": v for k, v in broken_model_files(d, good).items()})
    case.update(bad_models(d, good))
    case["alpha"] = alpha_raster(d)
    case["rotated"] = rotated_raster(d)
    return case
