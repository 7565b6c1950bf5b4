"""Is onnxruntime installed, and how to install it: the check every front end makes before segmenting.

Sessions, execution providers and inference are in :mod:`.segment.inference`.
"""
from __future__ import annotations

INSTALL_HINT = (
    "onnxruntime is not installed in this Python. In QGIS: click 'Install' in the k-textures notice or "
    "Plugins > k-textures > Install onnxruntime (it goes into a folder of your QGIS profile; no system package is "
    "changed). By hand, with QGIS's Python and the plugin folder on PYTHONPATH: 'python3 -m ktextures_plugin "
    "install onnxruntime --profile <QGIS profile folder>'; for the command line, into its venv: "
    "'python -m pip install onnxruntime'. README.md, 'Installing the dependencies'.")


def onnxruntime_available() -> bool:
    """True when ``import onnxruntime`` works (checked without raising)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def require_onnxruntime():
    """Import and return the onnxruntime module.

    Raises:
        RuntimeMissingError: (an ``ImportError``) with :data:`INSTALL_HINT` as message when onnxruntime is not
            installed.
    """
    from .errors import RuntimeMissingError
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeMissingError(INSTALL_HINT) from exc
    return onnxruntime
