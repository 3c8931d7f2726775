"""Regenerate the checked-in OpenAPI documents: ``python -m contracts.generate [SERVICE...]``.

Each ``contracts/<service>.py`` exposes ``document() -> dict``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from contracts.openapi import checked_in_path, render

SERVICES = ("ledger", "router", "payout", "recon", "banksim")


def documents(services: tuple[str, ...] = SERVICES) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for service in services:
        module = importlib.import_module(f"contracts.{service}")
        out[service] = module.document()
    return out


def main() -> None:
    chosen = tuple(sys.argv[1:]) or SERVICES
    unknown = set(chosen) - set(SERVICES)
    if unknown:
        raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}")
    for service, document in documents(chosen).items():
        path = checked_in_path(service)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
