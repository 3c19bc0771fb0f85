"""`bmbench grid`: the reference grid, its dry run, the SLURM script, a local run and the merge."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.runs.grid import (PAPER_SUBMISSION_RE, fold_status, grid_tasks, run_options_args, select_submissions,
                          slurm_script)

runner = CliRunner()


def test_reference_grid_is_the_papers_24_submissions() -> None:
    subs = select_submissions(None)
    names = [s.submission.name for s in subs]
    assert len(names) == 24 and all(PAPER_SUBMISSION_RE.fullmatch(n) for n in names)
    assert {s.submission.backbone for s in subs} == {"torchvision:vgg19_bn", "torchvision:resnet152",
                                                      "torchvision:regnet_y_32gf", "torchvision:vit_l_32"}
    assert names[0].startswith("vgg_") and names[-1].startswith("vit_")
    picked = [s.submission.name for s in select_submissions("resnet_*,vit_imagenet")]
    assert picked[:6] == sorted(picked[:6]) and len(picked) == 7 and picked[-1] == "vit_imagenet"
    with pytest.raises(BmbenchError, match="matches no submission"):
        select_submissions("nothing_*")


def test_fold_status(tmp_path: Path) -> None:
    run_dir = tmp_path / "x" / "bm"
    assert fold_status(run_dir, 0) == ("pending", 0)
    (run_dir / "fold1").mkdir(parents=True)
    (run_dir / "fold1" / "history.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    assert fold_status(run_dir, 1) == ("partial", 2)
    (run_dir / "fold1" / "fold.json").write_text("{}")
    assert fold_status(run_dir, 1) == ("done", 2)


def test_slurm_script_maps_tasks_to_pending_folds(tmp_path: Path) -> None:
    subs = select_submissions("resnet_*")
    done = tmp_path / "resnet_cd" / "bm" / "fold0"
    done.mkdir(parents=True)
    (done / "fold.json").write_text("{}")
    tasks = [t for t in grid_tasks(subs, range(5), tmp_path, "bm") if t.status != "done"]
    assert len(tasks) == 29
    script = slurm_script(tasks, run_options_args("/data/bm", tmp_path), max_parallel=6, partition="gpu", gpus=1)
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=0-28%6", "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu",
                 'TASK="${TASKS[$SLURM_ARRAY_TASK_ID]}"'):
        assert line in script
    mapping = [line.split("#")[0].strip() for line in script.splitlines()
               if line.startswith("  ") and "submissions/" in line]  # the TASKS=( ... ) array
    assert len(mapping) == 29 and mapping[0].endswith("submissions/resnet_cd:1")
    assert mapping[-1].endswith("submissions/resnet_random:4")
    exec_line = next(line for line in script.splitlines() if line.startswith('"${BMBENCH[@]}" run '))
    assert exec_line.endswith(" &")  # in the background, so the batch shell can pass USR1 on
    assert '--folds "$FOLD"' in exec_line and "--resume" in exec_line and "--data /data/bm" in exec_line
    with pytest.raises(BmbenchError, match="no task"):
        slurm_script([], [])


def _fake_program(path: Path, name: str) -> Path:
    """An executable that records ``name`` and its arguments (one per line) in ``<path>.args`` and exits 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/bash\nprintf "%s\\n" {name} "$@" > "{path}.args"\n')
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("setup", [False, True], ids=["no-setup", "setup-puts-bmbench-on-path"])
def test_slurm_job_runs_the_python_that_wrote_it_unless_setup_provides_bmbench(tmp_path: Path, setup: bool) -> None:
    """One array task run by bash: no `bmbench` needs to be on the job's PATH (a stale one there is not used);
    a --setup that puts one on PATH (an activated environment) is used instead."""
    import subprocess

    python = _fake_program(tmp_path / "my env" / "python", "python")  # a space: the path must be quoted
    stale = _fake_program(tmp_path / "stale" / "bmbench", "stale")
    provided = _fake_program(tmp_path / "setup-bin" / "bmbench", "provided")
    tasks = grid_tasks(select_submissions("resnet_cd"), [2], tmp_path, "bm")
    lines = f'export PATH="{provided.parent}:$PATH"' if setup else ""
    script = slurm_script(tasks, run_options_args("/data/bm", tmp_path), python=str(python), setup=lines)
    assert f"BMBENCH=({shlex.quote(str(python))} -m bmbench)" in script
    (tmp_path / "grid.sh").write_text(script)
    proc = subprocess.run(["bash", str(tmp_path / "grid.sh")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": f"{stale.parent}:/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0",
                                           "SLURM_ARRAY_JOB_ID": "7"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran, head = (provided, ["provided"]) if setup else (python, ["python", "-m", "bmbench"])
    args = Path(f"{ran}.args").read_text().splitlines()
    assert args[:len(head) + 4] == [*head, "run", str(tasks[0].folder), "--folds", "2"], args
    assert "--resume" in args and not Path(f"{stale}.args").exists()


def test_cli_dry_run_and_slurm_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["grid", "--dry-run", "--data", "synthetic", "--folds", "0,1", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "24 submission(s) x 2 fold(s) = 48 runs: 0 done, 0 partial, 48 pending" in result.output
    script = tmp_path / "grid.sh"
    result = runner.invoke(app, ["grid", "--slurm", str(script), "--data", "/nowhere/bm", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --array=0-119%8" in script.read_text() and "sbatch" in result.output
    assert runner.invoke(app, ["grid", "--dry-run", "--merge"]).exit_code != 0


@pytest.mark.slow
@pytest.mark.usefixtures("shared_baseline_features")  # the logreg run's features, extracted once per session
def test_local_grid_of_two_baselines_then_merge(tmp_path: Path) -> None:
    args = ["--submissions", "baseline_majority,baseline_features_logreg", "--data", "synthetic", "--out",
            str(tmp_path)]
    first = runner.invoke(app, ["grid", *args, "--folds", "0,1"])
    assert first.exit_code == 0, first.output
    assert "2 submission(s) ran, 0 failed" in first.output
    listed = runner.invoke(app, ["grid", *args, "--folds", "0,1", "--dry-run"])
    assert "4 runs: 4 done, 0 partial, 0 pending" in listed.output
    # folds 0,1 are skipped, 2-4 run (the cheap baseline only: the other re-extracts features)
    again = runner.invoke(app, ["grid", "--submissions", "baseline_majority", *args[2:]])
    assert again.exit_code == 0, again.output
    assert "baseline_majority/fold0: skip" in again.output and "baseline_majority/fold4: done" in again.output
    merged = runner.invoke(app, ["grid", *args, "--merge"])
    assert merged.exit_code == 0, merged.output
    assert "0,1,2,3,4" in merged.output and "2/5 folds" in merged.output  # majority complete, logreg not
    run = json.loads((tmp_path / "baseline_majority" / "synthetic" / "run.json").read_text())
    assert [f["fold"] for f in run["folds"]] == [0, 1, 2, 3, 4]
    assert "bmbench leaderboard add" in merged.output and "--board demo" in merged.output
    assert "baseline_features_logreg/synthetic --status" not in merged.output  # incomplete: no entry
