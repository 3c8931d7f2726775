"""``payments router …`` against a running router."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner

from services.cli import main
from tests.router.conftest import SERVICE_TOKEN, RouterFactory


async def test_the_cli_prints_a_health_table_and_engages_an_audited_kill_switch(
    make_router: RouterFactory,
) -> None:
    router = await make_router()
    env = {"ROUTER_URL": router.url, "SERVICE_TOKEN": SERVICE_TOKEN}
    runner = CliRunner()
    # The CLI runs its own event loop, so it gets a thread of its own.
    table = await asyncio.to_thread(runner.invoke, main, ["router", "channels"], env=env)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["channel", "bank", "cur", "breaker"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(rows) == {"ch_north", "ch_atlas", "ch_meridian"}
    assert all(row[3] == "closed" for row in rows.values())

    killed = await asyncio.to_thread(
        runner.invoke,
        main,
        ["router", "kill", "ch_atlas", "submit", "--reason", "incident 7", "--actor", "ops"],
        env=env,
    )
    assert killed.exit_code == 0, killed.output
    assert "ch_atlas submit: engaged by ops (incident 7)" in killed.output
    listing = await router.call("GET", "/v1/channels/ch_atlas/kill_switches")
    assert listing["audit"][0]["reason"] == "incident 7"
    table = await asyncio.to_thread(runner.invoke, main, ["router", "channels"], env=env)
    atlas = next(line for line in table.output.splitlines() if line.startswith("ch_atlas"))
    assert atlas.split()[-1] == "submit"

    bad = await asyncio.to_thread(
        runner.invoke, main, ["router", "kill", "ch_nope", "submit", "--reason", "x"], env=env
    )
    assert bad.exit_code != 0 and "channel_not_found" in bad.output
