"""scripts/device-check.sh always reports: every stage writes its JSON, failures are named, the rest runs.

The GPU machine has torch, torchvision, timm, numpy, pandas, typer and rich but no pydantic: the injected run
hides pydantic, so the measuring stages prove they need none and the `bmbench run` stage says it needs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bmbench.bench.device_check import STAGES, compile_probe, make_config, stage_limit

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device-check.sh"


INJECTED = {"DEVICE_CHECK_INJECT": "compile-late,fail:data,oom:mfu,hang:embed", "DEVICE_CHECK_LIMITS": "embed=6",
            "DEVICE_CHECK_SIMULATE_MISSING": "pydantic"}


@dataclass
class Smoke:
    """One finished ``--cpu-smoke`` run: its folder, exit code, output and report."""

    folder: Path
    returncode: int
    output: str
    report: dict
    md: str


def _start(folder: Path, **env: str) -> subprocess.Popen[bytes]:
    work = folder / "work"
    full = {**os.environ, "DEVICE_CHECK_WORK": str(work), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    full.pop("OUT", None)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "output.txt", "wb") as out:  # a file, not a pipe: the other run never waits on this one
        return subprocess.Popen(["bash", str(SCRIPT), "--cpu-smoke"], stdout=out, stderr=subprocess.STDOUT, env=full)


@pytest.fixture(scope="module")
def smokes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Smoke]:
    """The plain and the failure-injected ``--cpu-smoke`` runs, side by side: each is one thread in one stage
    process at a time, so the two cores overlap them (63 + 43 s one after the other, 94 s side by side, with
    the image cache already built; on a busy machine there is no free core and no gain). A cache they both
    need is built once, under its lock."""
    base = tmp_path_factory.mktemp("device-check")
    procs = {"plain": _start(base / "plain"), "injected": _start(base / "injected", **INJECTED)}
    runs: dict[str, Smoke] = {}
    try:
        for name, proc in procs.items():
            code = proc.wait(timeout=900)
            folder = base / name
            results = folder / "work" / "results"
            written = (results / "report.json").is_file()  # the tests say so, with the output, when not
            runs[name] = Smoke(folder, code, (folder / "output.txt").read_text(errors="replace"),
                               json.loads((results / "report.json").read_text()) if written else {},
                               (results / "report.md").read_text() if written else "")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return runs


def test_cpu_smoke_runs_every_stage_and_reports(smokes: dict[str, Smoke]) -> None:
    run = smokes["plain"]
    report, md = run.report, run.md
    assert run.returncode == 0 and report, run.output[-5000:]
    results = run.folder / "work" / "results"  # three files: the device tool returns at most 8 from $OUT
    assert sorted(p.name for p in results.iterdir()) == ["logs.txt", "report.json", "report.md"]
    assert "==== env ====" in (results / "logs.txt").read_text() and (run.folder / "work" / "stages" / "run.json").is_file()
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == [s.name for s in STAGES]
    assert all(s["status"] in ("ok", "not available") for s in stages.values()), stages
    assert stages["env"]["compile_probe"]["ok"] and report["compile"] is True
    train = stages["train32"]["bench"]["backbones"][0]["variants"]
    assert {"plain", "bmbench (NCHW)"} <= set(train)
    run_path = train["bmbench (NCHW)"]
    assert run_path["as_run"] and run_path["compile"] and run_path["train"]["images_per_s"] > 0
    assert "compile_fallback" not in run_path
    assert stages["data"]["bench"]["data_only"]
    fold = stages["run"]["fold"]
    assert fold["data_path"]["name"] == "gpu" and fold["compile_fallback"] is None
    embed = stages["embed"]["embed"]
    assert stages["embed"]["status"] == "ok" and embed["forward"]["images_per_second"] > 0
    assert embed["data_path"]["images_per_second"] > 0 and embed["ratio"] > 0 and embed["meets_target"] is None
    for name in ("| env | ok", "| train32 | ok", "| embed | ok", "| run | ok", "resnet18", "plain img/s",
                 "data path / pure forward ="):
        assert name in md, md


def test_injected_failures_are_named_and_the_other_stages_still_run(smokes: dict[str, Smoke]) -> None:
    run = smokes["injected"]
    report, md = run.report, run.md
    assert run.returncode == 1 and report, run.output[-5000:]
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == [s.name for s in STAGES]
    assert stages["env"]["status"] == "ok" and stages["env"]["pydantic"] is False
    assert stages["data"]["status"] == "failed" and "injected failure of stage data" in stages["data"]["error"]
    assert stages["data"]["traceback"]
    # compile fails after the probe: the bmbench path falls back to eager, says so, and still measures
    variants = stages["train32"]["bench"]["backbones"][0]["variants"]
    fast = variants["bmbench (NCHW)"]
    assert stages["train32"]["status"] == "ok" and "injected" in fast["compile_fallback"]
    assert fast["train"]["images_per_s"] > 0
    mfu = next(iter(stages["mfu"]["bench"]["backbones"][0]["variants"].values()))
    assert "out of device memory" in mfu["error"]
    assert stages["embed"]["status"] == "timed out"
    assert stages["run"]["status"] == "needs pydantic"
    for text in ("| data | failed", "| embed | timed out", "| run | needs pydantic", "FELL BACK to eager",
                 "out of device memory"):
        assert text in md, md


def test_the_embed_stage_measures_without_pydantic(tmp_path: Path) -> None:
    """The embed stage alone, pydantic hidden as on the GPU machine: figures, ratio and the partial JSON."""
    config = make_config("cpu", tmp_path / "work", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "embed.json"
    env = {**os.environ, "DEVICE_CHECK_SIMULATE_MISSING": "pydantic", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bmbench.bench", "stage", "embed", "--config",
                           str(tmp_path / "config.json"), "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    doc = json.loads(out.read_text())
    assert proc.returncode == 0 and doc["status"] == "ok", (doc, proc.stderr[-2000:])
    embed = doc["embed"]
    assert embed["encoder"]["timm"] == "vit_tiny_patch16_224" and embed["input"] == [16, 3, 32, 32]
    assert embed["data_path"]["dim"] == 192 and embed["components"]["preprocess"]["images_per_second"] > 0
    ratio = embed["data_path"]["images_per_second"] / embed["forward"]["images_per_second"]
    assert abs(embed["ratio"] - ratio) < 0.01 and embed["target_ratio"] == 0.8


def test_the_compile_probe_turns_compilation_off_when_compile_fails() -> None:
    config = {**make_config("cpu", Path("."), Path(".")), "inject": ["compile"]}
    probe = compile_probe(config)
    assert probe["ok"] is False and probe["compile"] is False and "injected" in probe["error"]


def test_stage_limits_share_the_budget_in_order_of_value() -> None:
    shares = [s.seconds for s in STAGES]
    assert sum(shares) <= 480
    assert stage_limit(0, 0, 480, cpu=False) == 480 - sum(shares[1:])  # spare time goes to the current stage
    assert stage_limit(2, 400, 480, cpu=False) == 80  # late: what is left, no more
    assert stage_limit(5, 480, 480, cpu=False) == 0
