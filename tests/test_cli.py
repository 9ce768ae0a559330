"""The command line as a user meets it: help, exit codes, one-line errors."""

from __future__ import annotations

from helpers import assert_user_error

STAGE_COMMANDS = [
    "download",
    "featurize",
    "train-teacher",
    "distill",
    "thin",
    "export",
    "build-kernel",
    "bench",
]


def test_help_lists_every_stage(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in [*STAGE_COMMANDS, "run", "status"]:
        assert command in result.stdout


def test_stage_options(cli):
    result = cli("distill", "--help")
    assert result.returncode == 0
    for option in ("--config", "--set", "--force", "--resume"):
        assert option in result.stdout


def test_bad_pipeline_errors(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworkspace: w\nfeaturize: [\n")
    assert_user_error(cli("status", "-c", str(bad)), str(bad), "YAML syntax error")
    assert_user_error(cli("status", "-c", str(tmp_path / "none.yaml")), "pipeline file not found")
    good = tmp_path / "good.yaml"
    good.write_text(f"name: x\nworkspace: {tmp_path / 'ws'}\n")
    assert_user_error(cli("run", "-c", str(good), "--from", "nope"), "unknown stage 'nope'")
    assert_user_error(cli("status", "-c", str(good), "--set", "bogus.key=1"), "bogus: unknown key")


def test_missing_required_option_is_a_usage_error(cli):
    result = cli("featurize")
    assert result.returncode == 1 and "--config" in result.stderr and "Traceback" not in result.stderr


def test_status_of_a_fresh_workspace(cli, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(f"name: x\nworkspace: {tmp_path / 'ws'}\n")
    result = cli("status", "-c", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("missing") == len(STAGE_COMMANDS)
