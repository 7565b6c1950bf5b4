"""The plugin as QGIS installs it: metadata.txt, classFactory/initGui/unload, and the zip from
``./build.sh package`` unzipped into a fresh plugin folder and run with qgis_process."""
import configparser
import json
import os
import subprocess
import zipfile

from conftest import ROOT, SAMPLE, qgis_process_for

REQUIRED = ["name", "qgisMinimumVersion", "description", "about", "version", "author", "email"]


def test_metadata_has_required_fields():
    cp = configparser.ConfigParser()
    cp.read(ROOT / "metadata.txt")
    g = cp["general"]
    missing = [k for k in REQUIRED if not g.get(k, "").strip()]
    assert not missing, missing
    assert g["hasProcessingProvider"] == "yes" and g["qgisMinimumVersion"] == "3.22"
    from ktextures_plugin import __version__
    assert g["version"] == __version__
    assert (ROOT / g["icon"]).exists()
    # links are real or left out (no placeholder address); the installer replaced the pip advice
    assert not [k for k in ("homepage", "tracker", "repository") if "example.org" in g.get(k, "")]
    assert "pip install" not in g["about"]


def test_class_factory_registers_and_unloads(qgis_iface, qgis_processing):
    import importlib.util
    import sys

    from qgis.core import QgsApplication
    spec = importlib.util.spec_from_file_location("ktextures", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["ktextures"] = pkg
    spec.loader.exec_module(pkg)
    reg = QgsApplication.processingRegistry()
    had = reg.providerById("ktextures")
    if had is not None:
        reg.removeProvider(had)
    plugin = pkg.classFactory(qgis_iface)
    plugin.initGui()
    prov = reg.providerById("ktextures")
    assert prov is not None and {a.name() for a in prov.algorithms()} >= {"segment", "fit", "evaluate", "sample"}
    assert not prov.icon().isNull()
    plugin.unload()
    assert reg.providerById("ktextures") is None
    if had is not None:
        from conftest import _PROVIDER
        from ktextures_plugin.provider import KTexturesProvider
        p = KTexturesProvider()
        reg.addProvider(p)
        _PROVIDER.append(p)


def test_package_zip_installs_and_runs(tmp_path, tiny_models):
    cp = subprocess.run(["bash", str(ROOT / "build.sh"), "package"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    z = zipfile.ZipFile(ROOT / "dist" / "ktextures.zip")
    names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"ktextures"}
    assert "ktextures/metadata.txt" in names and "ktextures/__init__.py" in names
    assert "ktextures/ktextures_plugin/resources.py" in names
    assert any(n.startswith("ktextures/models/") and n.endswith(".onnx") for n in names)
    assert not [n for n in names if "/tests/" in n or "__pycache__" in n or n.endswith(".pyc") or "/.venv" in n]
    # what the texts refer to is shipped: the sample with its credit and licence, and the docs
    for rel in ("data/README.md", "data/s2_brandenburg_sample_b2b3b4b8_10m.tif", "docs/benchmarks.md",
                "docs/method.md", "README.md", "LICENSE"):
        assert f"ktextures/{rel}" in names, rel
    credit = z.read("ktextures/data/README.md").decode("utf-8")
    assert "Copernicus Sentinel data" in credit and "OpenStreetMap" in credit
    _referenced_files_are_shipped(z, names)
    plugins = tmp_path / "plugins"
    z.extractall(plugins)
    out = tmp_path / "c.tif"
    run = qgis_process_for(tmp_path, plugins=plugins).run("ktextures:segment", f"INPUT={SAMPLE}",
                                                          f"MODEL_FILE={tiny_models['bin4']}", f"OUTPUT_RASTER={out}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["results"]["NUM_CLASSES"] == 4 and os.path.exists(out)


def _referenced_files_are_shipped(z, names):
    """Every docs/... or data/... file named in the shipped Python, metadata and README is in the zip."""
    import re
    texts = [z.read(n).decode("utf-8", "replace") for n in names
             if n.endswith((".py", "metadata.txt", "README.md"))]
    refs = {m for t in texts for m in re.findall(r"(?<![/.\w])((?:docs|data)/[A-Za-z0-9_.-]+\.(?:md|tif))\b", t)}
    assert refs
    missing = sorted(r for r in refs if f"ktextures/{r}" not in names and not r.startswith("data/s2_brandenburg_west"))
    assert not missing, missing
