"""The attempts export tells a reader whether it is complete (``?trailer=true``)."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.router.conftest import RouterFactory, submission

PIN_NORTH = [{"id": "n", "merchant_id": "*", "action": "pin", "channels": ["ch_north"]}]
WINDOW = {"bank": "northbank", "from": "2000-01-01", "to": "2999-01-01T00:00:00Z"}


async def _export(router: Any, **params: str) -> list[dict[str, Any]]:
    async with router.session.get(
        router.url + "/v1/attempts/export", params={**WINDOW, **params}, headers=router.headers
    ) as resp:
        assert resp.status == 200
        return [msgspec.json.decode(line) for line in (await resp.read()).splitlines()]


async def test_export_past_the_cap_says_truncated(make_router: RouterFactory) -> None:
    router = await make_router(rules=PIN_NORTH, env={"ROUTER_EXPORT_ROWS_MAX": "2"})
    views = [await router.call("POST", "/v1/submissions", json=submission()) for _ in range(3)]
    rows = await _export(router, trailer="true")
    assert rows[-1] == {"end": True, "rows": 2, "truncated": True}
    assert [r["attempt_id"] for r in rows[:-1]] == [v["attempt_id"] for v in views[:2]]
    # Without the trailer the format is unchanged: attempts only, cut at the cap.
    plain = await _export(router)
    assert [r["attempt_id"] for r in plain] == [v["attempt_id"] for v in views[:2]]


async def test_export_at_the_cap_is_complete(make_router: RouterFactory) -> None:
    router = await make_router(rules=PIN_NORTH, env={"ROUTER_EXPORT_ROWS_MAX": "3"})
    views = [await router.call("POST", "/v1/submissions", json=submission()) for _ in range(3)]
    rows = await _export(router, trailer="true")
    assert rows[-1] == {"end": True, "rows": 3, "truncated": False}
    assert [r["attempt_id"] for r in rows[:-1]] == [v["attempt_id"] for v in views]
    empty = await _export(router, trailer="true", bank="atlas")
    assert empty == [{"end": True, "rows": 0, "truncated": False}]
