"""`bmbench grid --slurm` on a real SLURM cluster: submit, finish, merge; stop at an epoch on USR1, requeue,
resume; a killed task resumed by submitting the grid again.

Needs a running cluster (single node: ``sudo bash scripts/slurm-local.sh start``; ``.ci/run`` starts and
stops one) and runs only with ``pytest --slurm`` (``make test PYTEST_ARGS=--slurm``): without the option
the ``slurm`` tests are deselected; with it and no cluster they fail with the command that starts one.

The jobs run the real command line (``bmbench run ... --resume`` from the written array script) on the
SYNTHETIC data with a demo-size CNN (smoke settings: one epoch of 3 steps, or 3 epochs of 10 steps), one
CPU per task and ``OMP_NUM_THREADS=1``, so a local run of the same folds gives the same bytes. The USR1 and
the killed-task scenarios run side by side, one task (one of the node's two CPUs) each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from bmbench.submissions.registry import default_submissions_dir

pytestmark = pytest.mark.slurm

START_HINT = "start a single-node cluster with `sudo bash scripts/slurm-local.sh start` (stop: `... stop`)"
SLURM_DIR_ENV = "BMBENCH_SLURM_DIR"
"""Where scripts/slurm-local.sh keeps its config (default /tmp/bmbench-slurm); its slurm.conf is used when
SLURM_CONF is unset."""
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
TASK_TIMEOUT = 480.0
"""Seconds an array may take before the test cancels it and fails (about one minute on 2 idle cores)."""


class Cluster:
    """The running cluster as the tests use it: the environment of the jobs and the jobs submitted."""

    def __init__(self, conf: str | None) -> None:
        self.conf = conf
        self.jobs: list[str] = []
        # the client commands' environment, read once: a scenario thread must not read os.environ while a
        # test's monkeypatch changes it
        self.client_env = {**os.environ, **({"SLURM_CONF": conf} if conf else {})}

    def env(self, submissions: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The jobs' environment (sbatch passes the submitting one on): this Python's `bmbench` first on PATH,
        the test cache, the test's submissions folder, one thread so the bytes equal a local run. ``base``:
        the environment to start from (default ``os.environ``, as the running test sees it)."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k != "BMBENCH_DATA"}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["BMBENCH_SUBMISSIONS"] = str(submissions)
        env["OMP_NUM_THREADS"] = "1"
        if self.conf:
            env["SLURM_CONF"] = self.conf
        return env

    def call(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, env=self.client_env)

    def run(self, *cmd: str, check: bool = True) -> str:
        proc = self.call(*cmd)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def submit(self, script: Path, env: dict[str, str]) -> str:
        out = subprocess.run(["sbatch", "--parsable", script.name], cwd=script.parent, env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, f"sbatch {script} failed: {out.stderr}"
        job = out.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def pending(self, job: str) -> list[str] | None:
        """``<id> <state>`` of the job's array tasks still queued or running (empty once all have ended);
        None when the controller did not answer (a busy machine): not known, ask again."""
        proc = self.call("squeue", "-h", "-j", job, "-o", "%i %T")
        return proc.stdout.split() if proc.returncode == 0 else None

    def show(self, task: str) -> dict[str, str]:
        """``scontrol show job`` of one array task as a dict (JobState, Restarts, ...)."""
        text = self.run("scontrol", "show", "job", "-o", task, check=False)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job: str, folder: Path, timeout: float = TASK_TIMEOUT) -> None:
        """Bounded poll until no task of ``job`` is queued or running; on timeout cancel it and fail."""
        deadline = time.monotonic() + timeout
        while (left := self.pending(job)) is None or left:
            if time.monotonic() > deadline:
                self.run("scancel", job, check=False)
                pytest.fail(f"SLURM job {job} did not finish within {timeout:.0f} s; logs:\n{_logs(folder)}")
            time.sleep(1.0)


def _conf() -> str | None:
    if os.environ.get("SLURM_CONF"):
        return os.environ["SLURM_CONF"]
    local = Path(os.environ.get(SLURM_DIR_ENV, "/tmp/bmbench-slurm")) / "slurm.conf"
    return str(local) if local.is_file() else None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    missing = [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        pytest.fail(f"the SLURM client commands are missing ({', '.join(missing)}): {START_HINT} (it installs "
                    "Debian's slurm packages)")
    if not (Path(sys.executable).parent / "bmbench").is_file():
        pytest.fail(f"the jobs run `bmbench`, but {Path(sys.executable).parent} has no bmbench script: "
                    "install the package into this environment (make setup)")
    found = Cluster(_conf())
    try:
        states = found.run("sinfo", "-h", "-o", "%t").split()
    except (AssertionError, subprocess.TimeoutExpired) as err:
        pytest.fail(f"no SLURM cluster answers ({err}): {START_HINT}")
    if not any(s in ("idle", "mix", "alloc") for s in states):
        pytest.fail(f"the SLURM node is not usable (sinfo states: {states or 'none'}): {START_HINT}")
    yield found
    for job in found.jobs:  # nothing keeps running after the tests, whatever happened
        found.run("scancel", job, check=False)


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(folder.glob("bmbench-grid-*.log")))


@pytest.fixture
def submissions(tmp_path: Path) -> Path:
    """demo_cnn (single-process loading) and baseline_majority in a submissions folder of the test's own."""
    return _submissions(tmp_path)


def _submissions(tmp_path: Path) -> Path:
    folder = tmp_path / "submissions"
    for name in ("demo_cnn", "baseline_majority"):
        shutil.copytree(default_submissions_dir() / name, folder / name)
    toml = folder / "demo_cnn" / "submission.toml"
    toml.write_text(toml.read_text().replace("num_workers = 2", "num_workers = 0"))
    return folder


def _bmbench(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "bmbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"bmbench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _grid_args(runs: Path, submissions: str, folds: str, epochs: int, max_steps: int) -> list[str]:
    return ["--submissions", submissions, "--folds", folds, "--data", "synthetic", "--out", str(runs),
            "--epochs", str(epochs), "--max-steps", str(max_steps), "--seed", "0"]


def test_grid_array_runs_on_slurm_and_merges_to_a_local_runs_bytes(cluster: Cluster, submissions: Path,
                                                                      tmp_path: Path) -> None:
    env = cluster.env(submissions)
    runs = tmp_path / "runs"
    grid = _grid_args(runs, "demo_cnn,baseline_majority", "0,1", epochs=1, max_steps=3)
    script = tmp_path / "grid.sh"
    _bmbench(env, tmp_path, "grid", *grid, "--slurm", str(script), "--cpus-per-task", "1", "--mem", "1G",
             "--time", "10:00", "--cache", env["BMBENCH_CACHE"])
    text = script.read_text()
    assert "#SBATCH --array=0-3%8" in text and "--gres" not in text  # a CPU cluster has no gpu gres
    assert "#SBATCH --signal=B:USR1@120" in text and "#SBATCH --requeue" in text

    job = cluster.submit(script, env)
    cluster.wait(job, tmp_path)
    logs = sorted(tmp_path.glob(f"bmbench-grid-{job}_*.log"))
    assert len(logs) == 4, _logs(tmp_path)
    for name in ("demo_cnn", "baseline_majority"):
        for fold in (0, 1):
            assert (runs / name / "synthetic" / f"fold{fold}" / "fold.json").is_file(), _logs(tmp_path)

    merged = _bmbench(env, tmp_path, "grid", *grid, "--merge")
    assert re.search(r"demo_cnn\s.*\b0,1\b", merged) and re.search(r"baseline_majority\s.*\b0,1\b", merged), merged

    # the same folds run here, in one process each: the merged files are the same bytes
    local = tmp_path / "local"
    for name in ("demo_cnn", "baseline_majority"):
        _bmbench(env, tmp_path, "run", str(submissions / name), "--data", "synthetic", "--folds", "0,1", "--epochs",
                 "1", "--max-steps", "3", "--seed", "0", "--out", str(local))
        for file in ("predictions.csv", "score.json"):
            here, there = local / name / "synthetic" / file, runs / name / "synthetic" / file
            assert here.read_bytes() == there.read_bytes(), f"{name}/{file} differs between SLURM and a local run"
        record = json.loads((runs / name / "synthetic" / "run.json").read_text())
        assert [f["fold"] for f in record["folds"]] == [0, 1]


KILLED_TASK_TEST = "test_a_killed_task_is_resumed_by_a_resubmitted_grid"


@pytest.fixture(scope="module")
def killed_task_scenario(request: pytest.FixtureRequest, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory,
                         isolated_environ: Callable[[], dict[str, str]]) -> Iterator[Future[None] | None]:
    """The killed-task scenario of test_a_killed_task_is_resumed_by_a_resubmitted_grid, run in a thread that
    the USR1 test starts: each scenario holds one of the node's two CPUs and mostly waits on SLURM (the
    requeued job alone waits for its start time), so the two overlap instead of taking 53 + 35 s one after
    the other. Its assertions fail the killed-task test, which waits for it; None when that test is not
    selected (nothing runs)."""
    if not any(item.originalname == KILLED_TASK_TEST for item in request.session.items):
        yield None
        return
    tmp = tmp_path_factory.mktemp("killed_task")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slurm-killed-task") as pool:
        yield pool.submit(_killed_task_is_resumed, cluster, cluster.env(_submissions(tmp), isolated_environ()), tmp)
    # leaving the pool waits for the scenario: every wait in it is bounded by TASK_TIMEOUT


def test_usr1_stops_after_the_epoch_and_the_requeued_task_resumes(cluster: Cluster, submissions: Path,
                                                                  tmp_path: Path,
                                                                  killed_task_scenario: Future[None] | None) -> None:
    # killed_task_scenario: the next test's scenario runs meanwhile, on the node's other CPU
    env = cluster.env(submissions)
    runs = tmp_path / "runs"
    script = tmp_path / "grid.sh"
    _bmbench(env, tmp_path, "grid", *_grid_args(runs, "demo_cnn", "2", epochs=3, max_steps=10), "--slurm",
             str(script), "--cpus-per-task", "1", "--mem", "1G", "--time", "10:00",
             "--sbatch-option=--open-mode=append")  # keep the first attempt's log across the requeue
    assert "#SBATCH --open-mode=append" in script.read_text()
    job = cluster.submit(script, env)
    task = f"{job}_0"
    history = runs / "demo_cnn" / "synthetic" / "fold2" / "history.jsonl"

    deadline = time.monotonic() + TASK_TIMEOUT
    while not (history.is_file() and history.read_text().strip()):  # epoch 1 done: epoch 2 is in progress
        assert time.monotonic() < deadline and cluster.pending(job) != [], f"no epoch finished:\n{_logs(tmp_path)}"
        time.sleep(0.2)
    cluster.run("scancel", "--signal=USR1", "--batch", task)  # what SLURM sends 120 s before --time

    while (state := cluster.show(task)).get("Restarts", "0") == "0" or state.get("JobState") != "PENDING":
        assert time.monotonic() < deadline, f"the task was not requeued: {state}\n{_logs(tmp_path)}"
        time.sleep(0.5)
    assert state["Requeue"] == "1" and state["Restarts"] == "1"
    # SLURM holds a requeued job back (reason BeginTime, about two minutes); let it start sooner, but not
    # within the second slurmd revoked the old attempt's credential (it refuses that launch: "already killed")
    cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now+5")
    # once that time has passed, nothing wakes the controller until its next backfill pass (up to 30 s
    # later: 18 s measured); a second update is an event it schedules on at once
    time.sleep(6)
    cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now")
    cluster.wait(job, tmp_path)

    (log,) = tmp_path.glob(f"bmbench-grid-{job}_0.log")
    text = log.read_text()
    first, _, second = text.partition("requeueing")
    assert "stop requested (signal USR1)" in first and second, text
    stopped_after = [int(n) for n in re.findall(r"fold 2 ep +(\d+) \|", first)]
    resumed = [int(n) for n in re.findall(r"fold 2 ep +(\d+) \|", second)]
    assert stopped_after == list(range(1, len(stopped_after) + 1)) and 1 <= len(stopped_after) < 3, text
    assert resumed == list(range(len(stopped_after) + 1, 4)), text  # no epoch trained twice
    assert second.count("bmbench grid task 0:") == 1 and first.count("bmbench grid task 0:") == 1
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [0, 1, 2]
    assert (history.parent / "fold.json").is_file()


def test_a_killed_task_is_resumed_by_a_resubmitted_grid(killed_task_scenario: Future[None] | None) -> None:
    assert killed_task_scenario is not None  # this test is selected: the fixture started the scenario
    killed_task_scenario.result()  # started with the USR1 test (or now, when that one is not selected)


def _killed_task_is_resumed(cluster: Cluster, env: dict[str, str], tmp_path: Path) -> None:
    """Kill a task mid-run (no USR1, no requeue), list the grid, submit it again: it resumes from the last
    finished epoch. Runs in a thread: it reads no os.environ (``env`` is the jobs' environment)."""
    runs = tmp_path / "runs"
    grid = [*_grid_args(runs, "demo_cnn", "3", epochs=3, max_steps=10), "--cpus-per-task", "1", "--mem", "1G",
            "--time", "10:00"]
    history = runs / "demo_cnn" / "synthetic" / "fold3" / "history.jsonl"
    first = tmp_path / "first.sh"
    _bmbench(env, tmp_path, "grid", *grid, "--slurm", str(first))
    job = cluster.submit(first, env)
    deadline = time.monotonic() + TASK_TIMEOUT
    while not (history.is_file() and history.read_text().strip()):
        assert time.monotonic() < deadline and cluster.pending(job) != [], f"no epoch finished:\n{_logs(tmp_path)}"
        time.sleep(0.2)
    cluster.run("scancel", job)  # killed mid-run: no USR1, no requeue
    cluster.wait(job, tmp_path)
    done_before = len(history.read_text().splitlines())
    assert 1 <= done_before < 3 and not (history.parent / "fold.json").exists(), _logs(tmp_path)

    listed = _bmbench(env, tmp_path, "grid", *grid, "--dry-run")
    assert "0 done, 1 partial, 0 pending" in listed, listed
    again = tmp_path / "again.sh"
    _bmbench(env, tmp_path, "grid", *grid, "--slurm", str(again))
    second = cluster.submit(again, env)
    cluster.wait(second, tmp_path)
    (log,) = tmp_path.glob(f"bmbench-grid-{second}_0.log")
    resumed = [int(n) for n in re.findall(r"fold 3 ep +(\d+) \|", log.read_text())]
    assert resumed == list(range(done_before + 1, 4)), _logs(tmp_path)  # from the last finished epoch on
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [0, 1, 2]
    assert (history.parent / "fold.json").is_file()
