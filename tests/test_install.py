"""The core install: the built wheel in a fresh venv outside the checkout, with only the core dependencies.

No network: the wheel is built offline from a copy of the sources, the venv gets the core requirements (read
from the wheel's own metadata, with their dependencies, found through ``importlib.metadata``) by linking
them from this environment, and ``pip install --no-deps --no-index`` installs the wheel. There, ``torch``
must not import, and from a folder outside the checkout ``bmbench`` must score a file, verify the published
splits, run the majority baseline on the SYNTHETIC data, put it on a board, build and check that board.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def core_requirements(wheel: Path) -> list[Requirement]:
    """``Requires-Dist`` of the wheel that apply without any extra."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({**default_environment(), "extra": ""})]


def dependency_closure(roots: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions of ``roots`` and everything they require (markers evaluated, no extras)."""
    env = {**default_environment(), "extra": ""}
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo += [r for r in map(Requirement, dist.requires or []) if r.marker is None or r.marker.evaluate(env)]
    return list(seen.values())


def link_distributions(dists: list[metadata.Distribution], target: Path) -> list[str]:
    """Symlink each distribution's top-level files and folders (its .dist-info included) into ``target``."""
    target.mkdir(parents=True)
    linked: list[str] = []
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(t for t in tops if t != ".." and not t.endswith(".pth") and t != "__pycache__"):
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)
                linked.append(top)
    return linked


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the checkout) holding the bmbench wheel and only the core dependencies."""
    base = tmp_path_factory.mktemp("core-install")
    src = base / "src"  # a copy, so building leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "benchmark", src / "benchmark", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(wheels), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("bmbench-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for packaged in ("bm-cv5-v1.csv", "SHA256SUMS", "README.md", "sources/dinobloom_bm_test.csv"):
        assert f"bmbench/resources/splits/{packaged}" in names, packaged

    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    dists = dependency_closure(core_requirements(wheel))
    names = {d.metadata["Name"].lower() for d in dists}
    assert {"numpy", "pandas", "pyarrow", "typer", "rich", "pydantic", "filelock", "pillow"} <= names
    assert not names & {"torch", "torchvision", "timm", "scikit-learn", "opencv-python-headless"}
    link_distributions(dists, base / "core-deps")
    (site / "core-deps.pth").write_text(str(base / "core-deps") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("BMBENCH_")}
    env.update(PYTHONNOUSERSITE="1", BMBENCH_CACHE=os.environ["BMBENCH_CACHE"], PATH=f"{env_dir / 'bin'}:{env['PATH']}")
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_core_install_scores_verifies_and_builds_a_board(core_venv: Path, tmp_path: Path, write_preds) -> None:
    work = tmp_path / "work"
    work.mkdir()
    python, bmbench = str(core_venv / "bin" / "python"), str(core_venv / "bin" / "bmbench")

    where = _run(core_venv, work, python, "-c", "import bmbench, sys; print(bmbench.__file__)")
    assert where.returncode == 0 and str(core_venv) in where.stdout and str(REPO) not in where.stdout, where
    no_torch = _run(core_venv, work, python, "-c", "import torch")
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    help_ = _run(core_venv, work, python, "-m", "bmbench", "--help")
    assert help_.returncode == 0 and "score" in help_.stdout, help_.stderr

    preds = write_preds(folds=(0, 1))
    score = _run(core_venv, work, bmbench, "score", str(preds), "--split", "synthetic-cv5-v1", "--json", "score.json")
    assert score.returncode == 0, score.stdout + score.stderr
    assert (work / "score.json").is_file()

    verify = _run(core_venv, work, bmbench, "splits", "verify")
    assert verify.returncode == 0 and "verify" in verify.stdout, verify.stdout + verify.stderr

    shutil.copytree(REPO / "submissions" / "baseline_majority", work / "submissions" / "baseline_majority")
    steps = [
        ["run", "baseline_majority", "--data", "synthetic"],  # found in <cwd>/submissions, written to <cwd>/runs
        ["leaderboard", "add", "runs/baseline_majority/synthetic", "--board", "demo", "--dir", "board",
         "--status", "reproduced"],
        ["leaderboard", "build", "--board", "demo", "--dir", "board"],
        ["leaderboard", "check", "--board", "demo", "--dir", "board"],
    ]
    for step in steps:
        out = _run(core_venv, work, bmbench, *step)
        assert out.returncode == 0, f"bmbench {' '.join(step)}:\n{out.stdout}\n{out.stderr}"
    assert (work / "runs" / "baseline_majority" / "synthetic" / "score.json").is_file()
    assert (work / "board" / "README.md").is_file() and (work / "board" / "index.html").is_file()

    needs_train = _run(core_venv, work, bmbench, "lr-find", "baseline_majority", "--data", "synthetic")
    assert needs_train.returncode == 2 and "pip install 'bmbench[train]'" in needs_train.stderr, needs_train
