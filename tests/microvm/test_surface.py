"""The declared surface of the microVM parts, and QMP kept inside the QEMU backend."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import infra_operator


@pytest.mark.parametrize("module", ["infra_operator.images", "infra_operator.backends.qemu"])
def test_all_names_exist(module: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__all__ == sorted(imported.__all__)
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ names missing {name}"


def test_only_the_qemu_backend_imports_qmp() -> None:
    root = Path(infra_operator.__file__).parent
    for path in root.rglob("*.py"):
        if "backends/qemu" in path.as_posix():
            continue
        text = path.read_text()
        assert "qemu.qmp" not in text, f"{path} imports qemu.qmp"
