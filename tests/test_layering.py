"""The package layering (docs/architecture.md), checked on the source: every import counts,
those under ``if TYPE_CHECKING:`` and inside functions included, so a circle cannot hide
behind a lazy import.

- no import circles between modules;
- the pure packages import no gRPC, LMDB, pysyncobj, asyncio, threads or clock, and only
  other pure modules of factoryOS;
- each package imports only the packages below it (`ALLOWED`); `fos_raft` never imports
  `fos_agent`, `fos_dashboard` or `bench`; `fos_agent` never imports `fos_dashboard` or
  `bench`; `fos_dashboard` (a coordinator client) never imports `fos_agent` or `bench`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("fos_raft", "fos_agent", "fos_dashboard", "bench")

PURE = ("fos_raft.model", "fos_raft.planner", "fos_raft.state", "fos_agent.protocol",
        "fos_dashboard.view", "fos_raft.lineage.index", "fos_raft.lineage.trace",
        "fos_raft.textsafe", "fos_agent.rules")
# Third-party and standard modules a pure module must not touch: I/O, concurrency, clock.
IMPURE = ("grpc", "grpc_health", "grpc_reflection", "lmdb", "pysyncobj", "asyncio",
          "threading", "concurrent", "time", "datetime", "socket", "subprocess", "fos_pb",
          "prometheus_client", "structlog", "random", "os")

# package -> the factoryOS packages it may import (besides itself and fos_pb).
ALLOWED: dict[str, set[str]] = {
    "fos_raft.model": set(),
    "fos_raft.textsafe": set(),  # escaping cluster text for terminals, pages and logs
    "fos_raft.planner": {"fos_raft.model"},
    "fos_raft.state": {"fos_raft.model", "fos_raft.planner"},
    "fos_raft.runtime": {"fos_raft.textsafe"},
    "fos_raft.security": {"fos_raft.model", "fos_raft.runtime"},
    "fos_raft.replica": {"fos_raft.model", "fos_raft.planner", "fos_raft.state",
                         "fos_raft.runtime"},
    "fos_raft.api": {"fos_raft.model", "fos_raft.textsafe", "fos_raft.planner", "fos_raft.state",
                     "fos_raft.runtime", "fos_raft.security", "fos_raft.replica"},
    # genealogy: the index format and the trace walk are pure; the readers (LMDB, gRPC)
    # sit above them. Shared by fosctl and the agents (fos_raft may not import fos_agent).
    "fos_raft.lineage.index": {"fos_raft.model"},  # the batch id grammar
    "fos_raft.lineage.trace": {"fos_raft.lineage.index", "fos_raft.model"},
    "fos_raft.lineage": {"fos_raft.lineage.index", "fos_raft.lineage.trace",
                         "fos_raft.runtime", "fos_raft.security"},
    "fos_raft.cli": {"fos_raft.model", "fos_raft.textsafe", "fos_raft.planner", "fos_raft.state",
                     "fos_raft.runtime", "fos_raft.security", "fos_raft.replica",
                     "fos_raft.api", "fos_raft.lineage", "fos_raft.lineage.index",
                     "fos_raft.lineage.trace"},
    "fos_agent.protocol": {"fos_raft.model", "fos_raft.lineage.index"},
    # the runtime's time rules, pure: driven by the runtime and by the simulation
    "fos_agent.rules": {"fos_agent.protocol", "fos_raft.model"},
    "fos_agent.storage": {"fos_agent.protocol", "fos_raft.model", "fos_raft.lineage",
                          "fos_raft.runtime",  # lmdb_file: checked before it is mapped
                          "fos_raft.lineage.index"},
    "fos_agent.core": {"fos_agent.protocol", "fos_agent.rules", "fos_agent.storage",
                       "fos_raft.lineage", "fos_raft.runtime"},
    "fos_agent.net": {"fos_agent.protocol", "fos_agent.rules", "fos_agent.core", "fos_raft.model",
                      "fos_raft.runtime", "fos_raft.lineage", "fos_raft.security"},
    "fos_agent.runtime": {"fos_agent.protocol", "fos_agent.rules", "fos_agent.storage",
                          "fos_agent.core", "fos_agent.net", "fos_raft.model", "fos_raft.api",
                          "fos_raft.runtime", "fos_raft.security"},
    "fos_agent.testing": {"fos_agent.protocol", "fos_agent.audit", "fos_raft.model",
                          "fos_agent.storage",  # wal_chain, walstore: real WALs, no network
                          "fos_agent.testing.factory"},  # the kit's public entry names it
    # the simulated factory: the real protocol and the real coordinator state machine and
    # planner on virtual time; no I/O, clock or randomness of its own (see below)
    "fos_agent.testing.factory": {"fos_agent.protocol", "fos_agent.rules", "fos_agent.audit",
                                  "fos_agent.testing", "fos_raft.model", "fos_raft.planner",
                                  "fos_raft.state"},
    # the floor display: a coordinator client that reads agents' Stats through fos_pb only
    "fos_dashboard.view": {"fos_raft.model"},  # the one vocabulary of node states (pure)
    "fos_dashboard": {"fos_dashboard.view", "fos_raft.textsafe", "fos_raft.model", "fos_raft.api",
                      "fos_raft.security", "fos_raft.runtime", "fos_raft.lineage",
                      "fos_raft.lineage.trace", "fos_raft.lineage.index"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by absolute name (``from a import b`` yields a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute imports)"
            assert node.module is not None
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, set[str]]:
    modules: dict[str, set[str]] = {}
    for top in TOP:
        for path in sorted((ROOT / top).rglob("*.py")):
            modules[_module_name(path)] = _imports(path)
    return modules


MODULES = _modules()


def _internal(deps: set[str]) -> set[str]:
    """The factoryOS modules among ``deps`` (a ``from pkg import name`` names a module only
    when ``pkg.name`` is one)."""
    return {d for d in deps if d in MODULES}


def _package(module: str) -> str:
    """The package a module belongs to for the layering rules (its first two name parts)."""
    for pkg in sorted(ALLOWED, key=len, reverse=True):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return ".".join(module.split(".")[:2])


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_tree_is_found() -> None:
    assert "fos_raft.planner.plan" in MODULES
    assert "fos_agent.protocol.machine" in MODULES
    assert "bench.sim.run" in MODULES


def test_no_import_circles() -> None:
    graph = {m: _internal(deps) - _ancestors(m) - {m} for m, deps in MODULES.items()}
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    circles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    assert circles == [], f"import circles: {circles}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in PURE))
def test_pure_modules_do_no_io(module: str) -> None:
    deps = MODULES[module]
    bad = sorted(d for d in deps if d.split(".")[0] in IMPURE)
    assert bad == [], f"{module} (pure) imports {bad}"
    impure_internal = sorted(d for d in _internal(deps) if _package(d) not in PURE)
    assert impure_internal == [], f"{module} (pure) imports {impure_internal}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES
                                          if _package(m) == "fos_agent.testing.factory"))
def test_the_simulated_factory_reads_no_clock(module: str) -> None:
    """Its own modules import no I/O, clock or randomness: a run is a function of its seed
    (the seeded ``random.Random`` is passed in). It may use the test kit, whose audit
    reads WAL files only when asked."""
    bad = sorted(d for d in MODULES[module] if d.split(".")[0] in IMPURE)
    assert bad == [], f"{module} (virtual time) imports {bad}"


def test_dependency_direction() -> None:
    wrong: dict[str, set[str]] = defaultdict(set)
    for module, deps in MODULES.items():
        top = module.split(".")[0]
        for dep in _internal(deps):
            dep_top = dep.split(".")[0]
            if top == "fos_raft" and dep_top in ("fos_agent", "fos_dashboard", "bench"):
                wrong[module].add(dep)
            if top == "fos_agent" and dep_top in ("fos_dashboard", "bench"):
                wrong[module].add(dep)
            if top == "fos_dashboard" and dep_top in ("fos_agent", "bench"):
                wrong[module].add(dep)
    assert dict(wrong) == {}


def test_packages_import_only_the_layers_below_them() -> None:
    wrong: dict[str, set[str]] = defaultdict(set)
    for module, deps in MODULES.items():
        pkg = _package(module)
        if pkg not in ALLOWED:
            continue
        for dep in _internal(deps) - _ancestors(module):
            dep_pkg = _package(dep)
            if dep_pkg != pkg and dep_pkg not in ALLOWED[pkg]:
                wrong[module].add(dep)
    assert dict(wrong) == {}, "imports against the layering (see ALLOWED): " + repr(dict(wrong))
