"""argparse helpers shared by the sub-commands: one-line errors, exit status 2 on bad input."""
import argparse
import sys


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def fail(prog: str, message) -> int:
    """Print ``prog: error: message`` (first line only) to stderr and return 2."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else type(message).__name__
    sys.stderr.write(f"{prog}: error: {text}\n")
    return 2
