"""The layers as docs/ARCHITECTURE.md draws them, checked by walking every import.

Every ``import`` and ``from ... import`` in ``mmdemo/`` counts, at module level,
inside a function (a function-level import is still an arrow) or under
``if TYPE_CHECKING:`` (a type-only cycle is still a tangle). Run alone: ``python -m pytest tests/test_layers.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "mmdemo"
MAX_LINES = 400

# Data flows down: a module may import its own rank or lower, never higher.
RANKS = {
    "mmdemo": 0, "mmdemo.errors": 0, "mmdemo.paths": 0, "mmdemo.atomic": 0, "mmdemo.hashing": 0,
    "mmdemo.scores": 0, "mmdemo.sessions": 0, "mmdemo.devices": 0, "mmdemo.settings": 0, "mmdemo.handles": 0,
    "mmdemo.media": 1, "mmdemo.catalog": 1, "mmdemo.weights": 1, "mmdemo.toyworld": 1, "mmdemo.familiarity": 1,
    "mmdemo.models": 2, "mmdemo.features": 2, "mmdemo.index": 2,
    "mmdemo.registry": 3, "mmdemo.batching": 3, "mmdemo.training": 3,
    "mmdemo.tasks": 4,
    "mmdemo.cli": 5, "mmdemo.ui": 5,
    "mmdemo.__main__": 6,
}
# Arrows the ranks would allow but the design does not: the UI talks to tasks (and
# the registry/settings it is handed), never to the generator, trainers or models.
FORBIDDEN = [
    ("mmdemo.ui", "mmdemo.toyworld"), ("mmdemo.ui", "mmdemo.training"), ("mmdemo.ui", "mmdemo.models"),
    ("mmdemo.ui", "mmdemo.features"), ("mmdemo.ui", "mmdemo.index"), ("mmdemo.ui", "mmdemo.cli"),
    ("mmdemo.cli", "mmdemo.ui"), ("mmdemo.tasks", "mmdemo.cli"),
]
NO_TORCH = ("mmdemo.tasks", "mmdemo.ui", "mmdemo.media", "mmdemo.catalog", "mmdemo.settings", "mmdemo.handles")
TORCH_LIKE = ("torch", "torchvision", "open_clip", "transformers", "safetensors.torch")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            # `from mmdemo.tasks import image` imports the submodule mmdemo.tasks.image
            for a in node.names:
                sub = f"{base}.{a.name}"
                if (PKG.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                        (PKG.parent / Path(*sub.split(".")) / "__init__.py").is_file():
                    out.append((node.lineno, sub))
    return out


def _rank(module: str) -> int | None:
    best = None
    for prefix, rank in RANKS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rank)
    return None if best is None else best[1]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        graph[me] = {m for _, m in _imports(path) if m.startswith("mmdemo.") or m == "mmdemo"}
    return graph


def _files():
    return sorted(PKG.rglob("*.py"))


def test_no_arrow_points_up():
    bad = []
    for path in _files():
        me = _module_name(path)
        mine = _rank(me)
        assert mine is not None, f"{me} has no layer in RANKS: add it (and to docs/ARCHITECTURE.md)"
        for line, target in _imports(path):
            if not target.startswith("mmdemo"):
                continue
            theirs = _rank(target)
            if theirs is not None and theirs > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} {me} (layer {mine}) imports {target} (layer {theirs})")
            for low, high in FORBIDDEN:
                if (me == low or me.startswith(low + ".")) and (target == high or target.startswith(high + ".")):
                    bad.append(f"{path.relative_to(ROOT)}:{line} {me} must not import {target}")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_package_init_reexport(a: str, b: str) -> bool:
    # A package's __init__ re-exporting its own submodules is not a cycle worth reporting.
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_module_import_cycle():
    graph = _graph()
    pruned = {v: {w for w in ws if not _is_package_init_reexport(v, w)} for v, ws in graph.items()}
    assert _cycles(pruned) == []


def test_no_subpackage_import_cycle():
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for v, ws in _graph().items():
        graph.setdefault(top(v), set()).update(top(w) for w in ws if top(w) != top(v))
    assert _cycles(graph) == []


@pytest.mark.parametrize("layer", NO_TORCH)
def test_layer_never_imports_torch(layer):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {m}" for p in _files()
           if _module_name(p) == layer or _module_name(p).startswith(layer + ".")
           for line, m in _imports(p) if any(m == t or m.startswith(t + ".") for t in TORCH_LIKE)]
    assert not bad, "\n".join(bad)


def test_only_the_ui_imports_gradio():
    bad = [f"{p.relative_to(ROOT)}:{line}" for p in _files() if not _module_name(p).startswith("mmdemo.ui")
           for line, m in _imports(p) if m == "gradio" or m.startswith("gradio.")]
    assert not bad, "\n".join(bad)


def test_no_module_is_over_the_size_limit():
    big = {str(p.relative_to(ROOT)): n for p in _files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_user_error_names_its_code():
    """``MMDemoError(code, message)``: callers decide by the code, never by the text."""
    bad = []
    for path in _files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("MMDemoError", "Notice"):
                first = node.args[0] if node.args else None
                if len(node.args) < 2 or not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "MMDemoError/Notice without a literal code first:\n" + "\n".join(bad)


def test_the_walker_sees_function_level_imports(tmp_path):
    """The checks above would pass vacuously if the walker missed imports."""
    imports = dict((m, line) for line, m in _imports(PKG / "registry.py"))
    assert "mmdemo.catalog" in imports and "importlib" in imports
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_importing_the_task_layer_loads_no_torch():
    """At run time too: the task modules (and the UI built on them) import without torch."""
    import subprocess
    import sys

    code = ("import sys, mmdemo.tasks.image, mmdemo.tasks.audio, mmdemo.tasks.classify, mmdemo.ui.app\n"
            "heavy = sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules)\n"
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
