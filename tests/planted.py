"""Planted anomalies for the novelty tests (core, command line, Processing): patches pasted into a copy of the
bundled sample, and the measurement's rule of "found once" (bench/novelty.py)."""
import numpy as np
from osgeo import gdal

from conftest import SAMPLE, shared

gdal.UseExceptions()

#: tile side of the novelty tests (px)
T = 64


def amazon_patch(size=T):
    """A size x size patch of the Amazon scene (a high-contrast place), in the sample's units (x 10000)."""
    a = gdal.Open(str(shared("s2_amazon/s2_amazon_b2b3b4b8_10m_reflectance.tif"))).ReadAsArray(72, 0, size, size)
    return np.clip(a * 10000, 0, 65535).astype(np.uint16)  # bands B2, B3, B4, B8 as in the sample


def plant(dst, patches):
    """Copy the sample to ``dst`` and paste ``(x, y, (4, h, w) array)`` patches into it."""
    gdal.Translate(str(dst), str(SAMPLE))
    ds = gdal.Open(str(dst), gdal.GA_Update)
    for x, y, arr in patches:
        for b in range(4):
            ds.GetRasterBand(b + 1).WriteArray(np.ascontiguousarray(arr[b]), x, y)
    ds = None
    return dst


def overlaps(window, x, y, size=T):
    wx, wy, ww, wh = window
    return wx < x + size and x < wx + ww and wy < y + size and y < wy + wh


PATCH_XY = (200, 300)   # not on the tile grid: the patch covers parts of four tiles


#: unaligned places (x, y) of a 64 px cloud-like block, the first five as a new user tried them
CLOUD_XY = [(200, 300), (411, 37), (90, 150), (300, 420), (170, 610)]


def cloud(size=T, seed=0):
    """A bright, flat, cloud-like block: values 7000-7300 in all four bands (reflectance x 10000)."""
    return np.random.default_rng(seed).integers(7000, 7301, (4, size, size)).astype(np.uint16)


def stripe(length=80):
    """A seam of 8 bad lines: saturated and dropped lines alternating, all bands."""
    rows = np.where(np.arange(8) % 2 == 0, 4000, 100).astype(np.uint16)
    return np.broadcast_to(rows[None, :, None], (4, 8, length)).copy()


def _sample_percentile(q):
    return np.percentile(gdal.Open(str(SAMPLE)).ReadAsArray().reshape(4, -1), q, axis=1)


def dark_block(size):
    """A dark, flat, water-like block: 0.6 x the sample's 0.5th percentile per band, +-3 % (bench/novelty.py)."""
    jitter = np.random.default_rng(size).uniform(0.97, 1.03, (4, size, size))
    v = (0.6 * _sample_percentile(0.5))[:, None, None] * jitter
    return np.rint(v).astype(np.uint16)


def roof(w, h):
    """A bright roof block, 1.15 x the sample's 99.9th percentile +-7 %, with a dark 2 px edge on two sides."""
    v = (1.15 * _sample_percentile(99.9))[:, None, None] * np.random.default_rng(w).uniform(0.93, 1.07, (4, h, w))
    v[:, -2:, :] = v[:, :, -2:] = _sample_percentile(2)[:, None, None]
    return np.rint(v).astype(np.uint16)


def unaligned(kind):
    """Fixed unaligned plantings of the other kinds for the CLI and QGIS tests: ``(x, y, (4, h, w) array)``."""
    return {"dark": (141, 389, dark_block(40)), "seam": (377, 213, stripe(72).transpose(0, 2, 1).copy()),
            "roof": (59, 627, roof(56, 44)), "dark-large": (405, 555, dark_block(60)),
            "seam-long": (251, 99, stripe(80))}[kind]


def shared_px(window, x, y, w, h):
    wx, wy, ww, wh = window
    return max(0, min(wx + ww, x + w) - max(wx, x)) * max(0, min(wy + wh, y + h) - max(wy, y))


def assert_found_once(windows, x, y, w, h):
    """Rank 1 shows the anomaly (shares at least half of the smaller of tile and anomaly) and no other of
    the first three touches it (shares a tenth of that): the measurement's rule (bench/novelty.py)."""
    need = min(w * h, T * T)
    got = [shared_px(win, x, y, w, h) for win in windows[:3]]
    assert got[0] >= 0.5 * need, (windows[:3], (x, y, w, h))
    assert sum(g >= 0.1 * need for g in got) == 1, (windows[:3], (x, y, w, h))
