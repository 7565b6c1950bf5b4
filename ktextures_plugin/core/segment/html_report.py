"""The per-class HTML report of a segmentation: one self-contained file (images embedded as base64 PNG) that
an analyst reads at a glance, and that the QGIS Processing Results Viewer opens.

Per class: the palette colour, a true-colour chip of a typical interior area of the class (the window around
the pixel farthest from the class's edge, found with ``scipy.ndimage.distance_transform_edt`` on a reduced
class raster), a swatch of the class's texture from the model's ``textures`` output (docs/method.md), the
pixel count, area and percent; a bar chart of the areas (matplotlib, imported lazily); the run's parameters,
the model and the timing.
"""
from __future__ import annotations

import base64
import html
import io
import os
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal

from ..io import atomic
from ..io.modelinfo import channel_indices
from .inference import model_textures

gdal.UseExceptions()

#: Side of the reduced class raster searched for interior pixels (pixels).
REDUCED_SIDE_PX = 512
#: Side of a true-colour chip (input pixels) and of a texture swatch (display pixels).
CHIP_PX = 64
SWATCH_PX = 64
#: Colour of the line around the class's pixels on each chip (yellow: stands out on vegetation, water, soil).
OUTLINE_RGB = (255, 230, 0)
#: Display size of chips and swatches in the page (CSS pixels).
THUMB_CSS_PX = 96


@dataclass
class ReportData:
    """Everything the report shows.

    Attributes:
        class_raster: the class raster (0 = nodata, 1..k) written by the run.
        input_path: the raster layer that was segmented (read only, for the true-colour chips).
        rows: per-class rows (``SegmentResult.report_rows``: class_id, class_name, pixels, area_m2, percent).
        colors: k ``"#rrggbb"`` class colours.
        rgb_bands: 1-based input bands of red, green and blue, or ``None`` (then no chips).
        rgb_min, rgb_max: raw values of those bands mapped to 0 and 1 (the run's scaling).
        window: ``(xoff, yoff, xsize, ysize)`` of the input that the class raster covers.
        textures: float ``(k, 3, p, p)`` red, green, blue of the model's textures in scaled units (0..1), or
            ``None`` when the model has no ``textures`` output.
        parameters: parameter name -> value as the front end shows it.
        model: a readable name of the model and its file.
        seconds: wall time of segmenting and polygonizing (s); the report itself is written afterwards.
        execution_provider: the onnxruntime execution provider.
        notes: extra lines (warnings of the run).
        class_raster_label: how to show the class raster instead of its path (a temporary output's path
            disappears when QGIS closes; the front end then names the layer), or ``None``.
    """

    class_raster: str
    input_path: str
    rows: List[dict]
    colors: List[str]
    rgb_bands: Optional[List[int]] = None
    rgb_min: Optional[List[float]] = None
    rgb_max: Optional[List[float]] = None
    window: Tuple[int, int, int, int] = (0, 0, 0, 0)
    textures: Optional[np.ndarray] = None
    parameters: Dict[str, str] = field(default_factory=dict)
    model: str = ""
    seconds: float = 0.0
    execution_provider: str = ""
    notes: List[str] = field(default_factory=list)
    class_raster_label: Optional[str] = None


def from_segment(result, input_path: str, *, session=None, parameters: Optional[Dict[str, str]] = None,
                 seconds: Optional[float] = None, class_raster_label: Optional[str] = None) -> ReportData:
    """The :class:`ReportData` of a ``core.segment.SegmentResult`` of ``input_path``; ``session`` (the
    run's onnxruntime session) gives the texture swatches when the model has a ``textures`` output."""
    info = result.info
    rgb = channel_indices(info.channel_names)
    textures = None
    if session is not None and info.has_textures and rgb is not None:
        textures = model_textures(session, info)[:, rgb]
    return ReportData(
        class_raster=result.path, input_path=input_path, rows=result.report_rows(), colors=list(result.colors),
        rgb_bands=[result.bands[i] for i in rgb] if rgb else None,
        rgb_min=[float(result.scale_min[i]) for i in rgb] if rgb else None,
        rgb_max=[float(result.scale_max[i]) for i in rgb] if rgb else None,
        window=tuple(result.window), textures=textures, parameters=dict(parameters or {}),
        model=f"{info.title or os.path.basename(info.path)} ({info.path})",
        seconds=result.seconds if seconds is None else seconds, execution_provider=result.execution_provider,
        notes=list(result.warnings), class_raster_label=class_raster_label)


def interior_pixels(class_raster: str, k: int, side: int = REDUCED_SIDE_PX) -> List[Optional[Tuple[int, int]]]:
    """For each class 1..k the ``(col, row)`` pixel of ``class_raster`` farthest from the class's edge (and
    from the raster's border), found on a copy reduced to at most ``side`` pixels (GDAL nearest
    resampling); ``None`` for a class without pixels."""
    from scipy import ndimage

    ds = gdal.Open(class_raster)
    try:
        w, h = ds.RasterXSize, ds.RasterYSize
        f = min(1.0, side / max(w, h))
        bw, bh = max(1, round(w * f)), max(1, round(h * f))
        small = ds.GetRasterBand(1).ReadAsArray(buf_xsize=bw, buf_ysize=bh,
                                                resample_alg=gdal.GRIORA_NearestNeighbour)
    finally:
        ds = None
    found = []
    for c in range(1, k + 1):
        mask = np.pad(small == c, 1)
        if not mask.any():
            found.append(None)
            continue
        dist = ndimage.distance_transform_edt(mask)[1:-1, 1:-1]
        r, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
        found.append((min(w - 1, int((col + 0.5) * w / bw)), min(h - 1, int((r + 0.5) * h / bh))))
    return found


def chip_window(data: ReportData, centre: Tuple[int, int], size: int = CHIP_PX) -> Tuple[int, int, int, int]:
    """``(xoff, yoff, xsize, ysize)`` in input pixels of the chip around ``centre`` (class-raster pixel), kept
    inside the input."""
    ds = gdal.Open(data.input_path)
    try:
        x0 = int(np.clip(data.window[0] + centre[0] - size // 2, 0, max(0, ds.RasterXSize - size)))
        y0 = int(np.clip(data.window[1] + centre[1] - size // 2, 0, max(0, ds.RasterYSize - size)))
        return x0, y0, min(size, ds.RasterXSize), min(size, ds.RasterYSize)
    finally:
        ds = None


def class_outline(data: ReportData, window: Tuple[int, int, int, int], class_id: int) -> np.ndarray:
    """bool ``(h, w)`` of the chip ``window`` (input pixels): the pixels just outside class ``class_id``
    (8-neighbours of the class that are not the class), i.e. the line drawn around the class's pixels."""
    from scipy import ndimage

    x0, y0, w, h = window
    cx, cy = x0 - data.window[0], y0 - data.window[1]
    ds = gdal.Open(data.class_raster)
    try:
        full = np.zeros((h, w), bool)
        xa, ya = max(0, cx), max(0, cy)
        xb, yb = min(ds.RasterXSize, cx + w), min(ds.RasterYSize, cy + h)
        if xb > xa and yb > ya:
            full[ya - cy:yb - cy, xa - cx:xb - cx] = ds.GetRasterBand(1).ReadAsArray(
                xa, ya, xb - xa, yb - ya) == class_id
    finally:
        ds = None
    return ndimage.binary_dilation(full, structure=np.ones((3, 3), bool)) & ~full


def read_chip(data: ReportData, centre: Tuple[int, int], size: int = CHIP_PX) -> np.ndarray:
    """float32 ``(3, h, w)`` red, green, blue of the input around ``centre`` (class-raster pixel), scaled to
    0..1 with the run's scaling, clipped to the input; nodata is NaN."""
    x0, y0, w, h = chip_window(data, centre, size)
    ds = gdal.Open(data.input_path)
    try:
        out = np.empty((3, h, w), np.float32)
        for i, b in enumerate(data.rgb_bands):
            band = ds.GetRasterBand(b)
            a = band.ReadAsArray(x0, y0, w, h).astype(np.float32)
            nd = band.GetNoDataValue()
            if nd is not None:
                a[a == nd] = np.nan
            span = (data.rgb_max[i] - data.rgb_min[i]) or 1.0
            out[i] = (a - data.rgb_min[i]) / span
    finally:
        ds = None
    return out


def display_stretch(images: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel 2 and 98 % percentiles over all ``(3, h, w)`` images: one stretch for chips and swatches,
    so that they compare. Returns ``(lo, hi)``, float ``(3,)``."""
    flat = np.concatenate([im.reshape(3, -1) for im in images], axis=1)
    lo, hi = np.nanpercentile(flat, 2, axis=1), np.nanpercentile(flat, 98, axis=1)
    return lo, np.where(hi > lo, hi, lo + 1.0)


def to_rgb8(image: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """uint8 ``(3, h, w)`` of a float ``(3, h, w)`` image stretched from ``lo..hi`` to 0..255 (NaN -> 0)."""
    s = (image - lo[:, None, None]) / (hi - lo)[:, None, None]
    return (np.nan_to_num(np.clip(s, 0, 1), nan=0.0) * 255 + 0.5).astype(np.uint8)


def png_bytes(rgb8: np.ndarray, scale: int = 1) -> bytes:
    """A PNG of a uint8 ``(3, h, w)`` image (enlarged ``scale`` times, nearest), written by GDAL's PNG
    driver in memory (/vsimem)."""
    if scale > 1:
        rgb8 = rgb8.repeat(scale, axis=1).repeat(scale, axis=2)
    _, h, w = rgb8.shape
    mem = gdal.GetDriverByName("MEM").Create("", w, h, 3, gdal.GDT_Byte)
    for i in range(3):
        mem.GetRasterBand(i + 1).WriteArray(rgb8[i])
    name = f"/vsimem/ktextures_{uuid.uuid4().hex}.png"
    gdal.GetDriverByName("PNG").CreateCopy(name, mem)
    mem = None
    try:
        fh = gdal.VSIFOpenL(name, "rb")
        gdal.VSIFSeekL(fh, 0, 2)
        n = gdal.VSIFTellL(fh)
        gdal.VSIFSeekL(fh, 0, 0)
        data = gdal.VSIFReadL(1, n, fh)
        gdal.VSIFCloseL(fh)
    finally:
        gdal.Unlink(name)
    return bytes(data)


def bar_chart_png(rows: Sequence[dict], colors: Sequence[str]) -> Optional[bytes]:
    """A horizontal bar chart of the class areas (hectares) in the class colours, as PNG bytes; ``None``
    when matplotlib is not installed. Uses the Agg canvas directly (no pyplot state: safe in a QGIS
    worker thread). Class names are drawn as typed: matplotlib's mathtext is off for the labels
    (``parse_math=False``), so a name such as ``$\\foo$`` is text, not a formula that fails to parse."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6.0, 0.45 * len(rows) + 1.0), dpi=96)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labels = [f"{r['class_id']} {r['class_name']}" for r in rows]
    ha = [r["area_m2"] / 1e4 for r in rows]
    ax.barh(range(len(rows)), ha, color=list(colors), edgecolor="#333333", linewidth=0.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, parse_math=False)
    ax.invert_yaxis()
    ax.set_xlabel("area (ha)")
    for i, r in enumerate(rows):
        ax.text(ha[i], i, f" {r['percent']:.1f} %", va="center", fontsize=8)
    ax.margins(x=0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def class_images(data: ReportData) -> Tuple[List[Optional[bytes]], List[Optional[bytes]]]:
    """``(chips, swatches)``: per class a PNG of the true-colour chip and of the texture swatch (``None``
    where there is none), stretched together by :func:`display_stretch`."""
    k = len(data.rows)
    chips: List[Optional[np.ndarray]] = [None] * k
    outlines: List[Optional[np.ndarray]] = [None] * k
    if data.rgb_bands:
        for i, centre in enumerate(interior_pixels(data.class_raster, k)):
            if centre is not None:
                chips[i] = read_chip(data, centre)
                outlines[i] = class_outline(data, chip_window(data, centre), int(data.rows[i]["class_id"]))
    swatches: List[Optional[np.ndarray]] = [None] * k
    if data.textures is not None:
        for i in range(min(k, len(data.textures))):
            t = data.textures[i]
            reps = max(1, -(-SWATCH_PX // t.shape[-1]))  # the texture is periodic: tile it
            swatches[i] = np.tile(t, (1, reps, reps))[:, :SWATCH_PX, :SWATCH_PX]
    shown = [a for a in chips + swatches if a is not None and np.isfinite(a).any()]
    if not shown:
        return [None] * k, [None] * k
    lo, hi = display_stretch(shown)

    def enc(a, outline=None):
        if a is None:
            return None
        rgb8 = to_rgb8(a, lo, hi)
        if outline is not None:
            rgb8[:, outline] = np.array(OUTLINE_RGB, np.uint8)[:, None]
        return png_bytes(rgb8, scale=2)

    return [enc(a, o) for a, o in zip(chips, outlines)], [enc(a) for a in swatches]


def _img(png: Optional[bytes], alt: str) -> str:
    if not png:
        return "<span class='none'>-</span>"
    b64 = base64.b64encode(png).decode("ascii")
    return (f"<img src='data:image/png;base64,{b64}' alt='{html.escape(alt, quote=True)}' "
            f"width='{THUMB_CSS_PX}' height='{THUMB_CSS_PX}'>")


def class_table_html(data: ReportData, chips, swatches) -> str:
    """The per-class table: colour, name, chip, swatch, pixels, area (ha), percent."""
    e = html.escape
    out = ["<table class='classes'><tr><th>class</th><th>colour</th><th>name</th><th>image (interior)</th>"
           "<th>model texture</th><th>pixels</th><th>area (ha)</th><th>%</th></tr>"]
    for i, r in enumerate(data.rows):
        color = data.colors[i] if i < len(data.colors) else "#000000"
        out.append(
            f"<tr><td class='num'>{r['class_id']}</td>"
            f"<td><span class='swatch' style='background:{e(color)}'></span> {e(color)}</td>"
            f"<td class='name'>{e(r['class_name'])}</td>"
            f"<td>{_img(chips[i], 'true colour of ' + r['class_name'])}</td>"
            f"<td>{_img(swatches[i], 'texture of ' + r['class_name'])}</td>"
            f"<td class='num'>{r['pixels']:,}</td><td class='num'>{r['area_m2'] / 1e4:,.2f}</td>"
            f"<td class='num'>{r['percent']:.2f}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


_STYLE = ("body{font-family:sans-serif;margin:1em;color:#222}table{border-collapse:collapse;margin:0.5em 0}"
          "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:middle}th{background:#eee}"
          ".num{text-align:right;font-family:monospace}.swatch{display:inline-block;width:1.4em;height:1.4em;"
          "border:1px solid #333;vertical-align:middle}.none{color:#999}.name{font-weight:bold}")


def render_html(data: ReportData) -> str:
    """The whole report as one HTML5 page (images embedded, no external file)."""
    e = html.escape
    chips, swatches = class_images(data)
    chart = bar_chart_png(data.rows, data.colors)
    total_ha = sum(r["area_m2"] for r in data.rows) / 1e4
    params = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in data.parameters.items())
    notes = "".join(f"<li>{e(n)}</li>" for n in data.notes)
    parts = [
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
        f"<title>k-textures: {e(os.path.basename(data.class_raster))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>k-textures segmentation: {len(data.rows)} classes</h1>",
        f"<p>Class raster: {e(data.class_raster_label) if data.class_raster_label else _code(data.class_raster)}"
        f"<br>Input: <code>{e(data.input_path)}</code><br>"
        f"Model: {e(data.model)}<br>Segmenting and polygonizing: {data.seconds:.1f} s ({e(data.execution_provider)}); "
        f"classified area {total_ha:,.2f} ha.</p>",
        "<h2>Classes</h2>", class_table_html(data, chips, swatches),
        "<p>Image: the input in true colour around the pixel farthest from its class's edge; the yellow line "
        "runs around the class's pixels. Model texture: "
        "the class's texture as the model simulates it. Both use one colour stretch.</p>",
        "<h2>Area per class</h2>",
        _img_chart(chart),
        f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "",
        f"<h2>Parameters</h2><table>{params}</table>", "</body></html>"]
    return "\n".join(p for p in parts if p)


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _img_chart(png: Optional[bytes]) -> str:
    if not png:
        return "<p class='none'>No chart: matplotlib is not installed.</p>"
    return f"<img src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}' alt='area per class'>"


def write_html_report(path: str, data: ReportData) -> None:
    """Write :func:`render_html` to ``path`` (UTF-8) atomically (:func:`atomic.atomic_output`), so that a
    failure leaves no half-written report.

    Raises:
        OutputError: the file cannot be written (an ``OSError``: folder, permission, full disk).
    """
    page = render_html(data)
    with atomic.atomic_output(path) as part, open(part.path, "w", encoding="utf-8") as fh:
        fh.write(page)
