"""argparse helpers shared by the sub-commands: one-line errors, exit status 2 on bad input."""
import argparse
import contextlib
import functools
import sys


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def fail(prog: str, message, names=None) -> int:
    """Print ``prog: error: message`` (first line only) to stderr and return 2; an output-path error
    (``core.io.outputs.OutputPathError``) is worded with ``names`` (core key -> CLI option)."""
    if names and callable(getattr(message, "message", None)) and hasattr(message, "parameter"):
        message = message.message(names)
    text = str(message).strip().splitlines()[0] if str(message).strip() else type(message).__name__
    sys.stderr.write(f"{prog}: error: {text}\n")
    return 2


def exit_status(prog, exc: BaseException, names=None):
    """The command line's one translation of an exception: one line on stderr and the exit status, or None
    for an exception that is no input or system problem (a bug, which the caller re-raises with its traceback).

    * a cancel (Ctrl-C, ``Canceled``, GDAL's "User terminated"): ``canceled: no output written``, status 130;
    * a ``CoreError`` (and what :func:`core.errors.as_core_error` maps to one: a GDAL read error, an
      ``OSError``, a ``MemoryError``): its message worded with ``names`` (core key -> option), status 2 (3 when
      PyTorch is missing, as ``fit`` documents).

    ``prog`` None: the line starts with ``error:`` alone.
    """
    from ..core.errors import as_core_error, is_cancel

    lead = f"{prog}: " if prog else ""
    if is_cancel(exc):
        sys.stderr.write(f"{lead}canceled: no output written\n")
        return 130
    err = as_core_error(exc)
    if err is None:
        return None
    text = err.message(names)
    if prog:
        fail(prog, text)
    else:
        _line(text)
    return int(getattr(err, "exit_status", 2))


def _line(text) -> None:
    text = str(text).strip()
    sys.stderr.write(f"error: {text.splitlines()[0] if text else 'unknown error'}\n")


def front_end(prog, names=None):
    """Decorator of a sub-command's ``main(argv) -> int``: every exception it lets out goes through
    :func:`exit_status` (no traceback for bad input, a full disk, Ctrl-C); a bug keeps its traceback. The
    command is one all-or-nothing run (``core.io.atomic.all_or_nothing``): when it fails (an exception or a
    non-zero status), every output it had written is removed."""
    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            from ..core.io.atomic import all_or_nothing
            with all_or_nothing() as one_run:
                try:
                    status = main(argv)
                except SystemExit:
                    raise
                except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt is translated too
                    status = exit_status(prog, exc, names)
                    if status is None:
                        raise
                if status:
                    one_run.discard()
                return status
        return run
    return wrap


def int_range(lo: int, hi=None):
    """An argparse ``type`` for an integer in ``lo..hi`` (``hi`` None: no upper bound); argparse names the
    option in the error (``argument --tile-size: must be an integer >= 32, got 0``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value
    return parse


def check_outputs(prog: str, names, outputs, inputs):
    """:func:`core.io.outputs.check_outputs` with messages naming the CLI options (``names``: key -> option);
    returns ``None`` when every output is fine, else the exit status 2 after printing the message."""
    from ..core.io.outputs import OutputPathError
    from ..core.io.outputs import check_outputs as check

    try:
        check(outputs, inputs)
    except OutputPathError as exc:
        return fail(prog, exc.message(names))
    return None


#: The option every reading command offers to read Alpha-tagged bands as data (QGIS: IGNORE_MASK_BANDS).
IGNORE_MASK_OPTION = "--ignore-mask-bands"


def add_mask_option(parser) -> None:
    """Add :data:`IGNORE_MASK_OPTION` to ``parser``."""
    parser.add_argument(IGNORE_MASK_OPTION, action="store_true",
                        help="read bands tagged Alpha (colour interpretation) as data: GDAL otherwise takes such a "
                             "band as the mask of every band (nodata values and .msk files still apply)")


@contextlib.contextmanager
def input_view(path: str, ignore_mask_bands: bool):
    """The input path to give the core: ``path``, or an in-memory view of it without Alpha masks
    (``core.io.raster.without_mask_bands``); without the option, a warning on stderr for each Alpha band that
    masks pixels (``core.io.raster.alpha_mask_warnings``)."""
    from ..core.io import raster
    if not ignore_mask_bands:
        for w in raster.alpha_mask_warnings(path, IGNORE_MASK_OPTION):
            sys.stderr.write(f"warning: {w}\n")
    with raster.without_mask_bands(path, ignore_mask_bands) as view:
        yield view
