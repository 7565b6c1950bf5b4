"""The one output-path check of every algorithm and front end: no output may be an input, no two outputs may
share a file, and each output's format must be able to hold it, all checked before any work starts.

What is compared is **the files a run reads against the files it writes** (docs/development.md, "Outputs").
A path is compared by the file it resolves to (``os.path.realpath``, so through symbolic links; the device
and inode when the file exists, so through hard links). The files a run reads, for each input: its whole
file list (``gdal.Dataset.GetFileList``: ``.hdr``, shapefile parts, ...), followed into every file a VRT
refers to, recursively (a VRT of a VRT of ``t1.tif`` reads ``t1.tif``); the sidecars GDAL reads with each of
them whether they exist yet or not (``.aux.xml``, ``.ovr``, ``.msk``); the QGIS style files of the input
(``<stem>.qml``, ``<stem>.sld``); and, for an input given as a list of paths (a ``--dask`` ``.txt`` list),
all of that for every member. The files a run writes, for each output: the file, the sidecars it may write
(``.aux.xml``, ``.ovr``, ``.msk`` of a raster; the parts of a shapefile; ``-wal``/``-shm``/``-journal`` of a
GeoPackage) and, when the front end saves QGIS default styles (``styles=True``), the ``<stem>.qml`` that QGIS
writes beside a raster or a non-GeoPackage vector output.

Errors are :class:`OutputPathError`; each carries ``parameter``, the key of the offending output (``"output"``,
``"vector"``, ...) as the caller named it, so that each front end words the message with its own parameter or
option names (:meth:`OutputPathError.message`).
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from osgeo import gdal
from osgeo_utils.auxiliary.util import GetOutputDriversFor

from ..errors import OutputError, OutputPathError
from .classraster import driver_for_path

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
#: QGIS style files read with a layer (``QgsMapLayer.loadDefaultStyle``, the .sld a user keeps beside it)
_STYLE_FILES = (".qml", ".sld")
#: the vector formats polygons and tile footprints are written in: each is one file (a shapefile: the parts
#: ``atomic.fileset`` knows), so a partial can be renamed into place whole. GML (a schema ``.xsd`` that names
#: the partial file) and VRT (no create method) are refused before any work.
VECTOR_DRIVERS = ("GPKG", "ESRI Shapefile", "GeoJSON", "GeoJSONSeq", "FlatGeobuf", "SQLite", "KML")
#: how deep VRT references are followed (GDAL itself refuses deeper nesting long before)
_MAX_DEPTH = 32
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd")
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")

Paths = Mapping[str, Union[None, str, Sequence[str]]]
Outputs = Mapping[str, Union[Tuple[Optional[str], str], None]]


def vector_driver(path: str) -> str:
    """OGR vector driver short name for the extension of ``path``: GeoPackage for none, KML for ``.kml`` (always
    built, unlike LIBKML), else the first GDAL vector driver that creates files of that extension (GDAL's
    ``osgeo_utils.auxiliary.util.GetOutputDriversFor``).

    Raises:
        OutputError: no OGR vector driver writes that extension.
    """
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in ("", "gpkg", "kml"):
        return {"": "GPKG", "gpkg": "GPKG", "kml": "KML"}[ext]
    drivers = GetOutputDriversFor(path, is_raster=False)
    if drivers:
        return drivers[0]
    raise OutputError(f"No OGR vector format writes '.{ext}' files ({path}); use .gpkg")


def check_outputs(outputs: Outputs, inputs: Paths = None, folders_must_exist: bool = True,
                  styles: bool = False) -> None:
    """Refuse outputs that cannot be written safely, before any work starts; then remove the stale partial
    files of every output left by killed runs (:func:`atomic.remove_stale_partials`).

    Args:
        outputs: key -> ``(path, kind)`` (kind: :data:`CLASS_RASTER`, :data:`FLOAT_RASTER`, :data:`VECTOR`,
            :data:`TABLE`, :data:`HTML`, :data:`MODEL`, :data:`FOLDER`, :data:`SINK`); entries with an empty
            path or ``None`` are skipped.
        inputs: key -> path (or list of paths) of everything the run reads (rasters, VRTs, models, reference
            layers); compared through every file each one reads (:func:`files_read`).
        folders_must_exist: also refuse an output whose folder is missing or not writable.
        styles: the front end saves a QGIS default style beside raster and vector outputs (``<stem>.qml``);
            those files are then outputs too (the QGIS algorithms pass True).

    Raises:
        OutputPathError: an output is a folder (or ends with a path separator), its folder is missing or
            read-only, its format cannot hold it, it writes a file an input reads, or a file of another output.
    """
    from .atomic import remove_stale_partials

    wanted = [(key, str(v[0]), v[1]) for key, v in outputs.items() if v and v[0]]
    input_files = {key: _keys(files_read(p)) for key, p in (inputs or {}).items() if p}
    seen: Dict[str, Set] = {}
    for key, path, kind in wanted:
        _check_shape(key, path, kind, folders_must_exist)
        mine = _keys(files_written(path, kind, styles))
        for in_key, files in input_files.items():
            if mine & files:
                what = _which(path, kind, styles, files) or " is the input {other} or a file read with it"
                raise OutputPathError(key, f"{{name}} '{path}'{what}; an input is never overwritten. Choose "
                                      "another file name for {name}.", in_key)
        for other_key, files in seen.items():
            if mine & files:
                what = _which(path, kind, styles, files, "also written by {other}") or " is the same file as {other}"
                raise OutputPathError(key, f"{{name}} '{path}'{what}, so one output would be lost. Choose another "
                                      "file name for {name}.", other_key)
        _check_format(key, path, kind)
        seen[key] = mine
    for _, path, kind in wanted:
        if kind != FOLDER:
            remove_stale_partials(path)


def _which(path: str, kind: str, styles: bool, keys: Set, whose: str = "read with the input {other}") -> str:
    """``""`` when ``path`` itself is in ``keys``, else `` writes its sidecar 'NAME', a file WHOSE``: the first
    file written for ``path`` (a sidecar, a style file) whose identity is in ``keys``, for a message."""
    if _key(path) in keys:
        return ""
    for f in files_written(path, kind, styles):
        if _key(f) in keys:
            what = "its style file" if f.endswith(".qml") else "its sidecar"
            return f" writes {what} '{os.path.basename(f)}', a file {whose}"
    return ""


def _check_shape(key: str, path: str, kind: str, folders_must_exist: bool) -> None:
    if kind != FOLDER and (path.endswith(("/", os.sep)) or os.path.isdir(path)):
        raise OutputPathError(key, f"{{name}} '{path}' is a folder; give a file name for {{name}}, "
                              f"e.g. '{os.path.join(path, 'output' + _example_ext(kind))}'.")
    if kind == FOLDER and os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(key, f"{{name}} '{path}' is a file, not a folder. Choose a folder for {{name}}.")
    if kind == FOLDER and not os.access(_existing(path), os.W_OK):  # the folder, or where it would be made
        raise OutputPathError(key, f"{{name}} '{path}' cannot be written: '{_existing(path)}' is read-only. "
                              "Choose a folder you can write to for {name}.")
    folder = os.path.dirname(os.path.abspath(path))
    folders_must_exist = folders_must_exist and kind not in (FOLDER, SINK)  # created by the writer
    if folders_must_exist and not os.path.isdir(folder):
        raise OutputPathError(key, f"The folder of {{name}} does not exist: '{folder}'. Create it or choose "
                              "another folder for {name}.")
    if folders_must_exist and not os.access(folder, os.W_OK):
        raise OutputPathError(key, f"The folder of {{name}} is not writable: '{folder}'. Choose a folder you "
                              "can write to for {name}.")


def _existing(path: str) -> str:
    """``path`` or its nearest existing parent folder."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


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
                drv = vector_driver(path)
            except OutputError:
                raise OutputPathError(key, f"{{name}} '{path}': no OGR vector format writes '{ext}' files. Use "
                                      "a .gpkg file for {name}.") from None
            if drv not in VECTOR_DRIVERS:
                raise OutputPathError(key, f"{{name}} '{path}' cannot be written as {ext} ({drv}): polygons are "
                                      "written as .gpkg, .shp, .geojson, .geojsonl, .fgb, .sqlite or .kml. Use a "
                                      ".gpkg file for {name}.")
    elif kind == HTML and ext not in (".html", ".htm"):
        raise OutputPathError(key, f"{{name}} '{path}' is not an .html file. End {{name}} with '.html'.")
    elif kind == MODEL and ext != ".onnx":
        raise OutputPathError(key, f"{{name}} '{path}' is not an .onnx file. End {{name}} with '.onnx'.")


def input_guard(inputs: Paths):
    """A function ``guard(key, path)`` raising :class:`OutputPathError` when writing the raster ``path`` would
    write a file one of ``inputs`` (key -> path) reads; for outputs named while the work runs (chips)."""
    files = {key: _keys(files_read(p)) for key, p in inputs.items() if p}

    def guard(key: str, path: str) -> None:
        mine = _keys(files_written(path, CLASS_RASTER))
        for in_key, keys in files.items():
            if mine & keys:
                raise OutputPathError(key, f"{{name}} would write '{path}', a file the input {{other}} reads; "
                                      "an input is never overwritten. Choose another folder for {name}.", in_key)
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


def files_read(path: Union[str, Sequence[str]]) -> List[str]:
    """Every file reading ``path`` (a dataset, or a list of them) may open or change: the path, GDAL's file
    list of it (``GetFileList``), every file a VRT refers to followed recursively, the sidecars GDAL reads
    with each (``.aux.xml``, ``.ovr``, ``.msk``, listed whether they exist or not), and the QGIS style files
    of each given path but an ``.onnx`` model (``<stem>.qml``, ``<stem>.sld``)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    found: List[str] = []
    seen: Set = set()
    for p in paths:
        p = str(p)
        stem = os.path.splitext(p)[0]
        if not p.lower().endswith(".onnx"):  # a model is no layer: QGIS never reads a style beside it
            found += [stem + e for e in _STYLE_FILES]
        _follow(p, found, seen, 0)
    return found


def _follow(path: str, found: List[str], seen: Set, depth: int) -> None:
    """Add ``path``, its sidecars and (for a dataset GDAL opens) the files of its file list, recursively."""
    key = _key(path)
    if key in seen or depth > _MAX_DEPTH:
        return
    seen.add(key)
    found.append(path)
    found += [path + s for s in _RASTER_SIDECARS]
    if path.lower().endswith(_RASTER_SIDECARS) or not os.path.isfile(path) or (depth and not _is_vrt(path)):
        return  # only VRTs are opened below the input itself: a mosaic of 10,000 GeoTIFFs opens one file
    try:
        ds = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_VECTOR | gdal.OF_READONLY)
        listed = list(ds.GetFileList() or []) if ds is not None else []
    except RuntimeError:
        listed = []
    ds = None
    for f in listed:
        _follow(f, found, seen, depth + 1)


def _is_vrt(path: str) -> bool:
    """Whether ``path`` is a GDAL VRT (its XML starts with ``<VRTDataset``)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(256).lstrip().startswith(b"<VRTDataset")
    except OSError:
        return False


def files_written(path: str, kind: str, styles: bool = False) -> List[str]:
    """The files writing ``path`` of ``kind`` creates or replaces: the file, its sidecars (raster: ``.aux.xml``,
    ``.ovr``, ``.msk``; shapefile parts; GeoPackage ``-wal``/``-shm``/``-journal``) and, with ``styles``, the
    ``<stem>.qml`` QGIS writes beside a raster or a non-GeoPackage vector (a GeoPackage keeps its style
    inside)."""
    files = [path]
    stem, ext = os.path.splitext(path)
    if kind in (CLASS_RASTER, FLOAT_RASTER):
        files += [path + s for s in _RASTER_SIDECARS]
    elif kind in (VECTOR, SINK):
        if ext.lower() == ".shp":
            files += [stem + e for e in _SHAPEFILE_PARTS] + [stem + e.upper() for e in _SHAPEFILE_PARTS]
        files += [path + s for s in _SQLITE_SIDECARS]
    if styles and (kind in (CLASS_RASTER, FLOAT_RASTER) or (kind in (VECTOR, SINK) and ext.lower() != ".gpkg")):
        files.append(stem + ".qml")
    return files
