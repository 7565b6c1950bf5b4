"""Scaling: the raw values of each band mapped to the model's [0, 1] range, and the check that they fit it.

Two scalings: ``"model"`` (the per-band min/max stored in the model) and ``"stretch"`` (this raster's 2-98 %
percentiles, :func:`..io.raster.percentile_scale`). :func:`range_warnings` flags a raster whose values do not
match the range the model was trained on.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ..errors import ParameterError, RasterError
from ..io import raster
from ..io.modelinfo import ModelInfo

SCALINGS = ("model", "stretch")


def _braces(text: str) -> str:
    return text.replace("{", "(").replace("}", ")")


def resolve_scaling(info: ModelInfo, ds, bands, scaling: str, window, extra_nodata):
    if scaling == "model":
        if info.scale_min is None:
            raise RasterError(f"The model '{_braces(info.path)}' stores no scaling: set {{name}} to 'stretch'.",
                              parameter="scaling")
        return list(info.scale_min), list(info.scale_max)
    if scaling == "stretch":
        return raster.percentile_scale(ds, bands, window, extra_nodata=extra_nodata)
    raise ParameterError(f"scaling must be 'model' or 'stretch', got {scaling!r}")


#: :func:`range_warnings` flags a channel when fewer than this fraction of its sampled pixels fall within the
#: model's scaling range widened by half its span on both sides ...
IN_RANGE_MIN_FRACTION = 0.5
#: ... or when its 2-98 % spread is below this fraction of the model's span (a 0-1 reflectance band against
#: a model scaled in digital numbers).
MIN_SPREAD_FRACTION = 0.01


#: ... and only with at least this many valid sampled pixels.
MIN_PROBE_PIXELS = 64


def range_warnings(probe: np.ndarray, scale_min: Sequence[float], scale_max: Sequence[float],
                   channel_names: Sequence[str], bands: Sequence[int]) -> List[str]:
    """A warning when the raster's values do not match the range the model was trained on.

    A model applies its stored scaling (raw value -> [0, 1]); on a raster in other units (reflectance 0-1
    instead of Sentinel-2 digital numbers, another sensor, another processing level) nearly every pixel
    saturates or collapses to one value and lands in one class. A channel is flagged when fewer than
    :data:`IN_RANGE_MIN_FRACTION` of the sampled pixels fall in ``[min - span/2, max + span/2]``, or its
    2-98 % spread is below :data:`MIN_SPREAD_FRACTION` of the span.

    Args:
        probe: float32 (C, n) valid pixel values in the model's channel order (``raster.sample_windows``).
        scale_min, scale_max: the model's per-channel scaling (raw units).
        channel_names, bands: for the message.

    Returns:
        ``[]`` when the raster fits the model, else one message naming the channels and the fix.
    """
    if probe.shape[-1] < MIN_PROBE_PIXELS:  # too few pixels to tell a spread (a 1 x 1 raster)
        return []
    flagged = []
    for i, (lo, hi) in enumerate(zip(scale_min, scale_max)):
        span = float(hi) - float(lo)
        v = probe[i]
        inside = float(np.mean((v >= lo - span / 2) & (v <= hi + span / 2)))
        p2, p98 = (float(q) for q in np.percentile(v, [2, 98]))
        if inside < IN_RANGE_MIN_FRACTION or (p98 - p2) < MIN_SPREAD_FRACTION * span:
            flagged.append(f"'{channel_names[i]}' (band {bands[i]}): model {lo:g} .. {hi:g}, "
                           f"raster 2-98 % {p2:.4g} .. {p98:.4g}")
    if not flagged:
        return []
    return ["The raster's values do not match the range the model was trained on, so most pixels will likely "
            "fall in one class: " + "; ".join(flagged) + ". If the raster is in other units (e.g. reflectance "
            "0-1 instead of digital numbers), set scaling to 'stretch' or fit a model on this raster."]
