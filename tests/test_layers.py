"""Architecture guardrail: ktextures_plugin/core imports no qgis, PyQt5 or processing, and no torch."""
import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "ktextures_plugin" / "core"
FORBIDDEN = {"qgis", "PyQt5", "processing", "torch"}


def _imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def test_core_imports_no_qgis_or_torch():
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 5
    bad = [f"{f.name}:{line} imports {mod}" for f in files for mod, line in _imports(f) if mod in FORBIDDEN]
    assert not bad, bad


def test_root_init_has_only_class_factory():
    src = (CORE.parent.parent / "__init__.py").read_text()
    tree = ast.parse(src)
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not top_imports, "the plugin's __init__.py must not import anything at module level"
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == ["classFactory"]
