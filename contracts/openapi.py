"""OpenAPI 3.1 documents generated from the wire models.

Each service's contract module declares its operations as ``Operation`` rows; ``build`` turns
them into a document whose schemas come from msgspec. The generated document is checked in
under ``contracts/openapi/<service>.json``; a test fails when it drifts from the code, and each
service serves it at ``/openapi.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from contracts.wire import Problem

OPENAPI_DIR = Path(__file__).parent / "openapi"


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # path | query | header
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    request: Any = None  # a msgspec type, or None
    responses: dict[int, Any] = field(default_factory=dict)  # status -> type or None
    params: tuple[Param, ...] = ()
    security: str | None = None  # name of a security scheme, None = public
    request_content_types: tuple[str, ...] = ("application/json",)
    response_content_type: str = "application/json"
    error_codes: tuple[int, ...] = (400, 401, 404, 422)
    tags: tuple[str, ...] = ()


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "serviceToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Service-Token",
        "description": "Shared internal token for service-to-service calls.",
    },
    "merchantKey": {"type": "http", "scheme": "bearer", "description": "Merchant secret key."},
    "adminKey": {"type": "http", "scheme": "bearer", "description": "Operator admin key."},
    "financeKey": {"type": "http", "scheme": "bearer", "description": "Finance staff key."},
}


def _ref_hook(name: str) -> str:
    return f"#/components/schemas/{name}"


def build(title: str, version: str, operations: list[Operation]) -> dict[str, Any]:
    types: list[Any] = [Problem]
    for op in operations:
        if op.request is not None:
            types.append(op.request)
        types.extend(t for t in op.responses.values() if t is not None)
    # Deduplicate while keeping order; msgspec names components after the Struct names.
    seen: list[Any] = []
    for t in types:
        if t not in seen:
            seen.append(t)
    schemas, components = msgspec.json.schema_components(seen, ref_template=_ref_hook("{name}"))
    schema_of = dict(zip(seen, schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    used_security: set[str] = set()
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": {},
        }
        if op.tags:
            item["tags"] = list(op.tags)
        if op.params:
            item["parameters"] = [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in op.params
            ]
        if op.request is not None:
            item["requestBody"] = {
                "required": True,
                "content": {
                    ct: {"schema": schema_of[op.request]} for ct in op.request_content_types
                },
            }
        for status, model in sorted(op.responses.items()):
            response: dict[str, Any] = {"description": _reason(status)}
            if model is not None:
                response["content"] = {op.response_content_type: {"schema": schema_of[model]}}
            item["responses"][str(status)] = response
        for status in sorted(set(op.error_codes) | _common_error_codes(op)):
            item["responses"].setdefault(
                str(status),
                {
                    "description": _reason(status),
                    "content": {"application/problem+json": {"schema": schema_of[Problem]}},
                },
            )
        if op.security:
            item["security"] = [{op.security: []}]
            used_security.add(op.security)
        paths.setdefault(op.path, {})[op.method.lower()] = item

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }
    if used_security:
        document["components"]["securitySchemes"] = {
            name: SECURITY_SCHEMES[name] for name in sorted(used_security)
        }
    return document


# Operations behind these schemes pass the per-key rate limiter (services/kit/ratelimit.py).
RATE_LIMITED_SCHEMES = frozenset({"merchantKey", "adminKey"})


def _common_error_codes(op: Operation) -> set[int]:
    """Answers the shared middleware can give to any operation, whatever its own list says:
    a malformed path or query (400), a missing credential (401), a body of the wrong type or
    size (413, 415), invalid parameters (422) and the rate limit (429)."""
    codes = {400}
    if op.security:
        codes.add(401)
    if op.security in RATE_LIMITED_SCHEMES:
        codes.add(429)
    if op.request is not None:
        codes |= {413, 415, 422}
    if any(p.location == "query" for p in op.params):
        codes.add(422)
    return codes


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def checked_in_path(service: str) -> Path:
    return OPENAPI_DIR / f"{service}.json"
