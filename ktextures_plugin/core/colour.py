"""Colour science for the class palettes: sRGB <-> CIELAB (D65) and the CIEDE2000 colour difference.

Sources: CIEDE2000 as written out by G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference
formula: implementation notes, supplementary test data, and mathematical observations", Color Research &
Application 30(1):21-30, 2005 (equations 1-22; tests/core/test_colour.py checks the paper's 34 test pairs).
sRGB and the D65 white point: IEC 61966-2-1:1999.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

#: D65 reference white (X, Y, Z) for Y = 1.
D65 = (0.95047, 1.0, 1.08883)
_M = np.array([[0.4124564, 0.3575761, 0.1804375],
               [0.2126729, 0.7151522, 0.0721750],
               [0.0193339, 0.1191920, 0.9503041]])


def srgb_to_lab(rgb: Sequence[float]) -> Tuple[float, float, float]:
    """CIELAB (L* 0-100, a*, b*) of an sRGB colour given as 0-255 floats (IEC 61966-2-1, D65)."""
    c = np.clip(np.asarray(rgb, float) / 255.0, 0, 1)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = _M @ lin / np.array(D65)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


def lab_to_srgb(lab: Sequence[float]) -> Tuple[np.ndarray, bool]:
    """(sRGB 0-255 float array clipped to the gamut, True when it was inside the gamut) of a CIELAB colour."""
    L, a, b = lab
    fy = (L + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * np.array(D65)
    lin = np.linalg.solve(_M, xyz)
    inside = bool(np.all(lin >= -1e-4) and np.all(lin <= 1 + 1e-4))
    lin = np.clip(lin, 0, 1)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return 255.0 * c, inside


def ciede2000(lab1: Sequence[float], lab2: Sequence[float], kl: float = 1.0, kc: float = 1.0,
              kh: float = 1.0) -> float:
    """The CIEDE2000 colour difference between two CIELAB colours (Sharma et al. 2005, eq. 1-22)."""
    L1, a1, b1 = lab1
    L2, a2, b2 = lab2
    cbar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(cbar ** 7 / (cbar ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    dlp, dcp = L2 - L1, c2p - c1p
    if c1p * c2p == 0:
        dhp = 0.0
    else:
        dhp = h2p - h1p
        dhp = dhp - 360 if dhp > 180 else dhp + 360 if dhp < -180 else dhp
    dHp = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dhp / 2))
    lbp, cbp = (L1 + L2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        hbp = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hbp = (h1p + h2p) / 2
    else:
        hbp = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(hbp - 30)) + 0.24 * math.cos(math.radians(2 * hbp))
         + 0.32 * math.cos(math.radians(3 * hbp + 6)) - 0.20 * math.cos(math.radians(4 * hbp - 63)))
    dtheta = 30 * math.exp(-(((hbp - 275) / 25) ** 2))
    rc = 2 * math.sqrt(cbp ** 7 / (cbp ** 7 + 25.0 ** 7))
    sl = 1 + 0.015 * (lbp - 50) ** 2 / math.sqrt(20 + (lbp - 50) ** 2)
    sc, sh = 1 + 0.045 * cbp, 1 + 0.015 * cbp * t
    rt = -math.sin(math.radians(2 * dtheta)) * rc
    tl, tc, th = dlp / (kl * sl), dcp / (kc * sc), dHp / (kh * sh)
    return math.sqrt(tl * tl + tc * tc + th * th + rt * tc * th)


def delta_e_rgb(c1: Sequence[float], c2: Sequence[float]) -> float:
    """CIEDE2000 between two sRGB colours (0-255)."""
    return ciede2000(srgb_to_lab(c1), srgb_to_lab(c2))


def min_delta_e(colors_rgb: Sequence[Sequence[float]]) -> float:
    """The smallest CIEDE2000 between any two of the sRGB colours (inf for fewer than two)."""
    labs = [srgb_to_lab(c) for c in colors_rgb]
    return min((ciede2000(labs[i], labs[j]) for i in range(len(labs)) for j in range(i)), default=math.inf)


def separate(rgb: Sequence[float], others: Sequence[Sequence[float]], min_de: float) -> np.ndarray:
    """``rgb`` (0-255) moved in lightness and chroma, keeping its hue, until it is at least ``min_de``
    (CIEDE2000) from every colour of ``others``; the nearest such in-gamut colour (in CIEDE2000 to ``rgb``).
    When none is found, the tried colour farthest from ``others`` is returned."""
    lab0 = srgb_to_lab(rgb)
    olabs = [srgb_to_lab(o) for o in others]
    if all(ciede2000(lab0, o) >= min_de for o in olabs):
        return np.asarray(rgb, float)
    L0, a0, b0 = lab0
    best, best_key = np.asarray(rgb, float), (-1.0, 0.0)
    for dl in np.arange(-60, 61, 4.0):
        for cs in (1.0, 1.5, 2.0, 2.5, 3.0, 0.6, 0.3):
            L = L0 + dl
            if not 8 <= L <= 95:
                continue
            cand, inside = lab_to_srgb((L, a0 * cs, b0 * cs))
            if not inside:
                continue
            lab = srgb_to_lab(cand)
            far = min(ciede2000(lab, o) for o in olabs)
            key = (min(far, min_de), -ciede2000(lab, lab0))  # first reach min_de, then stay close to rgb
            if key > best_key:
                best, best_key = cand, key
    return best
