"""Installing onnxruntime (and PyTorch for fitting) into a folder owned by the plugin: the pip command line,
the constraints that protect QGIS's own packages, and failure messages. No QGIS, no torch: the QGIS side
(message-bar notice, ``QgsTask``, log) is ``ktextures_plugin/installer_gui.py``.

How it works (README.md, "Installing the dependencies"): QGIS's own interpreter runs
``python -m pip install --target <profile>/python/ktextures-deps/<py3.11-linux-x86_64> --only-binary :all:
-c constraints.txt <pinned packages>``. ``--target`` writes only into that folder, so Debian's PEP 668 guard
(``externally-managed-environment``, raised for system and ``--user`` installs) does not apply and no system
package is touched. pip ignores installed packages with ``--target`` and would fetch e.g. a newer numpy into
the folder; the constraints pin every distribution QGIS's Python can already import to its installed version,
and the folder is *appended* to ``sys.path``, so QGIS's own copies (numpy above all, which GDAL, scipy and
matplotlib are built against) are the ones imported.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import InstallError

#: The pinned packages per feature (kept equal to requirements.txt / requirements-dev.txt by a test).
PACKAGES: Dict[str, List[str]] = {
    "onnxruntime": ["onnxruntime==1.31.1"],
    "torch": ["torch==2.13.0"],
}
#: Extra pip options per feature and platform family: the CPU build of PyTorch on Linux (PyPI's Linux wheel
#: pulls several GB of CUDA libraries; Windows and macOS wheels on PyPI are CPU builds already).
EXTRA_INDEX = {("torch", "linux"): ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]}
#: Import name of each feature.
MODULES = {"onnxruntime": "onnxruntime", "torch": "torch"}


def family(platform: str) -> str:
    """'linux', 'windows' or 'macos' from ``sys.platform`` ('linux', 'win32', 'darwin')."""
    if platform.startswith("win"):
        return "windows"
    if platform == "darwin":
        return "macos"
    return "linux"


def target_dir(profile_dir: str, version: Tuple[int, int] = sys.version_info[:2],
               plat: str = sysconfig.get_platform()) -> str:
    """The plugin's package folder inside a QGIS profile, named by Python version and platform.

    Args:
        profile_dir: the QGIS profile folder (``QgsApplication.qgisSettingsDirPath()``).
        version: (major, minor) of QGIS's Python.
        plat: ``sysconfig.get_platform()`` of that Python, e.g. 'linux-x86_64', 'win-amd64',
            'macosx-11.0-arm64'. Wheels differ by both, so a profile shared by two QGIS builds keeps two folders.
    """
    tag = f"py{version[0]}.{version[1]}-" + re.sub(r"[^A-Za-z0-9_.]+", "_", plat)
    return os.path.join(profile_dir, "python", "ktextures-deps", tag)


def python_candidates(executable: str, exec_prefix: str, platform: str,
                      version: Tuple[int, int]) -> List[str]:
    """Where the real interpreter of an embedded Python may be, most likely first.

    Inside QGIS ``sys.executable`` is the QGIS binary on Windows (``qgis-bin.exe``) and macOS
    (``QGIS.app/Contents/MacOS/QGIS``); Debian's QGIS reports ``/usr/bin/python3``. Layouts: Windows
    OSGeo4W / standalone installer: ``<exec_prefix>\\python.exe`` (``apps\\Python39``); macOS QGIS.app:
    ``Contents/MacOS/bin/python3`` beside the QGIS binary, or ``<exec_prefix>/bin/python3.X`` of the bundled
    framework; Linux: ``<exec_prefix>/bin/python3.X``.
    """
    major, minor = version
    fam = family(platform)
    if fam == "windows":
        names = [os.path.join(exec_prefix, "python.exe"), os.path.join(exec_prefix, "python3.exe"),
                 os.path.join(os.path.dirname(executable), "python.exe"),
                 os.path.join(os.path.dirname(executable), "python3.exe")]
    else:
        names = [os.path.join(exec_prefix, "bin", f"python{major}.{minor}"),
                 os.path.join(exec_prefix, "bin", f"python{major}")]
        if fam == "macos":
            names.insert(0, os.path.join(os.path.dirname(executable), "bin", f"python{major}"))
            names.insert(1, os.path.join(os.path.dirname(executable), "bin", f"python{major}.{minor}"))
    base = os.path.basename(executable).lower()
    if base.startswith("python"):
        names.insert(0, executable)
    seen, out = set(), []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def find_python(executable: str = sys.executable, exec_prefix: str = sys.exec_prefix,
                platform: str = sys.platform, version: Tuple[int, int] = sys.version_info[:2],
                check: Optional[Callable[[str], bool]] = None) -> str:
    """The interpreter that runs pip for QGIS's Python: the first candidate that exists and has the version.

    Raises:
        InstallError: no candidate found; the message lists the places tried.
    """
    check = check or (lambda p: same_version(p, version))
    tried = python_candidates(executable, exec_prefix, platform, version)
    for path in tried:
        if os.path.isfile(path) and check(path):
            return path
    raise InstallError("no Python interpreter for QGIS's Python " f"{version[0]}.{version[1]} was found (tried: "
                       + ", ".join(tried) + ")", manual_command(["python"], platform, "<folder>", []))


def same_version(python: str, version: Tuple[int, int]) -> bool:
    """True when ``python`` runs and reports ``version`` (major, minor)."""
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, **_no_window())
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == f"{version[0]}.{version[1]}"


def _public_version(version: str) -> Optional[str]:
    """The public part of a PEP 440 version ('1.24.2+dfsg' -> '1.24.2'); None when it is not one."""
    v = version.split("+")[0].strip()
    return v if re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", v) else None


def constraints(installed: Iterable[Tuple[str, str]]) -> List[str]:
    """Constraint lines pinning every already importable distribution to its installed version.

    Args:
        installed: (distribution name, version) of what QGIS's Python imports now (outside the target folder).
    Returns:
        sorted ``name==version`` lines, one per normalized name (first seen wins, as on ``sys.path``);
        distributions whose version is not a PEP 440 public version after dropping a local label are left out
        (pip could not satisfy them from PyPI).
    """
    seen: Dict[str, str] = {}
    for name, version in installed:
        key = re.sub(r"[-_.]+", "-", (name or "").strip()).lower()
        pub = _public_version(version or "")
        if key and pub and key not in seen:
            seen[key] = pub
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


def installed_distributions(exclude: Sequence[str] = ()) -> List[Tuple[str, str]]:
    """(name, version) of the distributions importable from ``sys.path``, outside the folders ``exclude``."""
    from importlib import metadata

    skip = [os.path.normcase(os.path.abspath(e)) for e in exclude]
    out = []
    for dist in metadata.distributions():
        where = os.path.normcase(os.path.abspath(str(getattr(dist, "_path", ""))))
        if any(where.startswith(s + os.sep) or where == s for s in skip):
            continue
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            out.append((name, dist.version))
    return out


def pip_command(python: str, target: str, feature: str, constraints_file: str,
                platform: str = sys.platform) -> List[str]:
    """The pip command line (a list for ``subprocess``) that installs ``feature`` into ``target``.

    Args:
        python: the real interpreter (:func:`find_python`).
        target: the plugin's package folder (:func:`target_dir`).
        feature: a key of :data:`PACKAGES` ('onnxruntime' or 'torch').
        constraints_file: path of a file with :func:`constraints` lines.
    """
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--upgrade",
           "--target", target, "--only-binary", ":all:", "--constraint", constraints_file]
    cmd += EXTRA_INDEX.get((feature, family(platform)), [])
    return cmd + list(PACKAGES[feature])


def write_constraints(path: str, lines: Iterable[str]) -> str:
    """Write constraint lines to ``path`` (a comment header first) and return ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Written by k-textures: pins what QGIS's Python already imports (see core/installer.py).\n")
        f.writelines(line + "\n" for line in lines)
    return path


def manual_command(cmd: List[str], platform: str, target: str, packages: Sequence[str]) -> str:
    """A command a user can paste to do the same install by hand on ``platform``."""
    fam = family(platform)
    if len(cmd) > 1:
        line = " ".join(_quote(c, fam) for c in cmd)
    else:
        line = f"{cmd[0]} -m pip install --target {_quote(target, fam)} --only-binary :all: " + " ".join(packages)
    where = {"linux": "in a terminal", "windows": "in the OSGeo4W Shell (Start menu)",
             "macos": "in Terminal"}[fam]
    return f"{where}: {line}"


def _quote(s: str, fam: str) -> str:
    if fam == "windows":
        return f'"{s}"' if (" " in s or not s) else s
    return shlex.quote(s)


#: (regex on pip's output, cause) in order of precedence.
_FAILURES = [
    (r"No module named pip", "pip is not installed for QGIS's Python"),
    (r"externally-managed-environment", "this Python refuses pip installs (PEP 668)"),
    (r"NewConnectionError|Temporary failure in name resolution|Failed to establish a new connection|"
     r"Network is unreachable|ProxyError|Max retries exceeded|Could not fetch URL|ConnectTimeout",
     "no network connection to the Python package index (pypi.org)"),
    (r"ResolutionImpossible|conflicting dependencies|Cannot install .* because",
     "the package needs a version of a package QGIS already uses that differs from QGIS's"),
    (r"No matching distribution found|Could not find a version that satisfies",
     "no binary wheel of the package for this Python and platform"),
    (r"Permission denied|Access is denied|\[Errno 13\]", "the target folder is not writable"),
    (r"No space left on device", "the disk is full"),
]


def diagnose(output: str, returncode: int, cmd: List[str], platform: str = sys.platform) -> InstallError:
    """The :class:`InstallError` for a failed pip run: the first known cause found in pip's output."""
    cause = next((c for rx, c in _FAILURES if re.search(rx, output)), f"pip exited with code {returncode}")
    target = cmd[cmd.index("--target") + 1] if "--target" in cmd else "<folder>"
    fix = manual_command(cmd, platform, target, [])
    fam = family(platform)
    if cause.startswith("pip is not installed"):
        fix = {"linux": "in a terminal: sudo apt install python3-pip (Debian/Ubuntu), then click Install again",
               "windows": "in the OSGeo4W Shell: python -m ensurepip, then click Install again",
               "macos": f"in Terminal: {shlex.quote(cmd[0])} -m ensurepip, then click Install again"}[fam]
    elif cause.startswith("no network"):
        fix = "connect to the internet (or set a proxy: pip config set global.proxy URL), then " + fix
    return InstallError(cause, fix)


def run_pip(cmd: List[str], on_line: Callable[[str], None], is_canceled: Callable[[], bool] = lambda: False,
            platform: str = sys.platform) -> None:
    """Run ``cmd`` and pass each output line to ``on_line`` as it comes.

    Raises:
        InstallError: pip failed or could not start (the message names the cause and a working command).
        InterruptedError: ``is_canceled()`` became True (pip is stopped).
    """
    env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=env, **_no_window())
    except OSError as exc:
        raise InstallError(f"could not start {cmd[0]} ({exc})", manual_command(cmd, platform, "", [])) from exc
    lines = []
    for line in proc.stdout:
        lines.append(line)
        on_line(line.rstrip())
        if is_canceled():
            proc.kill()
            proc.wait()
            raise InterruptedError("installation canceled")
    rc = proc.wait()
    if rc != 0:
        raise diagnose("".join(lines[-200:]), rc, cmd, platform)


def add_to_path(target: str) -> bool:
    """Append ``target`` to ``sys.path`` (after QGIS's own folders) when it exists; True when added now."""
    if os.path.isdir(target) and target not in sys.path:
        sys.path.append(target)
        import importlib
        importlib.invalidate_caches()
        return True
    return False


def _no_window() -> dict:
    """Keeps a console window from flashing up on Windows."""
    return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)} if os.name == "nt" else {}


def install(feature: str, profile_dir: str, on_line: Callable[[str], None],
            is_canceled: Callable[[], bool] = lambda: False, python: Optional[str] = None) -> str:
    """Install ``feature`` ('onnxruntime' or 'torch') into the plugin's folder of ``profile_dir``.

    Finds QGIS's real interpreter (unless ``python`` is given), pins what is already importable, runs pip
    (output line by line to ``on_line``) and puts the folder on ``sys.path``. Returns the folder.

    Raises:
        InstallError: with the cause and a command that works on this platform.
        InterruptedError: canceled.
    """
    target = target_dir(profile_dir)
    python = python or find_python()
    pins = constraints(installed_distributions(exclude=[target]))
    cfile = write_constraints(os.path.join(os.path.dirname(target), "constraints-" + os.path.basename(target)
                                           + ".txt"), pins)
    cmd = pip_command(python, target, feature, cfile)
    on_line("$ " + " ".join(cmd))
    run_pip(cmd, on_line, is_canceled)
    add_to_path(target)
    return target
