"""The package's shape: imports point down, and each package declares its surface."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import infra_operator

pytestmark = pytest.mark.unit

PACKAGE = Path(infra_operator.__file__).parent

# What each part may import from the package. Anything not listed is an upward import.
BASE = {"errors", "config", "_pids", "__init__"}
ALLOWED: dict[str, set[str]] = {
    "guest": {"guest"},
    "errors": set(),
    "config": set(),
    "_pids": set(),
    "languages": {"languages", "errors"},
    "backends": {"backends", "guest"} | BASE,
    "images": {"images", "languages", "backends", "guest"} | BASE,  # the initramfs carries the agent
    "executor": {"executor", "backends", "guest", "images", "languages"} | BASE,
    "jobs": {"jobs"} | BASE,
    "submissions": {"submissions", "executor"} | BASE,
    "cluster": {"cluster", "submissions", "executor"} | BASE,
    "services": {"services", "executor", "backends", "images", "languages", "jobs", "guest", "submissions",
                 "cluster"} | BASE,
    "benchmark": {"benchmark", "services", "executor", "backends", "images", "languages", "jobs"} | BASE,
    "verify": {"verify", "services", "executor", "images", "languages", "jobs"} | BASE,
    "api": {"api", "services", "executor", "backends", "images", "languages", "jobs", "submissions"} | BASE,
    "cli": {"cli", "api", "services", "executor", "backends", "images", "languages", "jobs", "guest",
            "benchmark", "verify", "cluster"} | BASE,
    "__main__": {"cli"},
    "__init__": set(),
}


def _part(module_path: Path) -> str:
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(module_path: Path) -> set[str]:
    tree = ast.parse(module_path.read_text())
    own = module_path.relative_to(PACKAGE).parent.parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = own[: len(own) - (node.level - 1)] if node.level > 1 else own
                target = [*base, *(node.module.split(".") if node.module else [])]
                if target:
                    found.add(target[0])
                else:  # `from .. import x` at the top: a part by name, or the package's own __init__
                    found.update(alias.name if (PACKAGE / alias.name).exists() or (PACKAGE / f"{alias.name}.py").exists()
                                 else "__init__" for alias in node.names)
            elif node.module and node.module.startswith("infra_operator"):
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("infra_operator."):
                    found.add(alias.name.split(".")[1])
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module_path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_imports(module_path: Path) -> None:
    part = _part(module_path)
    assert part in ALLOWED, f"{part} is a new part: say in ALLOWED what it may import"
    upward = _imported_parts(module_path) - ALLOWED[part] - {part}
    assert not upward, f"{module_path.relative_to(PACKAGE)} imports {sorted(upward)}, above {part}"


def _imported_modules(module_path: Path) -> set[tuple[str, ...]]:
    """What ``module_path`` imports from the package, as paths of names below it
    (``("executor", "_executor")``); for ``from X import y`` both X and X.y, since y may
    be a module."""
    own = module_path.relative_to(PACKAGE).parent.parts
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(module_path.read_text())):
        if isinstance(node, ast.Import):
            found.update(tuple(alias.name.split(".")[1:]) for alias in node.names
                         if alias.name.startswith("infra_operator."))
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        names = node.module.split(".") if node.module else []
        if node.level:
            target = (*own[: len(own) - (node.level - 1)], *names)
        elif names[:1] == ["infra_operator"]:
            target = tuple(names[1:])
        else:
            continue
        found.add(target)
        found.update((*target, alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("module_path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_module_of_another_package(module_path: Path) -> None:
    """A private module (``_name``) serves its own package and the packages inside it;
    everyone else goes through the package's declared surface."""
    importer = module_path.relative_to(PACKAGE).parent.parts
    for target in _imported_modules(module_path):
        for depth, name in enumerate(target):
            if name.startswith("_") and not name.startswith("__"):
                owner = target[:depth]
                assert importer[: len(owner)] == owner, (
                    f"{module_path.relative_to(PACKAGE)} imports {'.'.join(target)}, private to "
                    f"{'.'.join(('infra_operator', *owner))}")
                break


def test_guest_uses_only_the_standard_library() -> None:
    import sys

    for module_path in (PACKAGE / "guest").glob("*.py"):
        for node in ast.walk(ast.parse(module_path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                assert top == "__future__" or top in sys.stdlib_module_names, f"{module_path.name} imports {name}"


def _outside_imports(module_path: Path) -> set[str]:
    """Every module an absolute import statement of this file names, in any spelling."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module_path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_qemu_backend_imports_qmp() -> None:
    importers = {
        path.relative_to(PACKAGE).as_posix()
        for path in MODULES
        if any(name == "qemu" or name.startswith("qemu.") for name in _outside_imports(path))
    }
    assert importers, "the QEMU backend's QMP client is not found: this check would pass whatever happened"
    assert all(path.startswith("backends/qemu/") for path in importers), sorted(importers)


PACKAGES = sorted(
    info.name for info in pkgutil.walk_packages(infra_operator.__path__, "infra_operator.") if info.ispkg
)


@pytest.mark.parametrize("name", PACKAGES)
def test_declared_surface_is_honest(name: str) -> None:
    package = importlib.import_module(name)
    declared = getattr(package, "__all__", None)
    assert declared is not None, f"{name} declares no __all__"
    for exported in declared:
        assert hasattr(package, exported), f"{name}.__all__ names {exported}, which it lacks"
    source = ast.parse(Path(package.__file__).read_text())  # type: ignore[arg-type]
    imported = {alias.asname or alias.name for node in ast.walk(source) if isinstance(node, ast.ImportFrom)
                and node.level for alias in node.names}
    used_inside = {node.id for node in ast.walk(source) if isinstance(node, ast.Name)}
    unlisted = imported - set(declared) - used_inside
    assert not unlisted, f"{name} re-exports {sorted(unlisted)} without listing them in __all__"
