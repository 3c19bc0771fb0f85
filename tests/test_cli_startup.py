"""`bmbench --help` and `bmbench score` must not import torch (or OpenCV): they start fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import PredsWriter

PROBE = """
import sys
from typer.testing import CliRunner
from bmbench.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchvision", "cv2", "timm", "sklearn", "datasets") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
print("EXIT:" + str(result.exit_code))
"""


def _probe(*args: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return out.stdout


def test_help_imports_no_heavy_packages() -> None:
    out = _probe("--help")
    assert "HEAVY:\n" in out and "EXIT:0" in out


def test_score_imports_no_heavy_packages(write_preds: PredsWriter) -> None:
    path: Path = write_preds(folds=(0,))
    out = _probe("score", str(path), "--split", "synthetic-cv5-v1")
    assert "HEAVY:\n" in out and "EXIT:0" in out


def test_console_script_version() -> None:
    exe = Path(sys.executable).with_name("bmbench")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("bmbench ")
