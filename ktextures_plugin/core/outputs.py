"""The one output-path check of every algorithm and front end: no output may be an input, no two outputs may
share a file, and each output's format must be able to hold it, all checked before any work starts.

A path is compared by the file it resolves to (``os.path.realpath``, so through symbolic links; the device
and inode when the file exists, so through hard links), together with the files GDAL and OGR keep beside it:
an input's whole file list (``gdal.Dataset.GetFileList``: ``.aux.xml``, ``.ovr``, ``.msk``, ``.hdr``,
shapefile parts), and the sidecars an output may write (``.aux.xml``, ``.ovr``, ``.msk`` of a raster; the
parts of a shapefile; ``-wal``/``-shm``/``-journal`` of a GeoPackage).

Errors are :class:`OutputPathError`; each carries ``parameter``, the key of the offending output (``"output"``,
``"vector"``, ...) as the caller named it, so that each front end words the message with its own parameter or
option names (:meth:`OutputPathError.message`).
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Mapping, Optional, Set, Tuple, Union

from osgeo import gdal, ogr

from .classraster import driver_for_path
from .errors import OutputError, OutputPathError

gdal.UseExceptions()

#: Output kinds.
CLASS_RASTER = "class raster"      # integer classes with a colour table and class names
FLOAT_RASTER = "float raster"      # the simulated image: several Float32 bands
VECTOR = "vector"                  # polygons (OGR)
TABLE = "table"                    # CSV
HTML = "html"                      # a self-contained HTML report
MODEL = "model"                    # .onnx
FOLDER = "folder"                  # a folder of files (chips)
SINK = "sink"                      # a vector layer whose format the caller (QGIS) chooses: identity checks only

#: GDAL raster formats that hold an integer class raster with its colour table losslessly.
PALETTE_DRIVERS = ("GTiff", "COG", "PNG", "GIF", "BMP", "HFA", "KEA", "PCIDSK")
#: Formats that never hold an output of ours: references to other files (VRT), in-memory, or lossy.
REFUSED_DRIVERS = {"VRT": "a VRT only points to other files", "MEM": "an in-memory dataset is not a file",
                   "JPEG": "JPEG is lossy and has no colour table", "WEBP": "WebP is lossy here",
                   "JP2OpenJPEG": "JPEG 2000 is lossy by default", "JPEG2000": "JPEG 2000 is lossy by default",
                   "JP2ECW": "JPEG 2000 is lossy by default", "JP2KAK": "JPEG 2000 is lossy by default"}

_RASTER_SIDECARS = (".aux.xml", ".ovr", ".msk")
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd")
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")

Paths = Mapping[str, Optional[str]]
Outputs = Mapping[str, Union[Tuple[Optional[str], str], None]]


def vector_driver(path: str) -> str:
    """OGR vector driver short name for the extension of ``path`` (GeoPackage for none or unknown)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    known = {"gpkg": "GPKG", "shp": "ESRI Shapefile", "geojson": "GeoJSON", "json": "GeoJSON",
             "fgb": "FlatGeobuf", "sqlite": "SQLite", "gml": "GML", "kml": "KML", "csv": "CSV"}
    if ext in known:
        return known[ext]
    for i in range(ogr.GetDriverCount()):
        drv = ogr.GetDriver(i)
        md = drv.GetMetadata() or {}
        if md.get(gdal.DCAP_VECTOR) == "YES" and ext in (md.get(gdal.DMD_EXTENSIONS) or "").split():
            return drv.GetName()
    raise OutputError(f"No OGR vector format writes '.{ext}' files ({path}); use .gpkg")


def check_outputs(outputs: Outputs, inputs: Paths = None, folders_must_exist: bool = True) -> None:
    """Refuse outputs that cannot be written safely, before any work starts.

    Args:
        outputs: key -> ``(path, kind)`` (kind: :data:`CLASS_RASTER`, :data:`FLOAT_RASTER`, :data:`VECTOR`,
            :data:`TABLE`, :data:`HTML`, :data:`MODEL`, :data:`FOLDER`, :data:`SINK`); entries with an empty
            path or ``None`` are skipped.
        inputs: key -> path of every file the run reads (rasters, models, reference layers).
        folders_must_exist: also refuse an output whose folder is missing or not writable.

    Raises:
        OutputPathError: an output is a folder (or ends with a path separator), its folder is missing or
            read-only, its format cannot hold it, it resolves to an input's file or to another output's.
    """
    wanted = [(key, v[0], v[1]) for key, v in outputs.items() if v and v[0]]
    input_files = {key: _input_files(p) for key, p in (inputs or {}).items() if p}
    seen: Dict[str, Set] = {}
    for key, path, kind in wanted:
        path = str(path)
        _check_shape(key, path, kind, folders_must_exist)
        mine = _output_files(path, kind)
        for in_key, files in input_files.items():
            if mine & files:
                raise OutputPathError(key, f"{{name}} '{path}' is the input {{other}} (or one of its files); "
                                      "an input is never overwritten. Choose another file for {name}.", in_key)
        for other_key, files in seen.items():
            if mine & files:
                raise OutputPathError(key, f"{{name}} and {{other}} are the same file ('{path}'), so one "
                                      "output would be lost. Choose another file for {name}.", other_key)
        _check_format(key, path, kind)
        seen[key] = mine


def _check_shape(key: str, path: str, kind: str, folders_must_exist: bool) -> None:
    if kind != FOLDER and (path.endswith(("/", os.sep)) or os.path.isdir(path)):
        raise OutputPathError(key, f"{{name}} '{path}' is a folder; give a file name for {{name}}, "
                              f"e.g. '{os.path.join(path, 'output' + _example_ext(kind))}'.")
    if kind == FOLDER and os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(key, f"{{name}} '{path}' is a file, not a folder. Choose a folder for {{name}}.")
    folder = os.path.dirname(os.path.abspath(path))
    folders_must_exist = folders_must_exist and kind not in (FOLDER, SINK)  # created by the writer
    if folders_must_exist and not os.path.isdir(folder):
        raise OutputPathError(key, f"The folder of {{name}} does not exist: '{folder}'. Create it or choose "
                              "another folder for {name}.")
    if folders_must_exist and not os.access(folder, os.W_OK):
        raise OutputPathError(key, f"The folder of {{name}} is not writable: '{folder}'. Choose a folder you "
                              "can write to for {name}.")


def _example_ext(kind: str) -> str:
    return {CLASS_RASTER: ".tif", FLOAT_RASTER: ".tif", VECTOR: ".gpkg", TABLE: ".csv", HTML: ".html",
            MODEL: ".onnx"}.get(kind, "")


def _check_format(key: str, path: str, kind: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if kind in (CLASS_RASTER, FLOAT_RASTER):
        if not ext:
            raise OutputPathError(key, f"{{name}} '{path}' has no file extension, so its format is unknown. "
                                  "Add '.tif' to {name}.")
        try:
            drv = driver_for_path(path)
        except OutputError:
            raise OutputPathError(key, f"{{name}} '{path}': no GDAL raster format writes '{ext}' files. Use a "
                                  ".tif file for {name}.") from None
        why = REFUSED_DRIVERS.get(drv)
        if why is None and kind == CLASS_RASTER and drv not in PALETTE_DRIVERS:
            why = f"{drv} cannot hold a class raster with its colour table"
        if why is None and kind == FLOAT_RASTER and not _holds_float32(drv):
            why = f"{drv} cannot hold Float32 bands"
        if why:
            raise OutputPathError(key, f"{{name}} '{path}' cannot be written as {ext}: {why}. Use a .tif file "
                                  "for {name}.")
    elif kind == VECTOR:
        if ext and ext != ".gpkg":
            try:
                vector_driver(path)
            except OutputError:
                raise OutputPathError(key, f"{{name}} '{path}': no OGR vector format writes '{ext}' files. Use "
                                      "a .gpkg file for {name}.") from None
    elif kind == HTML and ext not in (".html", ".htm"):
        raise OutputPathError(key, f"{{name}} '{path}' is not an .html file. End {{name}} with '.html'.")
    elif kind == MODEL and ext != ".onnx":
        raise OutputPathError(key, f"{{name}} '{path}' is not an .onnx file. End {{name}} with '.onnx'.")


def input_guard(inputs: Paths):
    """A function ``guard(key, path)`` raising :class:`OutputPathError` when ``path`` is one of the files of
    ``inputs`` (key -> path); for outputs named while the work runs (chips, one per sample)."""
    files = {key: _input_files(p) for key, p in inputs.items() if p}

    def guard(key: str, path: str) -> None:
        mine = _output_files(path, CLASS_RASTER)
        for in_key, keys in files.items():
            if mine & keys:
                raise OutputPathError(key, f"{{name}} would write '{path}', the input {{other}}; an input is "
                                      "never overwritten. Choose another folder for {name}.", in_key)
    return guard


def _holds_float32(drv_name: str) -> bool:
    drv = gdal.GetDriverByName(drv_name)
    md = (drv.GetMetadata() or {}) if drv is not None else {}
    return drv_name in ("GTiff", "COG") or "Float32" in (md.get(gdal.DMD_CREATIONDATATYPES) or "").split()


def _key(path: str):
    """The identity of a file: (device, inode) when it exists (hard links too), else its resolved path."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(real))


def _keys(paths: Iterable[str]) -> Set:
    return {_key(p) for p in paths if p}


def _input_files(path: str) -> Set:
    """Identities of an input and every file GDAL lists for it (sidecars, shapefile parts)."""
    files = [str(path)]
    try:
        ds = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_VECTOR | gdal.OF_READONLY)
    except RuntimeError:
        ds = None
    if ds is not None:
        files += list(ds.GetFileList() or [])
        ds = None
    return _keys(files)


def _output_files(path: str, kind: str) -> Set:
    """Identities of the files writing ``path`` of ``kind`` creates or replaces."""
    files = [path]
    stem, ext = os.path.splitext(path)
    if kind in (CLASS_RASTER, FLOAT_RASTER):
        files += [path + s for s in _RASTER_SIDECARS]
    elif kind in (VECTOR, SINK):
        if ext.lower() == ".shp":
            files += [stem + e for e in _SHAPEFILE_PARTS] + [stem + e.upper() for e in _SHAPEFILE_PARTS]
        files += [path + s for s in _SQLITE_SIDECARS]
    return _keys(files)
