"""The dependency installer (core/installer.py, installer_gui.py): command lines and constraints for the
Linux, Windows (OSGeo4W) and macOS layouts, failure messages, the message-bar notice, and a real install of
onnxruntime with Debian's /usr/bin/python3 into a temporary QGIS profile, imported in a fresh QGIS process."""
import json
import os
import re
import socket
import subprocess

import pytest

from conftest import ROOT
from ktextures_plugin.core import installer

OSGEO4W = dict(executable=r"C:\OSGeo4W\bin\qgis-bin.exe", exec_prefix=r"C:\OSGeo4W\apps\Python39",
               platform="win32", version=(3, 9))
MACOS = dict(executable="/Applications/QGIS.app/Contents/MacOS/QGIS",
             exec_prefix="/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.9",
             platform="darwin", version=(3, 9))
DEBIAN = dict(executable="/usr/bin/python3", exec_prefix="/usr", platform="linux", version=(3, 11))


def test_real_interpreter_is_found_for_each_layout():
    win = installer.python_candidates(**OSGEO4W)
    assert win[0] == r"C:\OSGeo4W\apps\Python39" + os.sep + "python.exe" and not any("qgis-bin" in c for c in win)
    mac = installer.python_candidates(**MACOS)
    assert mac[0] == "/Applications/QGIS.app/Contents/MacOS/bin/python3"
    assert "/Applications/QGIS.app/Contents/MacOS/QGIS" not in mac
    assert installer.python_candidates(**DEBIAN)[0] == "/usr/bin/python3"
    # the QGIS binary itself is never returned, even when nothing else exists
    with pytest.raises(installer.InstallError, match="no Python interpreter"):
        installer.find_python(check=lambda p: True, **OSGEO4W)
    assert installer.find_python(**DEBIAN) == "/usr/bin/python3"  # really exists and reports 3.11 here


@pytest.mark.parametrize("layout,plat,sep", [(DEBIAN, "linux-x86_64", "/"), (OSGEO4W, "win-amd64", "\\"),
                                             (MACOS, "macosx-11.0-arm64", "/")])
def test_pip_command_and_target_for_each_layout(layout, plat, sep):
    profile = sep.join(["", "profiles", "default"])
    target = installer.target_dir(profile, layout["version"], plat)
    assert re.search(rf"ktextures-deps.py{layout['version'][0]}\.{layout['version'][1]}-\w", target)
    assert target.startswith(profile)
    cmd = installer.pip_command("PY", target, "onnxruntime", "c.txt", platform=layout["platform"])
    assert cmd[:4] == ["PY", "-m", "pip", "install"]
    assert cmd[cmd.index("--target") + 1] == target and cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert cmd[cmd.index("--constraint") + 1] == "c.txt" and cmd[-1] == "onnxruntime==1.31.1"
    assert "--user" not in cmd and "--break-system-packages" not in cmd
    torch = installer.pip_command("PY", target, "torch", "c.txt", platform=layout["platform"])
    assert ("https://download.pytorch.org/whl/cpu" in torch) == (layout is DEBIAN)  # CPU build on Linux


def test_constraints_pin_what_is_importable_numpy_above_all():
    lines = installer.constraints([("numpy", "1.24.2"), ("NumPy", "2.0.0"), ("GDAL", "3.6.2+dfsg"),
                                   ("python_dateutil", "2.8.2"), ("weird", "0.1-debian"), ("", "1")])
    assert lines == ["gdal==3.6.2", "numpy==1.24.2", "python-dateutil==2.8.2"]
    here = installer.constraints(installer.installed_distributions())
    import numpy
    assert f"numpy=={numpy.__version__}" in here


def test_pins_match_requirements():
    req = (ROOT / "requirements.txt").read_text() + (ROOT / "requirements-dev.txt").read_text()
    for pins in installer.PACKAGES.values():
        for pin in pins:
            assert re.search(rf"^{re.escape(pin)}$", req, re.M), pin


@pytest.mark.parametrize("output,cause,fix", [
    ("/usr/bin/python3: No module named pip", "pip is not installed", "apt install python3-pip"),
    ("WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')", "no network",
     "--target"),
    ("ERROR: No matching distribution found for onnxruntime==1.31.1", "no binary wheel", "--only-binary"),
    ("ERROR: ResolutionImpossible: ...", "differs from QGIS's", "--constraint"),
])
def test_failures_name_the_cause_and_a_command(output, cause, fix):
    cmd = installer.pip_command("/usr/bin/python3", "/p/t", "onnxruntime", "/p/c.txt", platform="linux")
    err = installer.diagnose(output, 1, cmd, platform="linux")
    assert cause in err.cause and fix in err.fix and "in a terminal" in err.fix
    win = installer.diagnose(output, 1, cmd, platform="win32")
    assert "OSGeo4W Shell" in win.fix


def test_pip_failure_is_reported_from_a_real_run(tmp_path):
    cmd = installer.pip_command("/usr/bin/python3", str(tmp_path / "t"), "onnxruntime", str(tmp_path / "c.txt"))
    (tmp_path / "c.txt").write_text("onnxruntime==0.0.0\n")  # an impossible pin: pip fails, offline too
    lines = []
    with pytest.raises(installer.InstallError) as ei:
        installer.run_pip(cmd, lines.append)
    assert lines and "Fix:" in str(ei.value) and "--target" in ei.value.fix
    assert not (tmp_path / "t" / "onnxruntime").exists()


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


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="Debian's /usr/bin/python3 only")
def test_real_install_with_debian_python_then_import_in_fresh_qgis(tmp_path):
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable")
    if subprocess.run(["/usr/bin/python3", "-c", "import onnxruntime"], capture_output=True).returncode == 0:
        pytest.skip("onnxruntime is already importable from /usr/bin/python3")
    profile = tmp_path / "qgiscfg" / "profiles" / "default"
    profile.mkdir(parents=True)
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    code = ("import sys; from ktextures_plugin.core import installer as I; "
            f"print('TARGET', I.install('onnxruntime', {str(profile)!r}, print, python='/usr/bin/python3'))")
    cp = subprocess.run(["/usr/bin/python3", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    assert "externally-managed" not in cp.stdout + cp.stderr  # PEP 668 does not block --target
    target = cp.stdout.split("TARGET ")[-1].strip()
    assert os.path.isdir(os.path.join(target, "onnxruntime"))
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
