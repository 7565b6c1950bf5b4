"""ktextures:rename_classes through real QGIS Processing and qgis_process, on the segmented bundled sample:
the new raster and polygons carry the names, the colours are kept, the inputs are not modified, a later
ktextures:sample run shows the names, and wrong names or an output that is an input are refused."""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal, ogr

from conftest import SAMPLE, qgis_process_env
from ktextures_plugin.core.io import classraster

gdal.UseExceptions()
NAMES = ["forest", "field", "meadow", "town", "water", "bare"]


@pytest.fixture(scope="module")
def segmented(provider, tmp_path_factory):
    import processing
    d = tmp_path_factory.mktemp("seg")
    res = processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(d / "c.tif"),
                                               "OUTPUT_VECTOR": str(d / "p.gpkg")})
    return res["OUTPUT_RASTER"], res["OUTPUT_VECTOR"]


def _digest(*paths):
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def _content(path):
    """Every feature of every layer (attributes and geometry WKB): a GeoPackage's bytes may change on a mere
    open by SQLite (WAL checkpoint), its content may not."""
    ds = ogr.Open(str(path))
    try:
        return [(lyr.GetName(), [(tuple(f.items().items()), f.GetGeometryRef().ExportToWkb() if f.GetGeometryRef()
                                  else None) for f in lyr]) for lyr in ds]
    finally:
        ds = None


def _names_by_id(path):
    ds = ogr.Open(str(path))
    try:
        return {(f["class_id"], f["class_name"]) for f in ds.GetLayer(0)}
    finally:
        ds = None


def test_rename_writes_new_files_then_sample_shows_names(segmented, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer
    raster, poly = segmented
    before = _digest(raster), _content(poly)
    old_names, old_colors = classraster.read_palette(raster)
    assert old_names != NAMES
    res = processing.run("ktextures:rename_classes", {
        "INPUT": raster, "CLASS_NAMES": ", ".join(NAMES), "POLYGONS": poly,
        "OUTPUT_RASTER": str(tmp_path / "named.tif"), "OUTPUT_VECTOR": str(tmp_path / "named.gpkg")})
    assert (_digest(raster), _content(poly)) == before  # inputs untouched
    assert classraster.read_palette(res["OUTPUT_RASTER"]) == (NAMES, old_colors)
    a, b = gdal.Open(raster), gdal.Open(res["OUTPUT_RASTER"])
    assert (a.ReadAsArray() == b.ReadAsArray()).all() and a.GetGeoTransform() == b.GetGeoTransform()
    a = b = None
    got = _names_by_id(res["OUTPUT_VECTOR"])
    assert {cid for cid, _ in got} == {cid for cid, _ in _names_by_id(poly)}
    assert all(NAMES[cid - 1] == name for cid, name in got)
    layer = QgsRasterLayer(res["OUTPUT_RASTER"], "named", "gdal")  # opens styled with the names
    assert [c.label for c in layer.renderer().classes()] == NAMES
    pts = processing.run("ktextures:sample", {"INPUT": res["OUTPUT_RASTER"], "POINTS_PER_CLASS": 3,
                                              "OUTPUT_POINTS": str(tmp_path / "pts.gpkg")})["OUTPUT_POINTS"]
    assert {n for _, n in _names_by_id(pts)} == set(NAMES)


def test_shapefile_polygons(segmented, tmp_path):
    """Other OGR formats are renamed feature by feature."""
    import processing
    shp = tmp_path / "p.shp"
    gdal.VectorTranslate(str(shp), segmented[1], format="ESRI Shapefile")
    res = processing.run("ktextures:rename_classes", {
        "INPUT": segmented[0], "CLASS_NAMES": ",".join(NAMES), "POLYGONS": str(shp),
        "OUTPUT_RASTER": str(tmp_path / "n.tif"), "OUTPUT_VECTOR": str(tmp_path / "n_polygons.shp")})
    got = _names_by_id(res["OUTPUT_VECTOR"])
    assert got and all(NAMES[cid - 1] == name for cid, name in got)


def test_refusals_leave_nothing(segmented, tmp_path):
    """Wrong number of names (through qgis_process) and an output that is the input: clear errors naming
    the QGIS parameter, the input unchanged, no output written."""
    import processing
    from qgis.core import QgsProcessingException
    raster = segmented[0]
    before = _digest(raster)
    env = qgis_process_env(tmp_path)
    subprocess.run(["qgis_process.bin", "plugins", "enable", "ktextures"], env=env, capture_output=True, timeout=120)
    out = tmp_path / "n.tif"
    cp = subprocess.run(["qgis_process.bin", "--json", "run", "ktextures:rename_classes", "--", f"INPUT={raster}",
                         "CLASS_NAMES=a,b", f"OUTPUT_RASTER={out}"], env=env, capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode != 0 and "CLASS_NAMES" in cp.stdout + cp.stderr and "give 6" in cp.stdout + cp.stderr
    assert not out.exists()
    with pytest.raises(QgsProcessingException, match="OUTPUT_RASTER"):
        processing.run("ktextures:rename_classes", {"INPUT": raster, "CLASS_NAMES": ",".join(NAMES),
                                                    "OUTPUT_RASTER": raster})
    assert _digest(raster) == before
    cp = subprocess.run(["qgis_process.bin", "--json", "run", "ktextures:rename_classes", "--", f"INPUT={raster}",
                         "CLASS_NAMES=" + ",".join(NAMES), f"OUTPUT_RASTER={out}"], env=env, capture_output=True,
                        text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert json.loads(cp.stdout)["results"]["OUTPUT_RASTER"] == str(out)
    assert classraster.read_palette(str(out))[0] == NAMES
