"""One feedback object for long core jobs: progress, cancel, information and warnings.

The core's peer of ``QgsProcessingFeedback`` (``setProgress``, ``isCanceled``, ``pushInfo``, ``pushWarning``):
each front end builds one :class:`Feedback` from its own channels (the QGIS feedback, a progress bar and
stderr) and hands it to the core call, which reports through it and polls it. Cancel has one signal: the core
raises :class:`.errors.Canceled` when :meth:`Feedback.is_canceled` turns true.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from .errors import Canceled, Progress


class Feedback:
    """Progress, cancel, information and warnings of one run (every channel optional).

    Args:
        progress: ``progress(fraction 0..1, stage)``; the stage names the step ("segment", "sieve", ...).
        is_canceled: ``is_canceled() -> bool``, polled between tiles or windows.
        info: receives one-line messages (execution provider, bands, scaling).
        warning: receives warnings as they arise (default: ``info`` with a "Warning: " prefix).

    Attributes:
        warnings: every warning pushed through this object, in order.
    """

    def __init__(self, progress: Optional[Progress] = None, is_canceled: Optional[Callable[[], bool]] = None,
                 info: Optional[Callable[[str], None]] = None,
                 warning: Optional[Callable[[str], None]] = None) -> None:
        self._progress, self._is_canceled, self._info, self._warning = progress, is_canceled, info, warning
        self.warnings: List[str] = []

    def progress(self, fraction: float, stage: str = "") -> None:
        """Report ``fraction`` (0..1) of the stage ``stage`` done."""
        if self._progress:
            self._progress(fraction, stage)

    def share(self, start: float, end: float) -> "Feedback":
        """A feedback for one step of this run: its progress 0..1 is reported as ``start``..``end`` (fractions
        of this one), with the same stage names, cancel and information; its warnings are this one's too."""
        def progress(fraction: float, stage: str = "") -> None:
            self.progress(start + (end - start) * max(0.0, min(1.0, fraction)), stage)

        return Feedback(progress, self._is_canceled, self.info, self.warning)

    def is_canceled(self) -> bool:
        """True once the user asked to stop."""
        return bool(self._is_canceled and self._is_canceled())

    def check_canceled(self) -> None:
        """Raise :class:`.errors.Canceled` when :meth:`is_canceled`."""
        if self.is_canceled():
            raise Canceled()

    def info(self, message: str) -> None:
        """One line of information."""
        if self._info:
            self._info(message)

    def warning(self, message: str) -> None:
        """A warning: kept in :attr:`warnings` and handed to the warning channel (default: :meth:`info`)."""
        self.warnings.append(message)
        if self._warning:
            self._warning(message)
        else:
            self.info("Warning: " + message)
