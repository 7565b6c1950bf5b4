"""The dependency installer (installer.py, installer_gui.py, ``python3 -m ktextures_plugin install``): the real
interpreter behind a PATH shim, what is pinned, the resolution check before any download, failure messages read
cause first, and real pip runs against a local index of tiny wheels built here (no network): the Debian case
(old setuptools, sympy and mpmath 0.0.0 present) resolves and installs; a genuine conflict is reported as one,
naming the package, before anything is installed. A real install of onnxruntime from the package index, then
imported in a fresh QGIS process, runs when the index is reachable."""
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import ROOT
from ktextures_plugin import installer

OSGEO4W = dict(executable=r"C:\OSGeo4W\bin\qgis-bin.exe", base_prefix=r"C:\OSGeo4W\apps\Python39",
               platform="win32", version=(3, 9, 18))
MACOS = dict(executable="/Applications/QGIS.app/Contents/MacOS/QGIS",
             base_prefix="/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.9",
             platform="darwin", version=(3, 9, 18))
DEBIAN = dict(executable="/root/.pyenv/shims/python3", base_prefix="/usr", platform="linux", version=(3, 11, 2))
debian_only = pytest.mark.skipif(not os.path.exists("/usr/bin/python3") or sys.base_prefix != "/usr",
                                 reason="Debian's /usr/bin/python3 (the tests' venv is built from it)")


def test_real_interpreter_is_found_for_each_layout(tmp_path):
    win = installer.python_candidates(**OSGEO4W)
    assert win[0] == r"C:\OSGeo4W\apps\Python39\python.exe" and not any("qgis-bin" in c for c in win)
    mac = installer.python_candidates(**MACOS)
    assert mac[0] == "/Applications/QGIS.app/Contents/MacOS/bin/python3"
    assert "/Applications/QGIS.app/Contents/MacOS/QGIS" not in mac
    assert installer.python_candidates(**DEBIAN)[0] == "/usr/bin/python3.11"
    assert not any("pyenv" in c for c in installer.python_candidates(**DEBIAN))  # the shim is never a candidate
    with pytest.raises(installer.InstallError, match="no Python interpreter"):
        installer.find_python(check=lambda p: True, **OSGEO4W)  # nothing exists: the QGIS binary is not taken


@debian_only
def test_a_path_shim_is_not_taken_and_a_candidate_is_run_to_verify_it(tmp_path):
    # QGIS with pyenv first on PATH: sys.executable is the shim; the real interpreter comes from base_prefix
    here = dict(DEBIAN, version=sys.version_info[:3])
    assert os.path.realpath(installer.find_python(**here)) == os.path.realpath("/usr/bin/python3.11")
    # a candidate that runs but is another Python (reports another base prefix) is rejected
    fake = tmp_path / "prefix"
    (fake / "bin").mkdir(parents=True)
    for name in ("python3.11", "python3"):
        (fake / "bin" / name).write_text("#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n")
        (fake / "bin" / name).chmod(0o755)
    assert installer.probe(str(fake / "bin" / "python3.11"))[1] == "/usr"
    with pytest.raises(installer.InstallError, match="no Python interpreter"):
        installer.find_python(**dict(here, base_prefix=str(fake)))


@pytest.mark.parametrize("layout", [DEBIAN, OSGEO4W, MACOS])
def test_command_lines_for_each_layout(layout):
    plat = {"linux": "linux-x86_64", "win32": "win-amd64", "darwin": "macosx-11.0-arm64"}[layout["platform"]]
    target = installer.target_dir("/profiles/default", layout["version"], plat)
    assert re.search(rf"ktextures-deps.py{layout['version'][0]}\.{layout['version'][1]}-\w", target)
    check = installer.resolve_command("PY", "torch", "c.txt", "r.json", platform=layout["platform"])
    assert check[:4] == ["PY", "-m", "pip", "install"] and "--dry-run" in check
    assert check[check.index("--report") + 1] == "r.json" and check[check.index("--constraint") + 1] == "c.txt"
    assert "--target" not in check and check[-3:] == installer.PACKAGES["torch"]  # torch, scikit-learn, onnx
    assert ("https://download.pytorch.org/whl/cpu" in check) == (layout is DEBIAN)  # CPU build on Linux
    plan = installer.Plan("onnxruntime", "PY", target, [], [("onnxruntime", "1.31.1"), ("protobuf", "7.1")])
    cmd = installer.install_command("PY", target, plan, platform=layout["platform"])
    assert cmd[cmd.index("--target") + 1] == target and cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert "--no-deps" in cmd and cmd[-2:] == ["onnxruntime==1.31.1", "protobuf==7.1"]
    assert "--user" not in cmd + check and "--break-system-packages" not in cmd + check


def test_by_hand_command_uses_the_terminal_installer():
    fix = installer.manual_command("torch", "/usr/bin/python3.11", profile_dir="/home/a b/QGIS3/profiles/work")
    assert "PYTHONPATH=" + installer.PLUGIN_DIR in fix
    assert "/usr/bin/python3.11 -m ktextures_plugin install torch --profile '/home/a b/QGIS3/profiles/work'" in fix
    win = installer.manual_command("onnxruntime", r"C:\OSGeo4W\apps\Python39\python.exe", target=r"C:\d e",
                                   platform="win32")
    assert win.startswith("in the OSGeo4W Shell: set PYTHONPATH=") and r'--target "C:\d e"' in win
    assert "profiles" + os.sep + "default" in installer.default_profile_dir(home="/h")


def _so(folder, name, numpy_abi):
    p = folder / name
    p.write_bytes(b"\x7fELF..." + (b"numpy.core.multiarray\x00_ARRAY_API" if numpy_abi else b"PyInit_x"))
    return str(p)


def test_pins_numpy_and_its_compiled_users_only(tmp_path):
    dists = [installer.Installed("numpy", "1.24.2"),
             installer.Installed("GDAL", "3.6.2+dfsg", [_so(tmp_path, "_gdal_array.cpython-311.so", True)]),
             installer.Installed("PyYAML", "6.0", [_so(tmp_path, "_yaml.cpython-311.so", False)]),
             installer.Installed("setuptools", "66.1.1"), installer.Installed("mpmath", "0.0.0"),
             installer.Installed("onnxruntime", "1.20.0", [_so(tmp_path, "ort.cpython-311.so", True)]),
             installer.Installed("NumPy", "2.0.0")]
    assert installer.constraints(dists, free=["onnxruntime"]) == ["gdal==3.6.2", "numpy==1.24.2"]


@debian_only
def test_pins_of_debians_python_hold_numpy_gdal_scipy_not_build_tools():
    pins = installer.constraints(installer.installed_distributions(_debian_path()))
    names = {p.split("==")[0] for p in pins}
    assert "numpy==1.24.2" in pins and {"gdal", "scipy"} <= names
    assert not names & {"setuptools", "sympy", "mpmath", "typing-extensions", "packaging", "jinja2"}


def test_pins_match_requirements():
    req = (ROOT / "requirements.txt").read_text() + (ROOT / "requirements-dev.txt").read_text()
    for pins in installer.PACKAGES.values():
        for pin in pins:
            assert re.search(rf"^{re.escape(pin)}$", req, re.M), pin


NET = "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection'): /whl/cpu/sympy/\n"
CONFLICT = ("ERROR: Cannot install torch==2.13.0 because these package versions have conflicting dependencies.\n\n"
            "The conflict is caused by:\n    torch 2.13.0 depends on setuptools>=77.0.3\n"
            "    The user requested (constraint) setuptools==66.1.1\n\n"
            "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io\n")


@pytest.mark.parametrize("output,cause", [
    (NET + CONFLICT, "a version conflict (torch 2.13.0 depends on setuptools>=77.0.3; The user requested"),
    (NET + "ERROR: Could not find a version that satisfies the requirement onnxruntime==9 (from versions: 1.30.0, "
           "1.31.1)\nERROR: No matching distribution found for onnxruntime==9\n", "no binary wheel of onnxruntime==9"),
    (NET + "ERROR: Could not find a version that satisfies the requirement torch==2.13.0 (from versions: none)\n",
     "no network connection"),
    ("/usr/bin/python3: No module named pip\n", "pip is not installed"),
    ("pip: error: no such option: --dry-run\n", "pip is older than 22.2"),
])
def test_failures_name_the_cause_first(output, cause):
    fix = installer.manual_command("torch", "/usr/bin/python3", profile_dir="/p")
    err = installer.diagnose(output, 1, fix, platform="linux", python="/usr/bin/python3")
    assert err.cause.startswith(cause), err.cause
    assert ("ktextures_plugin install torch" in err.fix) != ("pip is not installed" in cause)
    if cause.startswith("pip is"):  # pip itself needs fixing: said for the platform
        assert "OSGeo4W Shell" in installer.diagnose(output, 1, fix, platform="win32").fix


def test_folder_goes_before_site_packages(tmp_path):
    path = ["/usr/share/qgis/python", "/usr/lib/python3.11", "/usr/local/lib/python3.11/dist-packages",
            "/usr/lib/python3/dist-packages"]
    assert installer.add_to_path(str(tmp_path), path)
    assert path.index(str(tmp_path)) == 2 and not installer.add_to_path(str(tmp_path), path)


def test_notice_has_an_install_button(qgis_iface, monkeypatch):
    from qgis.PyQt.QtWidgets import QPushButton

    from ktextures_plugin import installer_gui
    monkeypatch.setitem(installer.MODULES, "onnxruntime", "ktextures_no_such_module")
    inst = installer_gui.Installer(qgis_iface)
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    inst.notice("onnxruntime")
    item = bar.currentItem()
    assert item is not None and "onnxruntime is not installed" in item.text()
    assert [b.text() for b in item.findChildren(QPushButton)] == ["Install"]
    monkeypatch.setitem(installer.MODULES, "onnxruntime", "json")
    bar.clearWidgets()
    inst.notice("onnxruntime")  # importable: no notice
    assert bar.currentItem() is None
    hint = installer_gui.manual_hint("torch")  # the by-hand fix names this QGIS's profile, not "default"
    from qgis.core import QgsApplication
    assert "-m ktextures_plugin install torch --profile" in hint and QgsApplication.qgisSettingsDirPath() in hint


def test_clicking_install_starts_the_install_and_removes_the_notice(qgis_iface, monkeypatch):
    """A real click on the notice's button (a visible bar, as in the main window): the install starts and the
    notice goes."""
    from qgis.PyQt.QtCore import QCoreApplication
    from qgis.PyQt.QtWidgets import QPushButton

    from ktextures_plugin import installer_gui
    monkeypatch.setitem(installer.MODULES, "onnxruntime", "ktextures_no_such_module")
    inst = installer_gui.Installer(qgis_iface)
    started = []
    monkeypatch.setattr(inst, "start", lambda f, dialog_bar=None: started.append((f, dialog_bar)))  # no pip
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    bar.show()
    inst.notice("onnxruntime")
    button = bar.currentItem().findChildren(QPushButton)[0]
    button.click()
    for _ in range(3):
        QCoreApplication.processEvents()
    assert started == [("onnxruntime", None)]  # the main window's notice: progress in the main window
    assert bar.currentItem() is None


# ---------------------------------------------------------------------------------------------- a local index
def wheel(folder, name, version, requires=()):
    """A minimal pure-Python wheel (PEP 427) of ``name`` with the given Requires-Dist lines."""
    mod = re.sub(r"[-.]", "_", name).lower()
    info = f"{mod}-{version}.dist-info"
    files = {f"{mod}/__init__.py": f"__version__ = {version!r}\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"
             + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(text):
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record = "".join(f"{k},sha256={digest(v)},{len(v.encode())}\n" for k, v in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in list(files.items()) + [(f"{info}/RECORD", record)]:
            z.writestr(k, v)
    return path


def _debian_path():
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _local_index(folder):
    """pip sees only ``folder`` (no configuration file, no index)."""
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder)}


@pytest.fixture
def index(tmp_path):
    d = tmp_path / "wheels"
    d.mkdir()
    for name, version, req in (
            ("ktx-demo", "1.0", ["setuptools>=77.0.3", "sympy>=1.13.3", "mpmath>=1.1", "numpy>=1.21.6"]),
            ("ktx-numpy2", "1.0", ["numpy>=2.0"]),
            ("setuptools", "80.9.0", []), ("sympy", "1.13.3", ["mpmath<1.4,>=1.1.0"]), ("mpmath", "1.3.0", []),
            ("numpy", "2.0.0", [])):
        wheel(d, name, version, req)
    return d


@debian_only
def test_debian_case_resolves_and_installs_from_a_local_index(index, tmp_path, monkeypatch):
    # Debian 12's Python has setuptools 66.1.1, sympy 1.11.1 and mpmath "0.0.0": a package that needs newer ones
    # resolves (they go into the folder) while numpy stays QGIS's (pinned, satisfied, not downloaded)
    monkeypatch.setitem(installer.PACKAGES, "demo", ["ktx-demo==1.0"])
    opts = installer.Options(search_path=_debian_path(), env=_local_index(index))
    lines, target = [], tmp_path / "deps"
    plan = installer.install("demo", lines.append, target=str(target), options=opts)
    assert "numpy==1.24.2" in plan.pins and not [p for p in plan.pins if p.startswith(("setuptools", "sympy", "mpm"))]
    assert sorted(plan.install) == [("ktx-demo", "1.0"), ("mpmath", "1.3.0"), ("setuptools", "80.9.0"),
                                    ("sympy", "1.13.3")]
    assert os.path.isfile(target / "ktx_demo" / "__init__.py") and not (target / "numpy").exists()
    assert [ln for ln in lines if ln.startswith("$ ")][0].count("--dry-run") == 1
    # a second run finds everything in the folder: nothing more to install
    assert installer.install("demo", lines.append, target=str(target), options=opts).install == []


@debian_only
def test_conflict_is_reported_as_a_conflict_before_downloading(index, tmp_path, monkeypatch):
    monkeypatch.setitem(installer.PACKAGES, "demo", ["ktx-numpy2==1.0"])
    lines, target = [], tmp_path / "deps"
    t0 = time.perf_counter()
    with pytest.raises(installer.InstallError) as ei:
        installer.install("demo", lines.append, target=str(target),
                          options=installer.Options(search_path=_debian_path(), env=_local_index(index)))
    assert time.perf_counter() - t0 < 60
    assert ei.value.cause.startswith("a version conflict") and "numpy" in ei.value.cause, ei.value.cause
    assert "--dry-run" in ei.value.fix or "ktextures_plugin install demo" in ei.value.fix
    assert len([ln for ln in lines if ln.startswith("$ ")]) == 1  # only the resolution check ran
    assert not target.exists()


@debian_only
def test_terminal_command_dry_run_names_the_conflict(tmp_path):
    if subprocess.run(["/usr/bin/python3", "-c", "import onnxruntime"], capture_output=True).returncode == 0:
        pytest.skip("onnxruntime is already importable from /usr/bin/python3")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = dict(os.environ, PYTHONPATH=installer.PLUGIN_DIR, **_local_index(wheels))

    def run(*args):
        return subprocess.run(["/usr/bin/python3", "-m", "ktextures_plugin", "install", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
    wheel(wheels, "onnxruntime", "1.31.1", ["numpy>=2.0"])
    wheel(wheels, "numpy", "2.0.0")
    bad = run("onnxruntime", "--target", str(tmp_path / "t"), "--dry-run")
    assert bad.returncode == 1 and "version conflict" in bad.stderr and "numpy" in bad.stderr, bad.stderr
    assert not (tmp_path / "t").exists()
    for w in wheels.glob("onnxruntime-*"):
        w.unlink()
    wheel(wheels, "onnxruntime", "1.31.1", ["numpy>=1.21.6"])
    ok = run("onnxruntime", "--profile", str(tmp_path / "profile"), "--dry-run")
    assert ok.returncode == 0 and "can be installed" in ok.stdout, ok.stdout + ok.stderr
    assert not (tmp_path / "profile").exists()
    assert run("onnxruntime", "--profile", "a", "--target", "b").returncode == 2  # one or the other


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@debian_only
def test_real_install_with_debian_python_then_import_in_fresh_qgis(tmp_path):
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable")
    if subprocess.run(["/usr/bin/python3", "-c", "import onnxruntime"], capture_output=True).returncode == 0:
        pytest.skip("onnxruntime is already importable from /usr/bin/python3")
    profile = tmp_path / "qgiscfg" / "profiles" / "default"
    profile.mkdir(parents=True)
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONPATH=str(ROOT))
    cp = subprocess.run(["/usr/bin/python3", "-m", "ktextures_plugin", "install", "onnxruntime", "--profile",
                         str(profile)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    assert "externally-managed" not in cp.stdout + cp.stderr  # PEP 668 does not block --target
    target = installer.target_dir(str(profile))
    assert os.path.isdir(os.path.join(target, "onnxruntime")) and not os.path.isdir(os.path.join(target, "numpy"))
    # A fresh QGIS process with that profile: the plugin's loader puts the folder on sys.path.
    probe = (
        "import json, sys, importlib\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], False); app.initQgis()\n"
        "from ktextures_plugin.installer_gui import add_deps_to_path, deps_folder\n"
        "added = add_deps_to_path()\n"
        "import numpy, onnxruntime\n"
        "s = onnxruntime.InferenceSession\n"
        "print(json.dumps({'added': added, 'folder': deps_folder(), 'ort': onnxruntime.__file__,\n"
        "                  'version': onnxruntime.__version__, 'numpy': numpy.__file__}))\n")
    env2 = dict(env, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "qgiscfg"))
    cp = subprocess.run(["/usr/bin/python3", "-c", probe], cwd=ROOT, env=env2, capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode == 0, cp.stderr[-3000:]
    got = json.loads(cp.stdout.strip().splitlines()[-1])
    assert got["added"] and os.path.samefile(got["folder"], target)
    assert got["ort"].startswith(target) and got["version"] == "1.31.1"
    assert got["numpy"].startswith("/usr/lib/python3/dist-packages")  # QGIS's numpy, not the folder's


def test_menu_says_what_is_installed(monkeypatch):
    import onnxruntime

    from ktextures_plugin import installer_gui

    assert installer_gui.menu_text("onnxruntime") == (f"onnxruntime {onnxruntime.__version__} installed "
                                                      "(segmenting): reinstall")
    monkeypatch.setitem(installer.MODULES, "torch", "ktextures_no_such_module")
    assert installer_gui.menu_text("torch") == "Install PyTorch (fitting)"


def test_end_of_an_install_is_shown_as_what_it_is(qgis_iface, monkeypatch):
    """Success in green, a cancel as information (not a red error), a failure in red; the stale
    "Installing ..." message is gone; ``finished`` tells the menu."""
    from qgis.core import Qgis

    from ktextures_plugin import installer_gui
    inst = installer_gui.Installer(qgis_iface)
    ended = []
    inst.finished.connect(lambda f, ok: ended.append((f, ok)))
    bar = qgis_iface.messageBar()
    monkeypatch.setitem(installer.MODULES, "onnxruntime", "json")  # importable after the "install"
    for outcome, level, words in (("ok", Qgis.MessageLevel.Success, "ready to use"),
                                  ("cancel", Qgis.MessageLevel.Info, "was canceled"),
                                  ("error", Qgis.MessageLevel.Critical, "Installing failed: a version conflict")):
        bar.clearWidgets()
        bar.pushMessage("k-textures", "Installing onnxruntime; ...", Qgis.MessageLevel.Info, 0)
        task = installer_gui.InstallTask("onnxruntime", "/p")
        task.target = "/p/deps"
        task.canceled = outcome == "cancel"
        task.error = str(installer.InstallError("a version conflict (x)", "fix")) if outcome == "error" else None
        inst._done("onnxruntime", task, outcome == "ok")
        item = bar.currentItem()
        assert item.level() == level and words in item.text(), item.text()
        bar.popWidget(item)
        assert bar.currentItem() is None  # the "Installing ..." message went with it
    assert ended == [("onnxruntime", True), ("onnxruntime", False), ("onnxruntime", False)]


def test_canceled_pip_run_raises_the_core_cancel_signal():
    """``is_canceled`` turning True stops pip and raises ``Canceled``, the one cancel signal of the code."""
    from ktextures_plugin.core.errors import Canceled
    lines = []
    cmd = [sys.executable, "-c", "import time\nfor i in range(50):\n    print(i, flush=True); time.sleep(0.05)"]
    t0 = time.monotonic()
    with pytest.raises(Canceled):
        installer.run_pip(cmd, lines.append, is_canceled=lambda: len(lines) >= 2)
    assert lines == ["0", "1"] and time.monotonic() - t0 < 2
