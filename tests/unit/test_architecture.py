"""The house rules on who may import whom, read from the source with `ast` (nothing here imports the code).

- Higher floors use lower ones, never the reverse (the floors of docs/architecture.md).
- Runtime code never imports the test doubles and demo helpers in `guanaco_dagster/testing/`.
- First-party modules import each other without circles.
- The model server (`inference/`) stands alone: its image holds that folder only.
- The product areas (submissions, beta chat, feedback analytics) are plain Python, free of Dagster.
"""

from __future__ import annotations

import ast
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY_PACKAGES = ("guanaco_dagster", "assets", "sensors", "resources", "inference")
# The test doubles and demo helpers: only they, tests/ and benchmarks/ may import them.
TESTING_PACKAGE = "guanaco_dagster.testing"
PRODUCT_AREAS = (
    "guanaco_dagster.submissions",
    "guanaco_dagster.beta",
    "guanaco_dagster.feedback",
    "guanaco_dagster.arena",
)
# The floors of docs/architecture.md: a module imports from its own floor or lower ones.
FLOORS = {
    "inference": 0,
    "guanaco_dagster.store": 1,
    "guanaco_dagster.config": 1,
    "guanaco_dagster.ports": 1,
    "guanaco_dagster.stages": 2,
    "guanaco_dagster.deployment": 2,
    "guanaco_dagster.settings": 2,
    # Config groups of floor-3 areas that `Settings` inherits: plain pydantic models, nothing else.
    "guanaco_dagster.arena.config": 2,
    "guanaco_dagster.feedback.category_config": 2,
    "guanaco_dagster.submissions": 3,
    "guanaco_dagster.beta": 3,
    "guanaco_dagster.feedback": 3,
    "guanaco_dagster.arena": 3,
    "guanaco_dagster.service": 4,
    "resources": 5,
    "assets": 5,
    "sensors": 5,
    "guanaco_dagster.definitions": 5,
    "guanaco_dagster.executors": 5,
    "guanaco_dagster.embedded": 6,
    "guanaco_dagster.cli": 7,
    "guanaco_dagster.testing": 8,
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is written, and whether it runs when the module loads."""

    importer: str
    path: Path
    line: int
    target: str
    at_import_time: bool

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(folders: tuple[str, ...]) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


@cache
def _first_party_modules() -> frozenset[str]:
    return frozenset(_module_name(path) for path in _python_files(FIRST_PARTY_PACKAGES))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The dotted module an `from ... import` names, with relative levels resolved against the importer."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = _absolute(importer, is_package, node)
    # `from package import submodule` depends on the submodule, not only on the package.
    known = _first_party_modules()
    return [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]


def _imports_in(path: Path) -> list[Import]:
    importer = _module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(
                Import(importer, path, node.lineno, target, at_import_time)
                for target in _targets(importer, is_package, node)
            )
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            at_import_time = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, at_import_time)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, at_import_time)

    visit(_parse(path), True)
    return found


def _parse(path: Path) -> ast.Module:
    # CPython 3.11.7 raises "AST constructor recursion depth mismatch" when a finalizer (an earlier test's
    # pooled database connection, collected as garbage) runs inside `ast.parse`: no collection starts there.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    finally:
        if enabled:
            gc.enable()


def _all_imports(folders: tuple[str, ...]) -> list[Import]:
    return [found for path in _python_files(folders) for found in _imports_in(path)]


def _runtime_folders() -> tuple[str, ...]:
    """Every top-level folder holding Python except the environment, hidden folders and the testing areas."""
    skipped = {"tests", "benchmarks", "build", "dist"}
    folders = sorted(
        entry.name
        for entry in ROOT.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in skipped
    )
    return tuple(folder for folder in folders if any((ROOT / folder).rglob("*.py")))


def _is_within(target: str, packages: tuple[str, ...]) -> bool:
    return any(target == package or target.startswith(package + ".") for package in packages)


def _is_dagster(target: str) -> bool:
    # dagster itself and its libraries (dagster_aws, dagster_k8s, dagster_postgres, ...).
    top = target.split(".")[0]
    return top == "dagster" or top.startswith("dagster_")


def _describe(violations: list[Import]) -> str:
    return "\n".join(f"  {v.where()} imports {v.target}" for v in violations)


def test_runtime_code_never_imports_the_test_doubles_or_demo_helpers():
    top_level_scripts = [found for path in sorted(ROOT.glob("*.py")) for found in _imports_in(path)]
    runtime = [
        found
        for found in [*_all_imports(_runtime_folders()), *top_level_scripts]
        if _is_within(found.target, (TESTING_PACKAGE,)) and not _is_within(found.importer, (TESTING_PACKAGE,))
    ]
    assert not runtime, f"runtime modules import {TESTING_PACKAGE}:\n{_describe(runtime)}"


def test_the_guard_sees_every_first_party_package_and_their_imports():
    # A guard that silently reads nothing would pass every rule below.
    assert set(_runtime_folders()) >= set(FIRST_PARTY_PACKAGES)
    targets = {found.target for found in _all_imports(FIRST_PARTY_PACKAGES)}
    assert "dagster" in targets
    assert "guanaco_dagster.submissions.lifecycle" in targets


def test_first_party_modules_import_each_other_without_circles():
    # Only imports that run when a module loads can form a circle that breaks loading; imports inside
    # functions are deliberately lazy (the CLI keeps SQLAlchemy out of `--help` that way) and are not
    # counted, nor are imports under `if TYPE_CHECKING:`.
    known = _first_party_modules()
    edges: dict[tuple[str, str], Import] = {}
    graph: dict[str, set[str]] = {module: set() for module in known}
    for found in _all_imports(FIRST_PARTY_PACKAGES):
        if found.at_import_time and found.target in known and found.target != found.importer:
            graph.setdefault(found.importer, set()).add(found.target)
            edges.setdefault((found.importer, found.target), found)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        # graphlib lists the circle against the edges' direction: each node is imported by the next.
        circle = list(reversed(error.args[1]))
        steps = [edges[(a, b)] for a, b in zip(circle, circle[1:], strict=False)]
        raise AssertionError("import circle: " + " -> ".join(circle) + "\n" + _describe(steps)) from None


def test_the_model_server_imports_neither_dagster_nor_the_platform():
    # The inference image copies only inference/, so anything else first-party would be missing there.
    platform = tuple(package for package in FIRST_PARTY_PACKAGES if package != "inference")
    violations = [
        found
        for found in _all_imports(("inference",))
        if _is_dagster(found.target) or _is_within(found.target, platform)
    ]
    assert not violations, f"inference/ reaches outside itself:\n{_describe(violations)}"


def _chain_to_dagster(start: str, imports_by_module: dict[str, list[Import]]) -> list[Import] | None:
    """The imports that lead from `start` to Dagster, through first-party modules; None when none do."""
    chains: dict[str, list[Import]] = {start: []}
    waiting = [start]
    while waiting:
        module = waiting.pop(0)
        for found in imports_by_module.get(module, []):
            if _is_dagster(found.target):
                return [*chains[module], found]
            if found.target in _first_party_modules() and found.target not in chains:
                chains[found.target] = [*chains[module], found]
                waiting.append(found.target)
    return None


def test_the_product_areas_reach_nothing_from_dagster_directly_or_through_other_modules():
    # Lazy imports count too: the areas are plain Python that the service and CLI use without Dagster.
    imports_by_module: dict[str, list[Import]] = {}
    for found in _all_imports(FIRST_PARTY_PACKAGES):
        imports_by_module.setdefault(found.importer, []).append(found)
    areas = sorted(module for module in _first_party_modules() if _is_within(module, PRODUCT_AREAS))
    assert areas, "found no modules in the product areas"
    chains = {module: _chain_to_dagster(module, imports_by_module) for module in areas}
    reached = {module: chain for module, chain in chains.items() if chain}
    assert not reached, "product areas reach Dagster:\n" + "\n".join(
        f"{module}:\n{_describe(chain)}" for module, chain in reached.items()
    )


def _floor(module: str) -> int | None:
    owners = [area for area in FLOORS if _is_within(module, (area,))]
    return FLOORS[max(owners, key=len)] if owners else None


def test_every_first_party_module_has_a_floor():
    # The bare `guanaco_dagster` package is only a namespace.
    homeless = sorted(m for m in _first_party_modules() if _floor(m) is None and m != "guanaco_dagster")
    assert not homeless, f"give these a floor in FLOORS and docs/architecture.md: {homeless}"


def test_higher_floors_use_lower_ones_never_the_reverse():
    # Every import counts here, lazy ones too: an import inside a function is still a dependency.
    upward = [
        found
        for found in _all_imports(FIRST_PARTY_PACKAGES)
        if None not in (_floor(found.importer), _floor(found.target))
        and _floor(found.target) > _floor(found.importer)
    ]
    assert not upward, "imports that run up the floors:\n" + "\n".join(
        f"  {found.where()} ({_floor(found.importer)}) imports {found.target} ({_floor(found.target)})"
        for found in upward
    )
