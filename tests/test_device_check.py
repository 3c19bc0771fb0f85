"""scripts/device-check.sh works before anyone spends GPU time on it; the bench and run paths import nothing
that the GPU machine lacks (it has torch, torchvision, timm, typer, rich, numpy, pandas, Pillow; pydantic is
brought as wheels, see scripts/device-wheels.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device-check.sh"
ABSENT_ON_GPU_MACHINE = ("sklearn", "scipy", "cv2", "h5py", "datasets", "matplotlib", "torch_lr_finder",
                         "pytorch_grad_cam")

BLOCKING_CLI = f"""
import sys
class Hide:  # every finder behaves as if these packages were not installed
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_GPU_MACHINE!r}:
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
from bmbench.cli.main import run
sys.argv = ["bmbench", *sys.argv[1:]]
run()
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DEVICE_CHECK_WORK": str(tmp_path / "work"), "PYTHON": sys.executable}


@pytest.mark.slow
def test_dry_run_checks_the_environment_and_gpu_mode_needs_cuda(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, env=_env(tmp_path),
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pydantic" in out.stdout and "dry run: environment ok" in out.stdout
    if "cuda True" not in out.stdout:  # on a machine without a GPU the real run refuses at once
        out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env(tmp_path), timeout=300)
        assert out.returncode == 2 and "--cpu-smoke" in out.stdout


@pytest.mark.slow
def test_bench_and_run_paths_need_no_package_the_gpu_machine_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "demo_cnn"
    folder.mkdir()
    toml = (REPO / "submissions" / "demo_cnn" / "submission.toml").read_text()
    (folder / "submission.toml").write_text(toml.replace("num_workers = 2", 'num_workers = 0\ndata_path = "gpu"'))
    (folder / "model.py").write_text((REPO / "submissions" / "demo_cnn" / "model.py").read_text())
    commands = [["bench", "--backbone", str(folder), "--device", "cpu", "--steps", "1", "--batch", "4"],
                ["run", str(folder), "--data", "synthetic", "--folds", "0", "--epochs", "1", "--max-steps", "1",
                 "--device", "cpu", "--out", str(tmp_path / "runs")]]
    for args in commands:
        out = subprocess.run([sys.executable, "-c", BLOCKING_CLI, *args], capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]


@pytest.mark.slow
def test_cpu_smoke_runs_every_stage(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke"], capture_output=True, text=True, env=_env(tmp_path),
                         timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    stages = (tmp_path / "work" / "results" / "stages.txt").read_text()
    for name in ("synth", "cache", "b32", "run", "max-vv", "conc", "nchw", "max-rr"):
        assert f"{name} ok" in stages, stages
    summary = (tmp_path / "work" / "results" / "summary.md").read_text()
    assert "| demo_cnn |" in summary and "concurrent processes" in summary
