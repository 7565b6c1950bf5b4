"""onnxruntime sessions: lazy import, execution-provider choice, a clear message when it is missing."""
from __future__ import annotations

import os
from typing import List, Optional

INSTALL_HINT = (
    "onnxruntime is not installed in the Python that QGIS uses. Install it into that Python, e.g. on "
    "Debian/Ubuntu: '/usr/bin/python3 -m pip install --user onnxruntime' (or onnxruntime-gpu for CUDA); "
    "on Windows, from the OSGeo4W Shell: 'python -m pip install onnxruntime'; then restart QGIS.")


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
        ImportError: with :data:`INSTALL_HINT` as message when onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return onnxruntime


def choose_providers(available: List[str], prefer_gpu: bool = True) -> List[str]:
    """Execution providers to ask for, best first: CUDA when onnxruntime-gpu offers it, then CPU."""
    chosen = []
    if prefer_gpu and "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def open_session(path: str, threads: Optional[int] = None, prefer_gpu: bool = True):
    """Open an ``onnxruntime.InferenceSession`` on ``path``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: onnxruntime's choice, one per core).
        prefer_gpu: use the CUDA execution provider when onnxruntime-gpu is installed.

    Returns:
        The session; ``session.get_providers()[0]`` is the execution provider that runs it.

    Raises:
        ImportError: onnxruntime missing (message: how to install it).
        ModelError: file missing or not a loadable ONNX model.
    """
    from .modelinfo import ModelError

    ort = require_onnxruntime()
    if not path or not os.path.isfile(path):
        raise ModelError(f"Model file not found: '{path}'. Choose an existing .onnx file, or leave the model "
                         "file empty to use a bundled model.")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(path, sess_options=opts,
                                    providers=choose_providers(ort.get_available_providers(), prefer_gpu))
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        raise ModelError(f"Cannot load '{path}' as an ONNX model ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:300]}). The file is corrupt or not ONNX: "
                         "re-export or re-download it.") from None
