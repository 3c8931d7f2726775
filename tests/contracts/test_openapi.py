"""The checked-in OpenAPI documents are exactly what the code generates."""

from __future__ import annotations

import importlib

import pytest

from contracts.generate import SERVICES
from contracts.openapi import checked_in_path, render


@pytest.mark.parametrize("service", SERVICES)
def test_checked_in_openapi_matches_generated(service: str) -> None:
    module = importlib.import_module(f"contracts.{service}")
    generated = render(module.document())
    path = checked_in_path(service)
    assert path.exists(), f"{path} missing: run `make openapi`"
    assert path.read_text() == generated, f"{path} is stale: run `make openapi` and commit it"


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_declares_problem_responses(service: str) -> None:
    document = importlib.import_module(f"contracts.{service}").document()
    assert document["openapi"] == "3.1.0"
    for path, item in document["paths"].items():
        for method, op in item.items():
            errors = [s for s in op["responses"] if s.startswith(("4", "5"))]
            assert errors, f"{method.upper()} {path} declares no error responses"
            for status in errors:
                content = op["responses"][status].get("content", {})
                assert "application/problem+json" in content, (service, path, method, status)
