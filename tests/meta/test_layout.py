"""The import-layout grader: the project's structure rules, checked by reading the source (AST).

1. Dependencies flow one way. ``basics`` imports no other unit; ``data`` stands alone; ``systems``,
   ``scaling`` and ``alignment`` may import ``basics`` (and each other, without cycles); no unit
   imports ``scripts`` or ``tests``. Every import counts -- at module level or inside a function, and
   ``importlib.import_module("...")`` with a literal name -- except those under
   ``if TYPE_CHECKING:``, which never run.
2. No import cycle between the library's modules.
3. No library function longer than 60 lines. A Triton kernel may be longer only with a comment
   ``# one piece: <why>`` on the line above its decorators (a kernel cannot call a helper as cheaply).
4. No reference to the project's issue tracker (the word "issue" followed by a number) in any ``.py``
   file of the units, ``scripts/`` or ``tests/``: the code says what it does and why, in its own words;
   tracker numbers mean nothing to a reader of the course.

Today's offenders are listed in ``ALLOWED`` below, each with the area that owns it. The list only
shrinks: an entry that no longer offends fails the grader too, so whoever fixes an offender deletes
its entry in the same change.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.extension

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("basics", "systems", "scaling", "data", "alignment")
TOP_LEVEL = (*UNITS, "scripts", "tests")
MAX_LINES = 60
KERNEL_MARK = "# one piece:"

# What each unit may import besides itself.
MAY_IMPORT = {
    "basics": set(),
    "data": set(),
    "systems": {"basics", "scaling", "alignment"},
    "scaling": {"basics", "systems", "alignment"},
    "alignment": {"basics", "systems", "scaling"},
}

# Known offenders (owner area: entry). Delete an entry when you fix it; never add one.
ALLOWED: dict[str, set[str]] = {
    "upward imports": set(),
    "import cycles": set(),
    "long functions": set(),
    "tracker references": set(),
}


def library_files() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every library module."""
    for unit in UNITS:
        for path in sorted((ROOT / unit).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module name this file imports when it runs (``from x import y`` gives ``x`` and ``x.y``:
    ``y`` may be a submodule)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the TYPE_CHECKING branch never runs
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _is_import_call(node):
            yield node.args[0].value
        stack.extend(ast.iter_child_nodes(node))


def _is_import_call(node: ast.Call) -> bool:
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    return (
        name in ("import_module", "__import__")
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (names that are not modules are dropped)."""
    files = dict(library_files())
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = imported_names(tree, module, path.name == "__init__.py")
        targets = {name for name in names if name in files or _outside(name)}
        # Importing a.b.c first runs the packages a and a.b: edges to them too (not to the importer's
        # own packages, which are already running when it runs).
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
        graph[module] = (targets | {p for p in parents if p in files}) - ancestors - {module}
    return graph


def _outside(name: str) -> bool:
    """scripts/tests modules are never library modules, but importing them is still an edge."""
    return name.split(".")[0] in ("scripts", "tests")


def upward_imports(graph: dict[str, set[str]]) -> set[str]:
    found = set()
    for module, targets in graph.items():
        unit = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != unit and other not in MAY_IMPORT[unit]:
                found.add(f"{module} -> {target}")
    return found


def import_cycles(graph: dict[str, set[str]]) -> set[str]:
    """Each strongly connected component of more than one module, as 'a -> b -> ... ' (sorted names)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        on_stack.append(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = on_stack.pop()
                component.append(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return {" -> ".join(sorted(c)) for c in components if len(c) > 1}


def long_functions() -> dict[str, int]:
    """'unit/file.py:function' -> length in lines, for library functions over MAX_LINES (a marked
    Triton kernel excepted)."""
    found = {}
    for _, path in library_files():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            if length <= MAX_LINES or _marked_kernel(node, lines):
                continue
            found[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = length
    return found


def _marked_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    is_kernel = any("jit" in ast.unparse(decorator) for decorator in node.decorator_list)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return is_kernel and first >= 2 and lines[first - 2].strip().startswith(KERNEL_MARK)


TRACKER_REFERENCE = re.compile(r"\bissue \d+", re.IGNORECASE)


def tracker_references(root: Path = ROOT) -> set[str]:
    """``path:line`` of every tracker reference in a ``.py`` file under the units, scripts/ and tests/."""
    found = set()
    for top in TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if TRACKER_REFERENCE.search(line):
                    found.add(f"{path.relative_to(root)}:{number}")
    return found


def _check(kind: str, found: set[str]) -> None:
    new = sorted(found - ALLOWED[kind])
    fixed = sorted(ALLOWED[kind] - found)
    assert not new, f"{kind}: " + "; ".join(new)
    assert not fixed, f"{kind}: fixed, so delete from ALLOWED in tests/meta/test_layout.py: " + "; ".join(
        fixed
    )


def test_no_upward_imports():
    _check("upward imports", upward_imports(import_graph()))


def test_no_import_cycles():
    _check("import cycles", import_cycles(import_graph()))


def test_no_long_library_functions():
    _check("long functions", set(long_functions()))


def test_no_tracker_references():
    _check("tracker references", tracker_references())


# The grader's own graders: each rule catches a small made-up offender.


def test_grader_finds_tracker_references(tmp_path):
    number = "1" + "2"  # spelled apart, so this file holds no reference itself
    (tmp_path / "scripts").mkdir()
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "scripts" / "run.py").write_text(f"x = 1\n# see (Issue {number}, section 3)\n")
    (tmp_path / "tests" / "unit" / "test_a.py").write_text(f"# tissue {number} and issues {number}\n")
    (tmp_path / "scripts" / "notes.md").write_text(f"issue {number}\n")  # only .py files are read
    assert tracker_references(tmp_path) == {"scripts/run.py:2"}


def test_grader_sees_every_kind_of_import():
    source = (
        "from __future__ import annotations\n"
        "import basics.model\n"
        "from systems import ddp\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from scaling import flops\n"
        "def f():\n    from alignment.sft import train_sft\n    importlib.import_module('data.minhash')\n"
    )
    names = set(imported_names(ast.parse(source), "basics.x", is_package=False))
    assert {"basics.model", "systems", "systems.ddp", "alignment.sft", "data.minhash"} <= names
    assert not any(name.startswith("scaling") for name in names)  # type-only
    relative = ast.parse("from . import tokenizer\nfrom .bpe import merge\n")
    assert {"basics.tokenizer", "basics.bpe"} <= set(imported_names(relative, "basics.data", False))


def test_grader_finds_cycles_and_upward_imports():
    graph = {
        "basics.a": {"basics.b"},
        "basics.b": {"basics.a", "systems.c"},
        "systems.c": {"basics.a"},
        "data.d": {"tests.basics.adapters"},
        "scaling.e": {"basics.a"},
    }
    assert import_cycles(graph) == {"basics.a -> basics.b -> systems.c"}
    assert upward_imports(graph) == {"basics.b -> systems.c", "data.d -> tests.basics.adapters"}


def test_grader_measures_functions_and_honours_marked_kernels():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    plain = ast.parse(f"def f():\n{body}").body[0]
    kernel_source = f"{KERNEL_MARK} one program per tile\n@triton.jit\ndef k():\n{body}"
    kernel = ast.parse(kernel_source).body[0]
    assert plain.end_lineno - plain.lineno + 1 > MAX_LINES
    assert not _marked_kernel(plain, f"def f():\n{body}".splitlines())
    assert _marked_kernel(kernel, kernel_source.splitlines())
    unmarked = f"@triton.jit\ndef k():\n{body}"
    assert not _marked_kernel(ast.parse(unmarked).body[0], unmarked.splitlines())
