"""Installing onnxruntime (and PyTorch for fitting) into a folder owned by the plugin: which interpreter runs
pip, what is held fixed, the resolution check, the install and its failure messages. No QGIS import: the QGIS
side (message-bar notice, ``QgsTask``, log) is ``installer_gui.py``; the terminal side is
``python3 -m ktextures_plugin install`` (``cli/install.py``).

How it works (README.md, "Installing the dependencies"):

1. **The interpreter**: QGIS's real Python, found from ``sys.base_prefix`` and ``sys.version_info`` and
   verified by running it (same version, same base prefix). Never ``sys.executable``: inside QGIS it is the
   QGIS binary on Windows and macOS, and a PATH shim (pyenv, conda) that runs another Python on Linux.
2. **What must not change**: numpy and every installed distribution whose compiled extension modules use
   numpy's C API (GDAL, SciPy, matplotlib, ...): they are built against QGIS's numpy, so they are pinned to
   their installed versions. Pure-Python packages (setuptools, sympy, mpmath, typing-extensions) are not
   pinned: Debian's are often older than a new wheel needs (and Debian's python3-mpmath reports 0.0.0).
3. **A resolution check before any download**: ``pip install --dry-run --report`` with ``PYTHONPATH`` = the
   folder + QGIS's ``sys.path``, so pip sees what QGIS imports and lists only what is missing or too old. It
   reads package metadata only (PEP 658), so a conflict is reported within seconds, naming the packages.
4. **The install**: exactly the resolved ``name==version`` list, ``--no-deps --target <folder>``. ``--target``
   writes only into the folder, so Debian's PEP 668 guard (``externally-managed-environment``) does not apply
   and no system package is touched.
5. **On sys.path** the folder comes before the site-packages folders (:func:`add_to_path`), so the newer
   pure-Python packages it holds are the ones imported; the pinned ones are never in it.
"""
from __future__ import annotations

import json
import mmap
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .core.errors import Canceled, InstallError

#: The pinned packages per feature (kept equal to requirements.txt / requirements-dev.txt by a test).
PACKAGES: Dict[str, List[str]] = {
    "onnxruntime": ["onnxruntime==1.31.1"],
    # fitting: PyTorch, scikit-learn (k-means, the context variant's start) and onnx (the export), none of which
    # Debian's Python has
    "torch": ["torch==2.13.0", "scikit-learn==1.9.1", "onnx==1.23.2"],
}
#: Extra pip options per feature and platform family: the CPU build of PyTorch on Linux (PyPI's Linux wheel
#: pulls several GB of CUDA libraries; Windows and macOS wheels on PyPI are CPU builds already).
EXTRA_INDEX = {("torch", "linux"): ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]}
#: Import names of each feature (all must import for the feature to be there).
MODULES = {"onnxruntime": "onnxruntime", "torch": ("torch", "sklearn", "onnx")}
#: The folder that holds the ``ktextures_plugin`` package (what ``PYTHONPATH`` needs for the terminal command).
PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Byte strings found in an extension module compiled against numpy's C API (``import_array()`` imports the
#: module by this name; numpy 2 renamed it ``numpy._core``).
_NUMPY_ABI = (b"numpy.core.multiarray", b"numpy.core._multiarray_umath", b"numpy._core._multiarray_umath")
_EXTENSION = re.compile(r"\.(cpython-[^.]+\.so|abi3\.so|pyd)$|^[A-Za-z_]\w*\.so$")


def family(platform: str) -> str:
    """'linux', 'windows' or 'macos' from ``sys.platform`` ('linux', 'win32', 'darwin')."""
    if platform.startswith("win"):
        return "windows"
    if platform == "darwin":
        return "macos"
    return "linux"


def target_dir(profile_dir: str, version: Tuple[int, ...] = sys.version_info[:2],
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


def default_profile_dir(platform: str = sys.platform, home: Optional[str] = None,
                        appdata: Optional[str] = None) -> str:
    """The folder of QGIS's ``default`` profile on ``platform`` (the terminal command's default).

    Linux ``~/.local/share/QGIS/QGIS3/profiles/default``, Windows ``%APPDATA%\\QGIS\\QGIS3\\profiles\\default``,
    macOS ``~/Library/Application Support/QGIS/QGIS3/profiles/default`` (QGIS's documentation, "Working with
    user profiles").
    """
    home = home or os.path.expanduser("~")
    fam = family(platform)
    if fam == "windows":
        return "\\".join([appdata or os.environ.get("APPDATA", home), "QGIS", "QGIS3", "profiles", "default"])
    base = (os.path.join(home, "Library", "Application Support") if fam == "macos"
            else os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"))
    return os.path.join(base, "QGIS", "QGIS3", "profiles", "default")


# ------------------------------------------------------------------------------------------ the interpreter
def python_candidates(base_prefix: str, executable: str, platform: str, version: Sequence[int]) -> List[str]:
    """Where the real interpreter of QGIS's Python may be, most likely first; ``executable`` itself never.

    Layouts: Windows OSGeo4W / standalone installer ``<base_prefix>\\python.exe`` (``apps\\Python39``); macOS
    QGIS.app ``Contents/MacOS/bin/python3`` beside the QGIS binary, or ``<base_prefix>/bin/python3.X`` of the
    bundled framework; Linux ``<base_prefix>/bin/python3.X`` (Debian: ``/usr/bin/python3.11``).
    """
    major, minor = version[0], version[1]
    fam = family(platform)
    if fam == "windows":
        return ["\\".join([base_prefix.rstrip("\\"), n]) for n in ("python.exe", "python3.exe")]
    names = [os.path.join(base_prefix, "bin", f"python{major}.{minor}"), os.path.join(base_prefix, "bin",
                                                                                      f"python{major}")]
    if fam == "macos":
        beside = os.path.join(os.path.dirname(executable), "bin")
        names = [os.path.join(beside, f"python{major}"), os.path.join(beside, f"python{major}.{minor}")] + names
    return names


def probe(python: str) -> Optional[Tuple[Tuple[int, ...], str]]:
    """``(version_info[:3], base_prefix)`` reported by running ``python``; None when it does not run."""
    code = "import json, sys; print(json.dumps([list(sys.version_info[:3]), sys.base_prefix]))"
    try:
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=30,
                             **_no_window())
        version, prefix = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return tuple(version), prefix


def _same_python(python: str, version: Sequence[int], base_prefix: str) -> bool:
    got = probe(python)
    return (got is not None and got[0] == tuple(version[:3])
            and os.path.normcase(os.path.realpath(got[1])) == os.path.normcase(os.path.realpath(base_prefix)))


def find_python(base_prefix: str = sys.base_prefix, executable: str = sys.executable,
                platform: str = sys.platform, version: Sequence[int] = sys.version_info[:3],
                check: Optional[Callable[[str], bool]] = None) -> str:
    """The interpreter that runs pip for QGIS's Python: the first candidate that exists and, run, reports the
    same version (major.minor.micro) and base prefix as this Python.

    Raises:
        InstallError: no candidate found; the message lists the places tried.
    """
    check = check or (lambda p: _same_python(p, version, base_prefix))
    tried = python_candidates(base_prefix, executable, platform, version)
    for path in tried:
        if os.path.isfile(path) and check(path):
            return path
    v = ".".join(str(x) for x in version[:3])
    raise InstallError(f"no Python interpreter of QGIS's Python {v} (base prefix {base_prefix}) was found "
                       f"(tried: {', '.join(tried)})",
                       "install the packages with the Python of your QGIS installation: README.md, "
                       "'Installing the dependencies'")


# ------------------------------------------------------------------------------------------ what stays fixed
@dataclass
class Installed:
    """One importable distribution: its name, version and extension-module files (absolute paths)."""

    name: str
    version: str
    extensions: List[str] = field(default_factory=list)


def installed_distributions(search_path: Optional[Sequence[str]] = None,
                            exclude: Sequence[str] = ()) -> List[Installed]:
    """The distributions importable from ``search_path`` (default ``sys.path``), outside the folders ``exclude``,
    each with its compiled extension modules (from its RECORD, else from the packages in ``top_level.txt``)."""
    from importlib import metadata

    skip = [os.path.normcase(os.path.abspath(e)) for e in exclude]
    out = []
    for dist in metadata.distributions(path=list(search_path if search_path is not None else sys.path)):
        where = os.path.normcase(os.path.abspath(str(getattr(dist, "_path", ""))))
        if any(where.startswith(s + os.sep) or where == s for s in skip):
            continue
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            out.append(Installed(name, dist.version, _extensions(dist)))
    return out


def _extensions(dist) -> List[str]:
    """Extension-module files of an importlib.metadata distribution."""
    if dist.files:
        return [str(f.locate()) for f in dist.files if _EXTENSION.search(os.path.basename(str(f)))]
    root = os.path.dirname(str(getattr(dist, "_path", "")))
    found = []
    for top in (dist.read_text("top_level.txt") or "").split():
        pkg = os.path.join(root, top)
        for folder, _dirs, files in os.walk(pkg):
            found += [os.path.join(folder, f) for f in files if _EXTENSION.search(f)]
        found += [os.path.join(root, f) for f in _listdir(root) if f.startswith(top + ".") and _EXTENSION.search(f)]
    return found


def _listdir(folder: str) -> List[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def uses_numpy_abi(path: str) -> bool:
    """True when the extension module ``path`` was compiled against numpy's C API (it names numpy's
    ``multiarray`` module, which ``import_array()`` imports)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return any(m.find(s) >= 0 for s in _NUMPY_ABI)
    except (OSError, ValueError):
        return False


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", (name or "").strip()).lower()


def _public_version(version: str) -> Optional[str]:
    """The public part of a PEP 440 version ('1.24.2+dfsg' -> '1.24.2'); None when it is not one."""
    v = (version or "").split("+")[0].strip()
    return v if re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", v) else None


def constraints(installed: Iterable[Installed], free: Iterable[str] = ()) -> List[str]:
    """The constraint lines that hold fixed what must not change under QGIS: numpy and every distribution with
    an extension module built against numpy's C API, each at its installed version.

    Args:
        installed: what QGIS's Python imports (:func:`installed_distributions`).
        free: names never pinned (the packages being installed).
    Returns:
        sorted ``name==version`` lines, one per normalized name (first on the path wins); distributions whose
        version is not a PEP 440 public version after dropping a local label are left out.
    """
    skip = {_key(n) for n in free}
    seen: Dict[str, str] = {}
    for d in installed:
        key = _key(d.name)
        if key in seen or key in skip:
            continue
        if key == "numpy" or any(uses_numpy_abi(p) for p in d.extensions):
            pub = _public_version(d.version)
            if pub:
                seen[key] = pub
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


# ------------------------------------------------------------------------------------------ pip
@dataclass
class Plan:
    """A resolved install: the distributions pip would put into ``target`` (name, version), and how."""

    feature: str
    python: str
    target: str
    pins: List[str]
    install: List[Tuple[str, str]]


def requirement_names(feature: str) -> List[str]:
    return [re.split(r"[<>=!~; \[]", r, maxsplit=1)[0] for r in PACKAGES[feature]]


def _pip(python: str, feature: str, platform: str) -> List[str]:
    return ([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--only-binary",
             ":all:"] + EXTRA_INDEX.get((feature, family(platform)), []))


def resolve_command(python: str, feature: str, constraints_file: str, report_file: str,
                    platform: str = sys.platform) -> List[str]:
    """The resolution check: ``pip install --dry-run --report`` (downloads no package file)."""
    return (_pip(python, feature, platform) + ["--dry-run", "--report", report_file, "--constraint", constraints_file]
            + list(PACKAGES[feature]))


def install_command(python: str, target: str, plan: Plan, platform: str = sys.platform) -> List[str]:
    """The install of the resolved list into ``target`` (``--no-deps``: pip installs exactly that list)."""
    return (_pip(python, plan.feature, platform) + ["--no-deps", "--upgrade", "--target", target]
            + [f"{n}=={v}" for n, v in plan.install])


def pip_env(target: str, search_path: Sequence[str], extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of the pip runs: ``PYTHONPATH`` = ``target`` + the folders of ``search_path`` (so pip sees
    what QGIS imports, the folder first as at run time), the user's site left to that list."""
    folders = [target] + [p for p in search_path if p and os.path.isdir(p) and p != target]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(folders), PYTHONNOUSERSITE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONHOME", None)
    env.update(extra or {})
    return env


def run_pip(cmd: List[str], on_line: Callable[[str], None], is_canceled: Callable[[], bool] = lambda: False,
            env: Optional[Mapping[str, str]] = None, fix: str = "") -> None:
    """Run ``cmd`` and pass each output line to ``on_line`` as it comes.

    Raises:
        InstallError: pip failed or could not start (:func:`diagnose`; ``fix`` is the by-hand command).
        Canceled: ``is_canceled()`` became True (pip is stopped).
    """
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=dict(env) if env is not None else None, **_no_window())
    except OSError as exc:
        raise InstallError(f"could not start {cmd[0]} ({exc})", fix) from exc
    lines = []
    with proc:
        for line in proc.stdout:
            lines.append(line)
            on_line(line.rstrip())
            if is_canceled():
                proc.kill()
                proc.wait()
                raise Canceled("installation canceled")
        rc = proc.wait()
    if rc != 0:
        raise diagnose("".join(lines[-300:]), rc, fix, python=cmd[0])


def read_report(path: str) -> List[Tuple[str, str]]:
    """(name, version) of each distribution a ``pip install --report`` file lists for installing."""
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in report.get("install", [])]


# ------------------------------------------------------------------------------------------ failures
_NETWORK = (r"NewConnectionError|Temporary failure in name resolution|Failed to establish a new connection|"
            r"Network is unreachable|ProxyError|Max retries exceeded|Could not fetch URL|ConnectTimeout|"
            r"Name or service not known")


def _conflict(output: str) -> Optional[str]:
    """The packages of a resolution conflict, from pip's "The conflict is caused by:" block."""
    if not re.search(r"ResolutionImpossible|conflicting dependencies|Cannot install .* because", output):
        return None
    m = re.search(r"The conflict is caused by:\n((?:[ \t]+\S.*\n?)+)", output)
    lines = [ln.strip() for ln in m.group(1).splitlines()] if m else []
    head = re.search(r"Cannot install (.+?) because", output)
    what = "; ".join(lines) or (head.group(1) if head else "see the log")
    return f"a version conflict ({what})"


def _no_wheel(output: str) -> Optional[str]:
    m = re.search(r"Could not find a version that satisfies the requirement (\S+)(?: \(from versions: ([^)]*)\))?",
                  output) or re.search(r"No matching distribution found for (\S+)", output)
    if not m:
        return None
    versions = m.group(2) if m.lastindex and m.lastindex >= 2 else None
    if re.search(_NETWORK, output) and (versions is None or versions.strip() == "none"):
        return None  # nothing was found because the index could not be reached
    return f"no binary wheel of {m.group(1)} for this Python and platform"


def _cause(output: str, returncode: int) -> str:
    """The first known cause, most specific first: conflict, no wheel, no network, pip missing, others."""
    for finder in (_conflict, _no_wheel):
        found = finder(output)
        if found:
            return found
    for rx, cause in ((_NETWORK, "no network connection to the Python package index (pypi.org)"),
                      (r"No module named pip", "pip is not installed for QGIS's Python"),
                      (r"no such option: --(dry-run|report)", "pip is older than 22.2 (no --dry-run --report)"),
                      (r"externally-managed-environment", "this Python refuses pip installs (PEP 668)"),
                      (r"Permission denied|Access is denied|\[Errno 13\]", "the target folder is not writable"),
                      (r"No space left on device", "the disk is full")):
        if re.search(rx, output):
            return cause
    return f"pip exited with code {returncode}"


def diagnose(output: str, returncode: int, fix: str, platform: str = sys.platform,
             python: str = "python") -> InstallError:
    """The :class:`InstallError` for a failed pip run: its cause (pip's output read cause first) and the fix."""
    cause = _cause(output, returncode)
    fam = family(platform)
    if cause.startswith("pip is not installed"):
        fix = {"linux": "in a terminal: sudo apt install python3-pip (Debian/Ubuntu), then install again",
               "windows": "in the OSGeo4W Shell: python -m ensurepip, then install again",
               "macos": f"in Terminal: {shlex.quote(python)} -m ensurepip, then install again"}[fam]
    elif cause.startswith("pip is older"):
        shell = {"linux": "in a terminal", "windows": "in the OSGeo4W Shell (as administrator)", "macos": "in Terminal"}
        fix = f"{shell[fam]}: {_quote(python, fam)} -m pip install --upgrade pip, then " + fix
    elif cause.startswith("no network"):
        fix = "connect to the internet (or set a proxy: pip config set global.proxy URL), then " + fix
    elif cause.startswith("a version conflict"):
        fix = ("the package needs other versions of packages QGIS is built with; install a QGIS whose Python "
               "has them, or report the conflict (README.md, 'Installing the dependencies'). Check with: " + fix)
    return InstallError(cause, fix)


def manual_command(feature: str, python: str, *, profile_dir: Optional[str] = None, target: Optional[str] = None,
                   platform: str = sys.platform, dry_run: bool = False) -> str:
    """The terminal command that does the same install by hand (``python3 -m ktextures_plugin install``)."""
    fam = family(platform)
    where = "--profile " + _quote(profile_dir, fam) if profile_dir else "--target " + _quote(target or "DIR", fam)
    cmd = f"{_quote(python, fam)} -m ktextures_plugin install {feature} {where}" + (" --dry-run" if dry_run else "")
    if fam == "windows":
        return f"in the OSGeo4W Shell: set PYTHONPATH={_quote(PLUGIN_DIR, fam)} && {cmd}"
    return f"in a {'Terminal' if fam == 'macos' else 'terminal'}: PYTHONPATH={_quote(PLUGIN_DIR, fam)} {cmd}"


def _quote(s: str, fam: str) -> str:
    if fam == "windows":
        return f'"{s}"' if (" " in s or not s) else s
    return shlex.quote(s)


def _no_window() -> dict:
    """Keeps a console window from flashing up on Windows."""
    return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)} if os.name == "nt" else {}


# ------------------------------------------------------------------------------------------ the whole job
def add_to_path(target: str, path: Optional[List[str]] = None) -> bool:
    """Put ``target`` on ``path`` (default ``sys.path``) before its first site-packages folder (after QGIS's
    own and the standard library), so the newer pure-Python packages it holds win; True when added now."""
    path = sys.path if path is None else path
    if not os.path.isdir(target) or target in path:
        return False
    at = next((i for i, p in enumerate(path) if os.path.basename(os.path.normpath(p or "."))
               in ("site-packages", "dist-packages")), len(path))
    path.insert(at, target)
    import importlib
    importlib.invalidate_caches()
    return True


@dataclass
class Options:
    """How :func:`install` runs: the interpreter (None: :func:`find_python`), what QGIS imports (None:
    ``sys.path``), extra environment for pip (tests: a local index), and the platform of the messages."""

    python: Optional[str] = None
    search_path: Optional[Sequence[str]] = None
    env: Dict[str, str] = field(default_factory=dict)
    platform: str = sys.platform


def resolve(feature: str, target: str, on_line: Callable[[str], None],
            is_canceled: Callable[[], bool] = lambda: False, options: Optional[Options] = None,
            fix: str = "") -> Plan:
    """The resolution check: what pip would install into ``target`` for ``feature``, nothing downloaded.

    Raises:
        InstallError: a conflict (naming the packages), no wheel, no network, pip missing ...
        Canceled: canceled.
    """
    opt = options or Options()
    python = opt.python or find_python()
    search = list(opt.search_path if opt.search_path is not None else sys.path)
    pins = constraints(installed_distributions(search, exclude=[target]), free=requirement_names(feature))
    with tempfile.TemporaryDirectory(prefix="ktextures-pip-") as tmp:
        cfile, rfile = os.path.join(tmp, "constraints.txt"), os.path.join(tmp, "report.json")
        with open(cfile, "w", encoding="utf-8") as f:
            f.write("# numpy and the compiled packages built against it, held at QGIS's versions\n")
            f.writelines(p + "\n" for p in pins)
        cmd = resolve_command(python, feature, cfile, rfile, opt.platform)
        on_line("Pinned (must not change under QGIS): " + (", ".join(pins) or "nothing"))
        on_line("$ " + " ".join(cmd))
        run_pip(cmd, on_line, is_canceled, pip_env(target, search, opt.env), fix)
        items = read_report(rfile)
    return Plan(feature, python, target, pins, items)


def install(feature: str, on_line: Callable[[str], None], is_canceled: Callable[[], bool] = lambda: False, *,
            profile_dir: Optional[str] = None, target: Optional[str] = None, dry_run: bool = False,
            options: Optional[Options] = None) -> Plan:
    """Install ``feature`` ('onnxruntime' or 'torch') into ``target`` (default the plugin's folder of
    ``profile_dir``): resolve first (:func:`resolve`), then install the resolved list and put the folder on
    ``sys.path``. With ``dry_run`` only the resolution runs. Returns the plan.

    Raises:
        InstallError: with the cause and a command that works on this platform.
        Canceled: canceled.
    """
    if feature not in PACKAGES:
        raise InstallError(f"unknown package '{feature}'", "choose one of " + ", ".join(PACKAGES))
    opt = options or Options()
    target = target or target_dir(profile_dir or default_profile_dir())
    python = opt.python or find_python(platform=opt.platform)
    by_profile = profile_dir if profile_dir and target == target_dir(profile_dir) else None
    fix = manual_command(feature, python, profile_dir=by_profile, target=target, platform=opt.platform)
    opt = Options(python, opt.search_path, opt.env, opt.platform)
    plan = resolve(feature, target, on_line, is_canceled, opt, fix)
    on_line("To install: " + (", ".join(f"{n} {v}" for n, v in plan.install) or "nothing (all present)"))
    if dry_run or not plan.install:
        return plan
    cmd = install_command(python, target, plan, opt.platform)
    on_line("$ " + " ".join(cmd))
    search = list(opt.search_path if opt.search_path is not None else sys.path)
    run_pip(cmd, on_line, is_canceled, pip_env(target, search, opt.env), fix)
    add_to_path(target)
    return plan
