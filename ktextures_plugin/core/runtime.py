"""onnxruntime sessions: lazy import, execution-provider choice, a clear message when it is missing."""
from __future__ import annotations

import json
import os
from typing import List, Optional

from .errors import ModelError
from .modelinfo import K_HALO

INSTALL_HINT = (
    "onnxruntime is not installed in the Python that QGIS uses. In QGIS: click 'Install' in the k-textures "
    "notice or Plugins > k-textures > Install onnxruntime (it goes into a folder of your QGIS profile; no "
    "system package is changed). By hand, Debian/Ubuntu: '/usr/bin/python3 -m pip install --target "
    "~/.local/share/QGIS/QGIS3/profiles/default/python/ktextures-deps/py3.11-linux_x86_64 --only-binary :all: "
    "onnxruntime' (a plain 'pip install --user' is refused on Debian 12, PEP 668); Windows, OSGeo4W Shell: "
    "'python -m pip install onnxruntime'; then restart QGIS. README.md, 'Installing the dependencies'.")


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


# onnxruntime's NCHWc layout transformer blocks convolutions for AVX2/AVX-512 and inserts reorders around the
# element-wise nodes it cannot run blocked. For a per-pixel model (only 1x1 convolutions, halo 0) the reorders
# cost more than they save: ~10-20 % slower on the bench machine; for 3x3 convolutions (the spatial variant)
# it is ~40 % faster, so it stays on there (docs/benchmarks.md, "ELU rewrite").
PER_PIXEL_DISABLED_OPTIMIZERS = ["NchwcTransformer"]


def _per_pixel(session) -> bool:
    """True if the model's metadata declares ``ktextures.halo_px`` 0 (a per-pixel network)."""
    try:
        return json.loads(session.get_modelmeta().custom_metadata_map.get(K_HALO, "null")) == 0
    except Exception:  # noqa: BLE001 - metadata is optional here; read_model_info reports contract errors
        return False


def open_session(path: str, threads: Optional[int] = None, prefer_gpu: bool = True, for_inference: bool = True,
                 allow_spinning: bool = False):
    """Open an ``onnxruntime.InferenceSession`` on ``path``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: onnxruntime's choice, one per core).
        prefer_gpu: use the CUDA execution provider when onnxruntime-gpu is installed.

        for_inference: False for a session only used to read metadata and signatures: skips the tuning below.
        allow_spinning: let onnxruntime's pool threads busy-wait between runs (its default). Off by default:
            ``segment`` reads and decodes the next tiles in another thread, which the spinning starves (segment
            ran 12 % faster with 28 % less CPU time without it, docs/benchmarks.md); on, pure back-to-back
            inference with nothing else running is about 1.2x faster.

    For inference, a per-pixel model (``ktextures.halo_px`` 0) is re-opened with onnxruntime's NCHWc layout
    transformer disabled (:data:`PER_PIXEL_DISABLED_OPTIMIZERS`), which makes it faster on CPU.

    Returns:
        The session; ``session.get_providers()[0]`` is the execution provider that runs it.

    Raises:
        ImportError: onnxruntime missing (message: how to install it).
        ModelError: file missing or not a loadable ONNX model.
    """
    ort = require_onnxruntime()
    if not path or not os.path.isfile(path):
        raise ModelError(f"Model file not found: '{path}'. Choose an existing .onnx file, or leave the model "
                         "file empty to use a bundled model.")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    providers = choose_providers(ort.get_available_providers(), prefer_gpu)
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        raise ModelError(f"Cannot load '{path}' as an ONNX model ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:300]}). The file is corrupt or not ONNX: "
                         "re-export or re-download it.") from None
    if for_inference and providers[0] == "CPUExecutionProvider" and _per_pixel(session):
        try:
            session = ort.InferenceSession(path, sess_options=opts, providers=providers,
                                           disabled_optimizers=PER_PIXEL_DISABLED_OPTIMIZERS)
        except Exception:  # noqa: BLE001 - an onnxruntime without disabled_optimizers: keep the default session
            pass
    return session
