"""The simulator refuses to start on a bad configuration, naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.banksim.conftest import bank, banksim_env
from tests.support.processes import ServiceProcess, free_port


@pytest.mark.parametrize(
    ("config", "extra", "message"),
    [
        (
            {"banks": {"b1": bank(success_rate=2)}},
            {},
            "bank b1: success_rate: must be between 0 and 1",
        ),
        ({"banks": {"b1": bank()}}, {"BANKSIM_PORT": "http"}, "BANKSIM_PORT must be an integer"),
        ({"banks": {"b1": bank()}}, {"BANKSIM_CLIENT_KEY": "short"}, "BANKSIM_CLIENT_KEY must be"),
    ],
)
def test_a_bad_config_file_or_variable_stops_the_process_with_a_clear_message(
    run_id: str, tmp_path: Path, config: dict, extra: dict[str, str], message: str
) -> None:
    path = tmp_path / "banks.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**banksim_env(f"{run_id}_start", path, tmp_path / "drop", port), **extra}
    proc = ServiceProcess("banksim-startup", "services.banksim", env, port)
    with pytest.raises(AssertionError, match="exited with 2") as failure:
        proc.start(ready_timeout_s=20)
    assert message in str(failure.value)
