"""Band selection: which raster bands feed the model's channels, from a band list or from band descriptions.

A band list is 1-based GDAL band numbers in the model's channel order (``"3,2,1,4"`` or ``[3, 2, 1, 4]``);
without one, each channel is matched to the band whose description or colour interpretation names it.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

from osgeo import gdal

from ..errors import RasterError
from ..io.modelinfo import ModelInfo

gdal.UseExceptions()

#: Words that identify a channel in a band description (tokens split on non-alphanumerics).
_CHANNEL_WORDS = {
    "red": [{"red"}, {"r"}],
    "green": [{"green"}, {"g"}],
    "blue": [{"blue"}, {"b"}],
    "nir": [{"nir"}, {"near", "infrared"}, {"nearinfrared"}, {"nir08"}],
}
_CHANNEL_GCI = {"red": gdal.GCI_RedBand, "green": gdal.GCI_GreenBand, "blue": gdal.GCI_BlueBand}
#: Sentinel-2 band names, used only when the raster names its bands like Sentinel-2 (B8/B08 present).
_S2_NAMES = {"blue": {"b2", "b02"}, "green": {"b3", "b03"}, "red": {"b4", "b04"}, "nir": {"b8", "b08"}}


def match_bands(ds: gdal.Dataset, channel_names: Sequence[str]) -> List[int]:
    """Default band mapping: the raster band whose description or colour interpretation names each channel.

    Matching, per channel: a description token set containing one of the channel's words (``"B04 red"``
    and ``"Red"`` match red, ``"red edge"`` does not), else the GDAL colour interpretation (RedBand, ...),
    else Sentinel-2 band names (B2/B02 ... B8/B08) when the raster has a band named B8 or B08.

    Returns:
        1-based band numbers in the model's channel order.

    Raises:
        RasterError: a channel matches no band or several bands; the message asks for an explicit mapping.
    """
    descs = [(ds.GetRasterBand(b).GetDescription() or "").strip().lower() for b in range(1, ds.RasterCount + 1)]
    desc_toks = [set(t for t in re.split(r"[^a-z0-9]+", d) if t) for d in descs]
    s2 = any(t & {"b8", "b08"} for t in desc_toks)
    out = []
    for ch in channel_names:
        hits = [i + 1 for i, t in enumerate(desc_toks)
                if "edge" not in t and any(w <= t for w in _CHANNEL_WORDS.get(ch, [{ch}]))]
        if not hits and ch in _CHANNEL_GCI:
            hits = [b for b in range(1, ds.RasterCount + 1)
                    if ds.GetRasterBand(b).GetColorInterpretation() == _CHANNEL_GCI[ch]]
        if not hits and s2 and ch in _S2_NAMES:
            hits = [i + 1 for i, t in enumerate(desc_toks) if t & _S2_NAMES[ch]]
        if len(hits) != 1:
            found = ", ".join(f"{i + 1}: '{d or '-'}'" for i, d in enumerate(descs))
            why = "no band" if not hits else f"bands {hits}"
            raise RasterError(
                f"Cannot tell which band is '{ch}': {why} match by description or colour interpretation "
                f"(bands {_braces(found)}). Set {{name}} to the band numbers for {', '.join(channel_names)} in this "
                f"order, e.g. '3,2,1,4' for a blue,green,red,nir file.", parameter="bands")
        out.append(hits[0])
    if len(set(out)) != len(out):
        raise RasterError(f"The automatic band mapping gave the same band twice ({out}); set {{name}} explicitly.",
                          parameter="bands")
    return out


def _braces(text: str) -> str:
    """``text`` (band descriptions) with ``{`` and ``}`` that cannot be taken for the ``{name}`` placeholder."""
    return text.replace("{", "(").replace("}", ")")


def select_bands(ds: gdal.Dataset, info: ModelInfo, bands=None) -> List[int]:
    """The 1-based input bands feeding the model's channels: ``bands`` parsed and checked against the raster
    (:func:`parse_bands`), or, when empty, matched by band description (:func:`match_bands`).

    Raises:
        RasterError: fewer bands than the model's channels; bad, duplicate or out-of-range bands; a channel
            matched by no band or by several.
    """
    c = info.num_channels
    if ds.RasterCount < c:
        raise RasterError(f"The raster has {ds.RasterCount} band(s) but the model needs {c} "
                          f"({', '.join(info.channel_names)}). Choose a raster with these bands.", parameter="input")
    if bands in (None, "", []):
        return match_bands(ds, info.channel_names)
    return parse_bands(bands, ds.RasterCount, needed=info.num_channels)


def parse_bands(spec, band_count: int, needed: Optional[int] = None) -> List[int]:
    """Turn a band list (``"3,2,1,4"``, ``[3, 2, 1, 4]``) into 1-based GDAL band numbers.

    Args:
        spec: comma-separated string or sequence of ints, 1-based.
        band_count: the raster's band count.
        needed: how many bands the model needs (checked when given).

    Raises:
        RasterError: a band number out of 1..band_count, a non-integer entry, a band given twice, or the
            wrong count.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace(";", ",").split(",") if p.strip()]
    else:
        parts = list(spec)
    try:
        bands = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise RasterError(f"{{name}} must be 1-based band numbers such as '3,2,1,4', got {spec!r}",
                          parameter="bands") from None
    bad = [b for b in bands if b < 1 or b > band_count]
    if bad:
        raise RasterError(f"Band number(s) {bad} out of range: the raster has bands 1..{band_count}",
                          parameter="bands")
    twice = sorted({b for b in bands if bands.count(b) > 1})
    if twice:
        raise RasterError(f"Band(s) {twice} given more than once ({bands}): each channel needs its own band; "
                          "list each band number once", parameter="bands")
    if needed is not None and len(bands) != needed:
        raise RasterError(f"The model needs {needed} bands but {len(bands)} were given ({bands}); "
                          f"list {needed} band numbers in the model's channel order", parameter="bands")
    return bands
