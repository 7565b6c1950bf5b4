"""Every error type of the core, the one cancel signal and the progress callback type.

Each error's message names the problem and the fix in words that hold for every front end. When the fix is to
change one input, the error's ``parameter`` names it with a front-end-neutral key (``"bands"``, ``"scaling"``,
``"nodata"``, ``"extent"``, ``"simulation"``, ...), and each front end (the QGIS algorithms, the command line)
adds its own advice naming the parameter or option its user sees.

This module imports nothing outside the standard library, so that the training package can derive its own
errors from it without importing numpy or GDAL.
"""
from __future__ import annotations

import os
import re
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
    "min_segment_px": "the minimum segment size",
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


class DamagedFileError(RasterError):
    """GDAL failed reading a file that it opened (a truncated or corrupt GeoTIFF, a broken block).

    Attributes:
        path: the file, as GDAL named it.
    """

    def __init__(self, path: str, detail: str = ""):
        self.path = str(path)
        text = f"the file is damaged or truncated: {os.path.basename(self.path) or self.path}"
        if detail:
            text += f" ({detail})"
        super().__init__(text + ". Re-create or re-download it, or check it with 'gdalinfo -checksum'.")


class ParameterError(CoreError, ValueError):
    """A parameter value the core cannot use (out of range, unknown choice, wrong form); names the fix."""


class RuntimeMissingError(CoreError, ImportError):
    """A library the job needs (onnxruntime, torch) is not installed; the message says how to install it.

    Attributes:
        exit_status: the command line's exit status for it (3 for torch, as ``fit`` documents).
    """

    exit_status = 2


class InstallError(CoreError, RuntimeError):
    """An install failed; ``cause`` says why, ``fix`` is a command that works on this platform."""

    def __init__(self, cause: str, fix: str):
        super().__init__(f"Installing failed: {cause}. Fix: {fix}")
        self.cause, self.fix = cause, fix


#: Words of a GDAL RuntimeError that mean a file it opened could not be read (GDAL's TIFF, block and
#: directory readers). A GDAL error naming none of them (or an error from another library) is not a read error.
_READ_ERRORS = ("IReadBlock failed", "TIFFRead", "Read error", "TIFFFetch", "TIFFReadDirectory",
                "Failed to read", "Cannot read",
                "Unexpected end of file", "truncated", "corrupt")
#: Words of a GDAL RuntimeError that mean an output could not be written (full disk, write error).
_WRITE_ERRORS = ("Write error", "disk space", "No space left", "Failed to write", "Cannot write",
                 "Attempt to create new tiff file", "Permission denied", "Read-only file system")
#: Words of a GDAL RuntimeError that mean a file could not be opened at all.
_OPEN_ERRORS = ("not recognized as a supported file format", "No such file or directory",
                "does not exist in the file system")
#: The messages GDAL gives when its progress callback returned 0 (a cancel).
_GDAL_CANCEL = ("User terminated",)

MEMORY_HINT = ("Not enough memory for this run. Use a smaller tile size, an extent, or fewer classes, or close "
               "other programs.")


def gdal_read_error(exc: BaseException, path: Optional[str] = None) -> Optional[DamagedFileError]:
    """The :class:`DamagedFileError` a GDAL ``RuntimeError`` stands for, or None when it is no read error.

    GDAL names the file in most read messages (``"t.tif, band 1: IReadBlock failed at X offset 0 ..."``,
    ``"t.tif: TIFFReadDirectory: ..."``); ``path`` names it otherwise.
    """
    if not isinstance(exc, RuntimeError) or isinstance(exc, CoreError):
        return None
    text = str(exc)
    if not any(word in text for word in _READ_ERRORS):
        return None
    named = re.match(r"^(.+?)(?:, band \d+)?: ", text)
    name = named.group(1) if named and os.path.splitext(named.group(1))[1] else (path or "an input file")
    first = text.splitlines()[0] if text else ""
    return DamagedFileError(name, first[len(named.group(0)):] if named and name == named.group(1) else first)


def is_cancel(exc: BaseException) -> bool:
    """True for the run's cancel signals: :class:`Canceled` (the one the code raises), ``KeyboardInterrupt``
    (Ctrl-C), and GDAL's ``RuntimeError("User terminated")`` when its progress callback stopped it."""
    if isinstance(exc, (Canceled, KeyboardInterrupt)):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc) for word in _GDAL_CANCEL)


def as_core_error(exc: BaseException) -> Optional[CoreError]:
    """The one translation every front end shares: ``exc`` as the :class:`CoreError` its user should see, or
    None when it is no input or system problem (a bug: the front end lets it propagate with its traceback).

    * a :class:`CoreError`: itself;
    * a GDAL ``RuntimeError`` on read: :class:`DamagedFileError` ("the file is damaged or truncated: NAME");
    * an ``OSError`` (writing an output, full disk, read-only folder): :class:`OutputError` naming the file;
    * a ``MemoryError``: a :class:`CoreError` saying what to make smaller;
    * an ``ImportError``: :class:`RuntimeMissingError` naming the missing package.

    Cancels (:func:`is_cancel`) are not errors; front ends test them first.
    """
    if isinstance(exc, CoreError):
        return exc
    damaged = gdal_read_error(exc)
    if damaged is not None:
        return damaged
    if isinstance(exc, OSError):
        name = exc.filename or ""
        what = f" '{name}'" if name else ""
        reason = exc.strerror or str(exc)
        return OutputError(f"Cannot read or write{what}: {reason}. For an output, choose a folder you can write "
                           "to with enough free space.")
    if isinstance(exc, RuntimeError) and any(word in str(exc) for word in _WRITE_ERRORS):
        return OutputError(f"GDAL cannot write or access a file: {str(exc).splitlines()[0]}. For an output, choose "
                           "a folder you can write to with enough free space.")
    if isinstance(exc, RuntimeError) and any(word in str(exc) for word in _OPEN_ERRORS):
        return RasterError(f"GDAL cannot open a file: {str(exc).splitlines()[0]}. Check the path and the format.")
    if isinstance(exc, MemoryError):
        return CoreError(MEMORY_HINT)
    if isinstance(exc, ImportError):
        return RuntimeMissingError(f"A Python package this job needs is missing ({exc}). Install it into the Python "
                                   "that runs k-textures (README.md, 'Installing the dependencies').")
    return None
