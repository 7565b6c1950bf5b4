"""Tile grid with halo and centre crop: every output pixel is written exactly once.

The processing window is partitioned into *core* tiles of ``tile_size`` x ``tile_size`` pixels (the last
row/column of tiles is smaller). Each core is read with a *halo* of ``halo`` pixels on every side where the
raster has pixels there (clamped to the raster, not to the window, so context outside an extent is used),
the model runs on the read window, and only the core is kept. With ``halo`` >= the model's receptive-field
radius the stitched result equals whole-image inference (docs/method.md §7, centre-crop stitching).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Tuple

from .errors import ParameterError


class Window(NamedTuple):
    """A rectangle of raster pixels: column and row offsets of its top-left pixel, width and height.

    A named tuple, so ``xoff, yoff, xsize, ysize = window`` and a plain 4-tuple given for it keep working.
    """

    xoff: int
    yoff: int
    xsize: int
    ysize: int

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
