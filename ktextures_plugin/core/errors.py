"""Every error type of the core, the one cancel signal and the progress callback type.

Each error's message names the problem and the fix in words that hold for every front end. When the fix is to
change one input, the error's ``parameter`` names it with a front-end-neutral key (``"bands"``, ``"scaling"``,
``"nodata"``, ``"extent"``, ``"simulation"``, ...), and each front end (the QGIS algorithms, the command line)
adds its own advice naming the parameter or option its user sees.

This module imports nothing outside the standard library, so that the training package can derive its own
errors from it without importing numpy or GDAL.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

#: ``progress(fraction 0..1, stage)``: the progress callback every long core function accepts.
Progress = Callable[[float, str], None]


class Canceled(Exception):
    """The run was canceled through ``is_canceled``; no output was left behind (unless the function says
    which finished outputs stay)."""


#: How a message names an input when no front end words it (``str(error)``): parameter key -> words.
LABELS = {
    "bands": "the band list",
    "scaling": "the scaling",
    "nodata": "the nodata value",
    "extent": "the extent",
    "tile_size": "the tile size",
    "chip_size": "the chip size",
    "classes": "the class list",
    "min_spacing": "the minimum spacing",
    "simulation": "the simulation output",
    "k": "k",
    "n_select": "the number of selections",
    "image": "the image",
}


class CoreError(Exception):
    """Base of the core's input errors.

    The message may hold ``{name}`` where the offending input is named; each front end fills it in with its own
    parameter or option name (:meth:`message`), ``str(error)`` with the words of :data:`LABELS`.

    Attributes:
        parameter: front-end-neutral key of the input to change (e.g. ``"bands"``), or ``None`` when the fix is
            not one input.
    """

    def __init__(self, *args, parameter: Optional[str] = None) -> None:
        super().__init__(*args)
        self.parameter = parameter

    def message(self, names: Optional[Mapping[str, str]] = None) -> str:
        """The message with ``{name}`` replaced by ``names[parameter]`` (key -> front-end name), else by the
        words of :data:`LABELS`."""
        text = str(self.args[0]) if self.args else ""
        if "{name}" not in text:
            return text
        name = (names or {}).get(self.parameter) or LABELS.get(self.parameter, self.parameter or "")
        return text.replace("{name}", name)

    def __str__(self) -> str:
        return self.message()


class ModelError(CoreError, ValueError):
    """The model file is missing, unreadable or does not follow the k-textures ONNX contract.

    The message names the problem and the fix; the Processing glue shows it as is.
    """


class RasterError(CoreError, ValueError):
    """The raster cannot be read, or the band selection does not fit it; the message names the fix."""


class SamplingError(CoreError, ValueError):
    """Bad input for sampling (not an integer raster, chip too large, image on another grid, ...);
    the message names the fix."""


class OutputError(CoreError, OSError):
    """The output cannot be written (folder missing or read-only, unknown format); names the fix."""


class OutputPathError(OutputError):
    """An output path that would overwrite an input or another output, or a format that cannot hold it.

    Attributes:
        parameter: key of the offending output, as given to ``outputs.check_outputs``.
        other: key of the input or output it collides with, or ``None``.
        template: the message with ``{name}`` (the parameter) and ``{other}`` placeholders.
    """

    def __init__(self, parameter: str, template: str, other: Optional[str] = None):
        self.other, self.template = other, template
        super().__init__(template, parameter=parameter)
        self.args = (self.message(),)

    def message(self, names: Optional[Mapping[str, str]] = None) -> str:
        """The message with parameter names taken from ``names`` (key -> front-end name; default the keys)."""
        names = names or {}
        return self.template.format(name=names.get(self.parameter, self.parameter),
                                    other=names.get(self.other, self.other) if self.other else "")

    def __str__(self) -> str:
        return self.message()


class InstallError(RuntimeError):
    """An install failed; ``cause`` says why, ``fix`` is a command that works on this platform."""

    def __init__(self, cause: str, fix: str):
        super().__init__(f"Installing failed: {cause}. Fix: {fix}")
        self.cause, self.fix = cause, fix
