"""argparse helpers shared by the sub-commands: one-line errors, exit status 2 on bad input."""
import argparse
import sys


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def fail(prog: str, message, names=None) -> int:
    """Print ``prog: error: message`` (first line only) to stderr and return 2; an output-path error
    (``core.outputs.OutputPathError``) is worded with ``names`` (core key -> CLI option)."""
    if names and callable(getattr(message, "message", None)) and hasattr(message, "parameter"):
        message = message.message(names)
    text = str(message).strip().splitlines()[0] if str(message).strip() else type(message).__name__
    sys.stderr.write(f"{prog}: error: {text}\n")
    return 2


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
    """:func:`core.outputs.check_outputs` with messages naming the CLI options (``names``: key -> option);
    returns ``None`` when every output is fine, else the exit status 2 after printing the message."""
    from ..core.outputs import OutputPathError
    from ..core.outputs import check_outputs as check

    try:
        check(outputs, inputs)
    except OutputPathError as exc:
        return fail(prog, exc.message(names))
    return None
