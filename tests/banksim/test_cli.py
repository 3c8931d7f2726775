"""``payments banksim``: statements from the command line, and configuration checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from services.cli import main
from tests.banksim.conftest import banksim_env
from tests.support import infra
from tests.support.processes import ServiceProcess


def test_check_config_lists_the_banks_and_names_the_problem_of_a_bad_file(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["banksim", "check-config"])
    assert ok.exit_code == 0, ok.output
    assert {"northbank", "meridian", "atlas"} <= {
        line.split(":")[0] for line in ok.output.split("\n") if line
    }
    bad = tmp_path / "banks.yaml"
    bad.write_text(yaml.safe_dump({"banks": {"b1": {"bic": "TESTDEFF"}}}))
    failed = runner.invoke(main, ["banksim", "check-config", str(bad)])
    assert failed.exit_code != 0 and "bank b1" in failed.output and "is required" in failed.output


def test_the_statement_command_writes_the_file_and_answer_key(
    run_id: str, banksim_paths: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = banksim_paths
    env = banksim_env(f"{run_id}_cli", config, tmp_path / "drop", 1)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert env["DATABASE_URL"] == infra.database_url()
    result = CliRunner().invoke(
        main,
        [
            "banksim",
            "statement",
            "--bank",
            "mtbank",
            "--date",
            "2025-06-30",
            "--currency",
            "EUR",
            "--discrepancy",
            "unknown_line",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(
        p.relative_to(tmp_path / "drop").as_posix() for p in (tmp_path / "drop").rglob("*.*")
    )
    assert files == [
        "mtbank/answers/mtbank_EUR_20250630_001.answers.json",
        "mtbank/inbox/mtbank_EUR_20250630_001.sta",
    ]
    refused = CliRunner().invoke(
        main,
        [
            "banksim",
            "statement",
            "--bank",
            "mtbank",
            "--date",
            "2025-06-30",
            "--discrepancy",
            "drop_line",
        ],
    )
    assert refused.exit_code != 0 and "no_line_for_discrepancy" in refused.output


def test_behave_switches_a_running_simulator_and_reports_bad_input(
    banksim: ServiceProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKSIM_URL", banksim.url)
    monkeypatch.setenv("SERVICE_TOKEN", banksim.env["SERVICE_TOKEN"])
    runner = CliRunner()
    try:
        result = runner.invoke(
            main,
            [
                "banksim",
                "behave",
                "--bank",
                "clibank",
                "--mode",
                "lost_responses",
                "--set",
                "lost_response_rate=0.25",
                "--set",
                "lost_response_mode=drop",
            ],
        )
        assert result.exit_code == 0, result.output
        shown = json.loads(result.output)
        assert shown["mode"] == "lost_responses" and shown["lost_response_rate"] == 0.25
        assert shown["lost_response_mode"] == "drop"
        refused = runner.invoke(
            main,
            ["banksim", "behave", "--bank", "clibank", "--mode", "slow", "--set", "success_rate=2"],
        )
        assert refused.exit_code != 0 and "validation_error" in refused.output
        unknown = runner.invoke(main, ["banksim", "behave", "--bank", "nobank", "--mode", "slow"])
        assert unknown.exit_code != 0 and "bank_not_found" in unknown.output
    finally:
        runner.invoke(main, ["banksim", "behave", "--bank", "clibank", "--mode", "normal"])
