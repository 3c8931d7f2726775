"""The risk engine is pure domain: no I/O library is imported anywhere in it."""

from __future__ import annotations

import ast
from pathlib import Path

import services.payout.risk

FORBIDDEN = {"aiohttp", "asyncpg", "aio_pika", "structlog", "tenacity", "socket", "requests"}


def test_no_module_of_the_risk_package_imports_an_io_library() -> None:
    package = Path(services.payout.risk.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
