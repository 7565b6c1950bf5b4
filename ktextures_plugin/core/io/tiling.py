"""Tile grid with halo and centre crop: every output pixel is written exactly once.

Words, one meaning each, in the whole package:

* **window**: any rectangle of raster pixels, a :class:`Window` ``(xoff, yoff, xsize, ysize)``; the
  *processing window* is the part of the raster a run covers (the whole raster, or the pixels of an extent).
* **tile**: one cell of the tile grid the processing window is cut into (``tile_size`` px a side, smaller at
  the right and bottom edges), a :class:`Tile` with its *core* (the pixels it outputs) and its *read* window
  (the core plus the halo). The model runs once per tile.
* **block**: GDAL's unit of storage in a raster file (``GetBlockSize``, a GeoTIFF tile or strip), which
  sets how many rows a read touches; never a unit of our own work.
* **strip**: a run of whole-width rows processed together (the k-means prediction, the sieve and polygonize
  passes, which read line by line); inside onnxruntime, ``chunk_px`` splits a tile into strips that fit memory.

The processing window is partitioned into *core* tiles of ``tile_size`` x ``tile_size`` pixels (the last
row/column of tiles is smaller). Each core is read with a *halo* of ``halo`` pixels on every side where the
raster has pixels there (clamped to the raster, not to the window, so context outside an extent is used),
the model runs on the read window, and only the core is kept. With ``halo`` >= the model's receptive-field
radius the stitched result equals whole-image inference (docs/method.md §7, centre-crop stitching).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence, Tuple

from ..errors import ParameterError
from . import geo


class Window(NamedTuple):
    """A rectangle of raster pixels: column and row offsets of its top-left pixel, width and height.

    A named tuple, so ``xoff, yoff, xsize, ysize = window`` and a plain 4-tuple given for it keep working.
    """

    xoff: int
    yoff: int
    xsize: int
    ysize: int

    @classmethod
    def from_extent(cls, geotransform: Sequence[float], raster_size: Tuple[int, int], xmin: float, ymin: float,
                    xmax: float, ymax: float) -> "Window":
        """The window of whole pixels covering an extent in the raster's CRS, clipped to the raster
        (``raster_size`` = ``(width, height)``; :func:`.geo.extent_to_window`, as rasterio's ``from_bounds``).

        Raises:
            ParameterError: the extent does not overlap the raster, or the geotransform cannot be inverted.
        """
        return cls(*geo.extent_to_window(geotransform, raster_size, xmin, ymin, xmax, ymax))

    def transform(self, geotransform: Sequence[float]) -> Tuple[float, ...]:
        """The GDAL geotransform of this window, given the raster's (rasterio's ``windows.transform``): the
        origin moves to the window's top-left pixel; pixel size and rotation stay."""
        gt = [float(v) for v in geotransform]
        gt[0] = gt[0] + self.xoff * gt[1] + self.yoff * gt[2]
        gt[3] = gt[3] + self.xoff * gt[4] + self.yoff * gt[5]
        return tuple(gt)

    def bounds(self, geotransform: Sequence[float]) -> Tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of this window in the raster's CRS, given the raster's geotransform
        (rasterio's ``windows.bounds``; the bounding box of the four corners when the raster is rotated)."""
        gt = geotransform
        xs, ys = [], []
        for c, r in ((0, 0), (self.xsize, 0), (0, self.ysize), (self.xsize, self.ysize)):
            col, row = self.xoff + c, self.yoff + r
            xs.append(gt[0] + col * gt[1] + row * gt[2])
            ys.append(gt[3] + col * gt[4] + row * gt[5])
        return min(xs), min(ys), max(xs), max(ys)

    def slices(self) -> Tuple[slice, slice]:
        """``(rows, cols)`` slices of this window in an array whose origin is pixel (0, 0)."""
        return slice(self.yoff, self.yoff + self.ysize), slice(self.xoff, self.xoff + self.xsize)


@dataclass(frozen=True)
class Tile:
    """One tile. ``core`` and ``read`` are raster windows ``(xoff, yoff, xsize, ysize)`` in pixels;
    ``crop`` is the core's position inside the read window ``(x, y)``; ``out`` its position in the output
    (relative to the processing window)."""

    core: Window
    read: Window
    crop: Tuple[int, int]
    out: Tuple[int, int]

    @property
    def core_in_read(self) -> Window:
        """The core as a window of the read array (index the read data with ``core_in_read.slices()``)."""
        return Window(self.crop[0], self.crop[1], self.core.xsize, self.core.ysize)


def iter_tiles(window: Window, raster_size: Tuple[int, int], tile_size: int, halo: int = 0) -> Iterator[Tile]:
    """Tiles covering ``window`` row by row.

    Args:
        window: ``(xoff, yoff, xsize, ysize)`` to process, inside the raster.
        raster_size: ``(width, height)`` of the raster in pixels.
        tile_size: side of a core tile in pixels (>= 1).
        halo: context in pixels read around each core (>= 0).
    """
    if tile_size < 1:
        raise ParameterError(f"tile size must be >= 1 pixel, got {tile_size}")
    if halo < 0:
        raise ParameterError(f"halo must be >= 0 pixels, got {halo}")
    x0, y0, xs, ys = window
    width, height = raster_size
    for ty in range(y0, y0 + ys, tile_size):
        th = min(tile_size, y0 + ys - ty)
        ry0, ry1 = max(0, ty - halo), min(height, ty + th + halo)
        for tx in range(x0, x0 + xs, tile_size):
            tw = min(tile_size, x0 + xs - tx)
            rx0, rx1 = max(0, tx - halo), min(width, tx + tw + halo)
            yield Tile(core=Window(tx, ty, tw, th), read=Window(rx0, ry0, rx1 - rx0, ry1 - ry0),
                       crop=(tx - rx0, ty - ry0), out=(tx - x0, ty - y0))


def count_tiles(window: Window, tile_size: int) -> int:
    """Number of tiles :func:`iter_tiles` yields for ``window``."""
    _, _, xs, ys = window
    return -(-xs // tile_size) * -(-ys // tile_size)
