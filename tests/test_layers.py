"""The layers of ``actors/`` and ``transport/`` stay as ``DESIGN.md`` ("Layers") draws them.

Every import of every module is read with :mod:`ast` (module level, inside functions, and under
``if TYPE_CHECKING:``, the last kind counted apart) and each module is given a layer::

    transport < kernel < building blocks < cluster < lifecycle < app < edge (launch, testing)

Broken rules:

- ``transport->actors``: ``transport`` imports ``actors`` (any kind of import);
- ``up``: a runtime import (module or function level) of a higher layer;
- ``up (typing)``: an import under ``TYPE_CHECKING`` of a higher layer (no import-time cost,
  but the lower module still knows the higher one: pass it what it uses instead);
- ``cycle``: a runtime import on a cycle of imports between modules of one layer;
- ``cycle (typing)``: the same, for a cycle closed by a typing import. Allowed in the
  kernel only (the trio names each other's types).

A cycle across layers always contains an arrow pointing up, so it is reported as ``up`` or
``up (typing)``: fixing those arrows breaks it (today's big circle is of that kind).

``BASELINE`` lists the violations the code had when this test was written (a ratchet): the
test fails on any violation not in it, and also when one in it is gone, so the list only
shrinks. The failure message prints both lists ready to paste. To see the arrows of a module,
``python -m tests.test_layers [module ...]``.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actors", "transport")

# Lowest first. A module takes the layer of its longest matching name (a name matches itself
# and the modules under it). A module matching nothing fails the test: place it on purpose.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("transport", ("transport",)),
    (
        "kernel",
        (
            "actors",
            "actors.actor",
            "actors.kernel",
            "actors.system",
            "actors.dispatch",
            "actors.errors",  # the kernel raises them; every layer above shares them
        ),
    ),
    (
        "building blocks",
        (
            "actors.config",
            "actors.pitaya_env",
            "actors.logs",
            "actors.tally",
            "actors.readiness",
            "actors.payload",
            "actors.tracing",
            "actors.metrics",
            "actors.session",
            "actors.sessions",  # the registry, the session actor, its messages and host
            "actors.eventloop",
            "actors.gcthreshold",
            "actors.stats",
            "actors.turns",
            "actors.gateway",
            "actors.ratelimit",
            "actors.handler",
            "actors.invocation",
            "actors.propagation",
            "actors.pipeline",
            "actors.groups",
            "actors.docs",
            "actors.modules",
        ),
    ),
    (
        "cluster",
        (
            "actors.cluster",
            "actors.modules.binding_storage",
            "actors.modules.unique_session",
            "actors.modules.host",
        ),
    ),
    # The running server: start/stop sequences and draining, given what they use (the app
    # builds a Lifecycle from itself as a LifecycleHost), so the app imports it, not back.
    ("lifecycle", ("actors.lifecycle", "actors.draining")),
    ("app", ("actors.app", "actors.startup")),
    (
        "edge",
        (
            "actors.launch",
            "actors.testing",
            "actors.pytest_plugin",
        ),
    ),
)

BASELINE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Import:
    """``source`` imports ``target``; ``kind`` is ``module``, ``function`` or ``typing``."""

    source: str
    target: str
    kind: str

    @property
    def runtime(self) -> bool:
        return self.kind != "typing"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


class _ImportVisitor(ast.NodeVisitor):
    """Collects the imports of one module with the context they sit in."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.found: list[Import] = []
        self._functions = 0
        self._typing = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested_function(node)

    def _nested_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self._typing += 1
            for child in node.body:
                self.visit(child)
            self._typing -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        for alias in node.names:
            # ``from actors import app`` imports the module actors.app.
            submodule = f"{module}.{alias.name}"
            self._add(submodule if submodule in self.known else module)

    def _add(self, name: str) -> None:
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if not name or name == self.module:
            return
        kind = "typing" if self._typing else "function" if self._functions else "module"
        self.found.append(Import(self.module, name, kind))


def scan(root: Path = ROOT) -> list[Import]:
    """Every import between modules of the checked packages, one per (source, target, kind)."""
    files = module_files(root)
    known = set(files)
    imports: set[Import] = set()
    for module, path in files.items():
        visitor = _ImportVisitor(module, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        imports.update(visitor.found)
    return sorted(imports, key=lambda i: (i.source, i.target, i.kind))


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (longest matching name wins), None if unplaced."""
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            matches = module == name or module.startswith(name + ".")
            if matches and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def _cycle_arrows(arrows: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The arrows whose two ends lie in one strongly connected component (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for source, target in arrows:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    component: dict[str, int] = {}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(graph):
        if root in index:
            continue
        visit(root)
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        while work:  # an iterative depth-first search: (node, its successors left)
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    visit(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component[member] = index[node]
                        if member == node:
                            break
    return {(s, t) for s, targets in graph.items() for t in targets if component[s] == component[t]}


def violations(imports: list[Import]) -> tuple[set[str], list[str]]:
    """The broken rules (as in :data:`BASELINE`) and the modules placed in no layer."""
    unplaced = sorted({m for i in imports for m in (i.source, i.target) if layer_of(m) is None})
    found: set[str] = set()
    runtime = {(i.source, i.target) for i in imports if i.runtime}
    every = {(i.source, i.target) for i in imports}
    kernel = next(n for n, (name, _) in enumerate(LAYERS) if name == "kernel")
    for source, target in sorted(every):
        arrow = f"{source} -> {target}"
        if source.startswith("transport") and target.startswith("actors"):
            found.add(f"transport->actors: {arrow}")
            continue
        low, high = layer_of(source), layer_of(target)
        if low is not None and high is not None and high > low:
            found.add(f"{'up' if (source, target) in runtime else 'up (typing)'}: {arrow}")

    # A cycle across layers has an arrow pointing up, reported above; so only the arrows
    # inside one layer are searched for cycles.
    def level(arrows: set[tuple[str, str]]) -> set[tuple[str, str]]:
        return {(s, t) for s, t in arrows if layer_of(s) == layer_of(t) is not None}

    runtime_cycles = _cycle_arrows(level(runtime))
    for source, target in runtime_cycles:
        found.add(f"cycle: {source} -> {target}")
    for source, target in _cycle_arrows(level(every)) - runtime_cycles:
        if layer_of(source) != kernel:
            found.add(f"cycle (typing): {source} -> {target}")
    return found, unplaced


def largest_circle(imports: Iterable[Import]) -> int:
    """Modules in the largest strongly connected component of all imports (0 if none)."""
    arrows = _cycle_arrows({(i.source, i.target) for i in imports})
    graph: dict[str, set[str]] = {}
    for source, target in arrows:
        graph.setdefault(source, set()).add(target)
    best: set[str] = set()
    for start in graph:  # every arrow here is inside a component: its reach is that component
        seen, stack = {start}, [start]
        while stack:
            for succ in graph.get(stack.pop(), ()):
                if succ not in seen:
                    seen.add(succ)
                    stack.append(succ)
        best = max(best, seen, key=len)
    return len(best)


def _format(entries: Iterable[str]) -> str:
    return "\n".join(f'        "{entry}",' for entry in sorted(entries))


def test_every_module_has_a_layer() -> None:
    modules = module_files()
    unplaced = sorted(m for m in modules if layer_of(m) is None)
    assert not unplaced, (
        f"{len(unplaced)} module(s) in no layer; add them to LAYERS in tests/test_layers.py "
        f"(see DESIGN.md, 'Layers'): {', '.join(unplaced)}"
    )


def test_layers_hold_apart_from_the_baseline() -> None:
    imports = scan()
    found, _ = violations(imports)
    new = found - BASELINE
    gone = BASELINE - found
    message = [
        f"{len(found)} layer violation(s) now, {len(BASELINE)} in the baseline; the largest "
        f"import circle (every kind of import) has {largest_circle(imports)} modules."
    ]
    if new:
        message.append(
            f"{len(new)} NEW violation(s) (fix the import; DESIGN.md, 'Layers'):\n" + _format(new)
        )
    if gone:
        message.append(
            f"{len(gone)} baselined violation(s) are gone: remove them from BASELINE in "
            "tests/test_layers.py so they cannot come back:\n" + _format(gone)
        )
    assert not new and not gone, "\n".join(message)


def test_transport_never_imports_actors() -> None:
    # No baseline for this one: the rule holds today and must keep holding.
    found, _ = violations(scan())
    assert not {v for v in found if v.startswith("transport->actors")}


def test_the_readmes_architecture_section_is_true_to_the_code() -> None:
    # The request paths it tells name files, classes and methods: they must exist.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Architecture\n")
    section = text[start : text.index("\n## ", start + 1)]
    paths = set(re.findall(r"`((?:actors|transport|tests)/[\w/.]*)`", section))
    assert len(paths) > 20, paths
    missing = sorted(path for path in paths if not (ROOT / path).exists())
    names = set(re.findall(r"`([A-Z]\w+)(?:\.(\w+))?`", section))
    sources = [path.read_text(encoding="utf-8") for path in module_files().values()]
    for cls, method in sorted(names):
        defining = [src for src in sources if re.search(rf"^class {cls}\b", src, re.M)]
        method_def = re.compile(rf"^    (async )?def {method}\(", re.M)
        if not defining:
            missing.append(cls)
        elif method and not any(method_def.search(src) for src in defining):
            missing.append(f"{cls}.{method}")
    assert not missing, f"README.md's Architecture section names what is gone: {missing}"


# -- the checker itself ------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return tmp_path


def test_scan_tells_module_function_and_typing_imports_apart(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "actors/session.py": (
                "from typing import TYPE_CHECKING\n"
                "from actors import kernel\n"
                "import actors.errors\n"
                "if TYPE_CHECKING:\n"
                "    from actors.app import App\n"
                "else:\n"
                "    from actors.payload import x\n"
                "def f():\n"
                "    from actors.cluster.router import Router\n"
                "    from .handler import y\n"
            ),
            "actors/kernel.py": "",
            "actors/errors.py": "",
            "actors/app.py": "",
            "actors/payload.py": "",
            "actors/handler.py": "",
            "actors/cluster/__init__.py": "",
            "actors/cluster/router.py": "",
        },
    )
    found = {(i.target, i.kind) for i in scan(root) if i.source == "actors.session"}
    assert found == {
        ("actors.kernel", "module"),
        ("actors.errors", "module"),
        ("actors.app", "typing"),
        ("actors.payload", "module"),
        ("actors.cluster.router", "function"),
        ("actors.handler", "function"),
    }


def test_violations_name_each_broken_rule(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "transport/packet.py": "from actors.kernel import Cell\n",
            "actors/kernel.py": "from actors.session import Session\n",
            "actors/session.py": (
                "from typing import TYPE_CHECKING\n"
                "from actors.handler import Handler\n"
                "if TYPE_CHECKING:\n"
                "    from actors.app import App\n"
                "def f():\n"
                "    import actors.kernel\n"
            ),
            "actors/handler.py": "def g():\n    from actors.session import Session\n",
            "actors/app.py": "import actors.lifecycle\n",
            "actors/lifecycle.py": "import actors.app\n",
            "actors/cluster/__init__.py": "",
            "actors/cluster/rpc.py": "from actors.cluster.node import Node\n",
            "actors/cluster/node.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    from actors.cluster.rpc import Rpc\n"
            ),
            # A typing-only cycle inside the kernel is allowed.
            "actors/actor.py": "from actors.system import ActorSystem\n",
            "actors/system.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from actors.actor import Actor\n"
            ),
        },
    )
    found, unplaced = violations(scan(root))
    assert unplaced == []
    assert found == {
        "transport->actors: transport.packet -> actors.kernel",
        # kernel -> session -> kernel is a cycle across layers: reported by its up arrow.
        "up: actors.kernel -> actors.session",
        "up: actors.lifecycle -> actors.app",
        "up (typing): actors.session -> actors.app",
        "cycle: actors.session -> actors.handler",
        "cycle: actors.handler -> actors.session",
        "cycle (typing): actors.cluster.rpc -> actors.cluster.node",
        "cycle (typing): actors.cluster.node -> actors.cluster.rpc",
    }


def test_layer_of_takes_the_longest_matching_name() -> None:
    names = [name for name, _ in LAYERS]
    assert names[layer_of("actors.modules.base") or 0] == "building blocks"
    assert names[layer_of("actors.modules.binding_storage") or 0] == "cluster"
    assert names[layer_of("actors.cluster.router") or 0] == "cluster"
    assert names[layer_of("transport.client") or 0] == "transport"
    assert layer_of("actorsx") is None


if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    for imp in scan():
        if not wanted or imp.source in wanted or imp.target in wanted:
            print(f"{imp.source} -> {imp.target} ({imp.kind})")
