"""`bmbench data verify|synth` through the CLI, on the generated SYNTHETIC set and on broken inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.data.layout import DATA_FOLDER
from bmbench.data.source import resolve_data, synthetic_dir
from bmbench.datasets import TCIA_URL
from bmbench.errors import DataNotFoundError

runner = CliRunner()


@pytest.mark.slow
def test_verify_synthetic_generates_once_then_passes() -> None:
    result = runner.invoke(app, ["data", "verify", "--data", "synthetic", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "3,118" in result.output
    root = synthetic_dir() / DATA_FOLDER
    assert root.is_dir()
    assert resolve_data("synthetic") == root  # reused, not regenerated


def test_no_data_given_explains_where_to_get_it() -> None:
    result = runner.invoke(app, ["data", "verify"])
    assert result.exit_code == 2
    assert TCIA_URL in result.output and "BMBENCH_DATA" in result.output and "Traceback" not in result.output
    with pytest.raises(DataNotFoundError):
        resolve_data(None)


def test_wrong_path_explains(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "verify", "--data", str(tmp_path / "nope"), "--no-decode"])
    assert result.exit_code == 2
    assert "nope" in result.output and TCIA_URL in result.output


def test_env_variable_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMBENCH_DATA", str(tmp_path))
    assert resolve_data(None) == tmp_path
    assert resolve_data(str(tmp_path / "x")) == tmp_path / "x"  # --data wins over the variable


def test_synth_refuses_existing_target(tmp_path: Path) -> None:
    (tmp_path / DATA_FOLDER).mkdir()
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists" in result.output
