"""The package's layers point one way: read every import of every module (``ast``, imports
inside functions included) and fail on a cycle, on ``hw`` importing anything outside ``hw``, on
the golden model importing more than the formats, on anything importing the command line, and
on product code importing a testbench.

Layers (docs/architecture.md, "Package layout")::

    fp8accel.hw            RTL                     imports only fp8accel.hw
    fp8accel.sim.golden    the golden model        imports only fp8accel.hw.fp.format
    fp8accel.sim.*         host, runners, experiments
    fp8accel.synth.*       synthesis and boards
    fp8accel.sim.tb.*      cocotb testbenches      imported by nothing but testbenches
    fp8accel.sim.cli.*     the command line        imported by nothing but itself
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Import root -> source folder, as pyproject.toml maps them.
FOLDERS = {"fp8accel.hw": ROOT / "hw", "fp8accel.sim": ROOT / "sim",
           "fp8accel.synth": ROOT / "synth"}


def modules():
    """``{module name: path}`` of every module of the package."""
    found = {}
    for root, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([root, *parts])] = path
    return found


def imports_of(name, path, known):
    """The package modules that module ``name`` imports, anywhere in its code."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()

    def add(target):
        # "from a.b import c" names module a.b.c if there is one, else a.b.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return found


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_package_has_modules(graph):
    assert {"fp8accel.hw.top", "fp8accel.sim.golden", "fp8accel.sim.cli",
            "fp8accel.synth.flow"} <= set(graph)


def test_no_import_of_the_old_roots():
    bad = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            bad += [f"{name}: {n}" for n in names if n.split(".")[0] in ("hw", "sim", "synth")]
    assert not bad, bad


def test_hw_imports_only_hw(graph):
    bad = {n: sorted(d for d in deps if not d.startswith("fp8accel.hw"))
           for n, deps in graph.items() if n.startswith("fp8accel.hw")}
    assert not {n: d for n, d in bad.items() if d}


def test_golden_model_imports_only_the_formats(graph):
    assert graph["fp8accel.sim.golden"] <= {"fp8accel.hw.fp.format"}


def test_nothing_imports_the_command_line(graph):
    bad = {n: sorted(d for d in deps if d.startswith("fp8accel.sim.cli"))
           for n, deps in graph.items() if not n.startswith("fp8accel.sim.cli")}
    assert not {n: d for n, d in bad.items() if d}


def test_product_code_imports_no_testbench(graph):
    bad = {n: sorted(d for d in deps if d.startswith("fp8accel.sim.tb"))
           for n, deps in graph.items() if not n.startswith("fp8accel.sim.tb")}
    assert not {n: d for n, d in bad.items() if d}


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep] if dep in path else [node, dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_no_import_cycle(graph):
    # A package's __init__ that re-exports its modules is not a cycle with them.
    pruned = {n: {d for d in deps if not n.startswith(d + ".")} for n, deps in graph.items()}
    assert find_cycle(pruned) is None, " -> ".join(find_cycle(pruned))


def test_the_checks_can_fail():
    """The cycle finder and the rules see what they must: a cycle, and the old layout's
    product code importing a testbench."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    known = {"fp8accel.sim.cli.gemm": None, "fp8accel.sim.tb.top": None}
    src = ROOT / "build" / "layers-probe.py"
    src.parent.mkdir(exist_ok=True)
    src.write_text("def f():\n    from fp8accel.sim.tb.top import random_fp8\n")
    try:
        assert imports_of("fp8accel.sim.cli.gemm", src, known) == {"fp8accel.sim.tb.top"}
    finally:
        src.unlink()
