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


def _core_files():
    """Every module of core, its subpackages included."""
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 30 and any(f.parent != CORE for f in files)
    return files


def test_core_imports_no_qgis_or_torch():
    files = _core_files()
    bad = [f"{f.relative_to(CORE)}:{line} imports {mod}" for f in files for mod, line in _imports(f)
           if mod in FORBIDDEN]
    assert not bad, bad


def test_root_init_has_only_class_factory():
    src = (CORE.parent.parent / "__init__.py").read_text()
    tree = ast.parse(src)
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not top_imports, "the plugin's __init__.py must not import anything at module level"
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == ["classFactory"]


# ---------------------------------------------------------------------------------------------- import graph
PACKAGE = CORE.parent
#: What core may import beside the standard library and itself (the core's declared dependencies; GDAL is
#: ``osgeo``, and its Python utilities ``osgeo_utils``, from the same package; scikit-learn is ``sklearn``).
# matplotlib: imported lazily, only by core/segment/html_report.py for the area chart (Debian QGIS depends on it)
CORE_DEPENDENCIES = {"numpy", "osgeo", "osgeo_utils", "onnxruntime", "scipy", "sklearn", "matplotlib"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, node) -> list:
    """Package modules named by an import node anywhere in a file (function-level imports included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE.name]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != PACKAGE.name:
            return []
    else:
        parts = importer.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    # "from pkg import mod" imports pkg.mod when it is a module, else a name defined in pkg
    return [f"{base}.{a.name}" if _path_of(f"{base}.{a.name}") else base for a in node.names]


def _path_of(module: str):
    if module == PACKAGE.name:
        return PACKAGE / "__init__.py"
    rel = Path(*module.split(".")[1:])
    for p in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if p.is_file():
            return p
    return None


def _graph():
    """Module -> package modules it imports. Edges into the root ``__init__`` are left out: Python imports
    every parent package before any of its modules, so such an edge adds no order that is not already there.
    A subpackage's ``__init__`` (``core.segment``, which re-exports ``segment_raster``) is a node like any
    module, so that a cycle through a re-export is found."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(d for d in _resolve(name, path.name == "__init__.py", node)
                            if d != name and _path_of(d) is not None and d != PACKAGE.name)
        graph[name] = deps
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_function_level_imports():
    graph = _graph()
    assert "ktextures_plugin.core.segment.inference" in graph["ktextures_plugin.core.segment.segment"]
    # cli/segment.py imports core inside main(), from the subpackage that re-exports segment_raster
    assert "ktextures_plugin.core.segment" in graph["ktextures_plugin.cli.segment"]
    assert "ktextures_plugin.core.segment.segment" in graph["ktextures_plugin.core.segment"]


def test_no_import_cycle_in_the_package():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles (module-level or inside functions): {cycles}"


def test_core_subpackages_depend_one_way():
    """The core's subpackages and top modules, as nodes: no cycle among them either (``core/__init__.py`` says
    which uses which)."""
    def unit(module):
        parts = module.split(".")
        return ".".join(parts[:3]) if parts[:2] == [PACKAGE.name, "core"] else None
    units = {}
    for mod, deps in _graph().items():
        if unit(mod):
            units.setdefault(unit(mod), set()).update(unit(d) for d in deps if unit(d) and unit(d) != unit(mod))
    assert {"ktextures_plugin.core.io", "ktextures_plugin.core.segment"} <= set(units)
    assert not _cycles(units), f"cycles between core subpackages: {_cycles(units)}"


def test_cycle_detection_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_imports_only_its_declared_dependencies():
    import sys
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = [f"{f.relative_to(CORE)}:{line} imports {mod}" for f in _core_files() for mod, line in _imports(f)
           if mod not in stdlib | CORE_DEPENDENCIES | {PACKAGE.name}]
    assert not bad, f"core may import only {sorted(CORE_DEPENDENCIES)} and the standard library: {bad}"


def test_readme_layout_names_the_core_folders_and_modules():
    """README.md's "Layout" names every core subpackage as ``core/NAME/`` and every core module, and no other."""
    import re
    text = (PACKAGE.parent / "README.md").read_text()
    layout = text[text.index("## Layout"):].split("\n## ", 1)[0]
    folders = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert set(re.findall(r"`core/(\w+)/`", layout)) == folders
    named = set(re.findall(r"`(\w+)`", layout))
    modules = {p.stem for p in CORE.rglob("*.py") if p.name != "__init__.py"}
    assert not modules - named, f"core modules the README's layout does not name: {sorted(modules - named)}"
