"""The device check: every figure docs/performance.md needs from one GPU, in stages that always report.

``scripts/device-check.sh`` runs ``python -m bmbench.bench device-check``. Each stage is its own process under
its own time limit (the total budget is 8 minutes on a GPU) and writes its JSON ``<work>/stages/<stage>.json``
before the next starts: its figures so far (rewritten after every measured variant), or the error with a
traceback summary; a stage that runs out of time keeps what it wrote and is marked "timed out". After each
stage three files in ``<out>`` are rewritten: ``report.json`` (every stage's document), ``report.md`` (the
Markdown for docs/performance.md) and ``logs.txt`` (the tail of every stage's output), so whatever happens
later, the report is complete up to there. Three files: the device tool returns at most 8 from ``$OUT``.

Stages, ordered by value:

``env``      versions, the GPU, which packages exist (pydantic is optional), and a compile probe: a tiny
             ``torch.compile`` that must work within ``DEVICE_CHECK_PROBE_S`` (5 s, imports excluded);
             it decides compilation on or off for every later stage (off is stated in the report);
``data``     the data paths alone: plain (DataLoader + Pillow) vs bmbench (GPU-resident), images/s;
``train32``  training images/s, plain vs the bmbench path a run executes, batch 32, resnet152 and
             regnet_y_32gf, CUDA graphs off and on;
``mfu``      MFU at the largest batch that fits, vgg19_bn and vit_l_32 (the bmbench path);
``embed``    frozen-feature embedding: pure forward vs ``bmbench embed``'s data path, ViT-L/14 at 224 px,
             batch 256 (:func:`bmbench.bench.embed.device_check`; the 0.8 ratio target);
``run``      ``bmbench run`` end to end: one fold, one epoch of ``resnet_random`` with the fast path
             (needs pydantic: reported as "needs pydantic" where it is missing).

Only torch, torchvision, numpy, Pillow and (for embed) timm are needed for the first five stages: no pydantic,
no typer.
Failures can be injected (tests): ``DEVICE_CHECK_INJECT`` is a comma list of ``compile`` (every
torch.compile fails, the probe included), ``compile-late`` (the probe passes, later compiles fail),
``oom:STAGE``, ``hang:STAGE``, ``fail:STAGE``; ``DEVICE_CHECK_LIMITS="stage=seconds,..."`` overrides limits;
``DEVICE_CHECK_SIMULATE_MISSING=pydantic,...`` hides packages, as on a bare GPU machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
TOTAL_BUDGET_S = 480
PROBE_S = 5.0
"""Compile time the probe may take (imports excluded) for compilation to stay on."""
PROBE_IMPORT_S = 90.0
"""Extra seconds the probe process may take for importing torch and inductor before it is killed."""
REAL_FOLD_TRAIN = 109_700
"""Training images of one fold of bm-cv5-v1: the bench tiles the cached images to this many per epoch."""


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: int
    """Its share of the budget on a GPU (it may use more when later stages' shares are still covered)."""
    what: str


STAGES = (
    Stage("env", 25, "environment, packages, compile probe"),
    Stage("data", 40, "data paths alone: plain vs bmbench images/s"),
    Stage("train32", 185, "training images/s at batch 32, plain vs bmbench path, CUDA graphs off/on"),
    Stage("mfu", 100, "MFU at the largest batch, vgg19_bn and vit_l_32"),
    Stage("embed", 30, "frozen-feature embedding throughput"),
    Stage("run", 100, "bmbench run end to end, one fold, one epoch, fast path"),
)


# ---------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------


def make_config(mode: str, work: Path, out: Path) -> dict[str, Any]:
    """What every stage reads: sizes and backbones for the GPU run, or toy ones for ``--cpu-smoke``."""
    cpu = mode == "cpu"
    return {
        "schema_version": SCHEMA_VERSION, "mode": mode, "work": str(work), "out": str(out),
        "device": "cpu" if cpu else "cuda",
        "images": 600 if cpu else REAL_FOLD_TRAIN,
        "steps": 2 if cpu else 15, "warmup": 1 if cpu else 3, "eval_steps": 1 if cpu else 3,
        "image_size": 32 if cpu else None,
        "compile_backend": "eager" if cpu else "inductor",
        "train32": ["torchvision:resnet18"] if cpu else ["torchvision:resnet152", "torchvision:regnet_y_32gf"],
        "mfu": ["torchvision:mobilenet_v3_small"] if cpu else ["torchvision:vgg19_bn", "torchvision:vit_l_32"],
        "mfu_batch": 8 if cpu else "max",
        "run_submission": "demo_cnn" if cpu else "resnet_random",
        "inject": [x for x in os.environ.get("DEVICE_CHECK_INJECT", "").split(",") if x],
        "compile": None,
    }


def injected(config: dict[str, Any], kind: str, stage: str | None = None) -> bool:
    return (f"{kind}:{stage}" if stage else kind) in config.get("inject", [])


# ---------------------------------------------------------------------------------------------------
# Simulated environments and injected failures (tests; a real run sets none of these)
# ---------------------------------------------------------------------------------------------------


def hide_packages(names: list[str]) -> None:
    """Make ``import NAME`` fail for these top-level packages, as on a machine without them."""

    class Hide:
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name.split(".")[0] in names:
                raise ModuleNotFoundError(f"No module named {name!r} (hidden: DEVICE_CHECK_SIMULATE_MISSING)",
                                          name=name)

    sys.meta_path.insert(0, Hide())


class InjectedCompileError(RuntimeError):
    """What an injected torch.compile failure raises (recognised as a compile failure by the loop)."""

    bmbench_compile_failure = True


def inject_compile_failure() -> None:
    """Every later ``torch.compile(...)`` returns a callable that fails like a broken Triton toolchain."""
    import torch

    def broken(model: Any = None, **_kwargs: Any) -> Any:
        def call(*_a: Any, **_k: Any) -> Any:
            raise InjectedCompileError("injected: the C compiler for Triton is missing (DEVICE_CHECK_INJECT)")
        return call

    torch.compile = broken  # type: ignore[assignment]


def inject_oom() -> None:
    """The first training measurement of the stage runs out of device memory."""
    import torch

    from bmbench.bench import measure

    real, calls = measure.measure_training, [0]

    def once(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected: DEVICE_CHECK_INJECT)")
        return real(*args, **kwargs)

    measure.measure_training = once  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------------
# Stages (each runs in its own process: `python -m bmbench.bench stage NAME ...`)
# ---------------------------------------------------------------------------------------------------


def _write(path: Path, doc: dict[str, Any]) -> None:
    from bmbench import atomic

    atomic.write_json(path, doc)


PROBE_CODE = r"""
import json, sys, time
import torch
device = sys.argv[1]
backend = sys.argv[2]
if backend == "inductor":
    import torch._inductor.compile_fx  # noqa: F401 - imports are not the compile time
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
if "compile" in sys.argv[3].split(","):
    from bmbench.bench.device_check import inject_compile_failure
    inject_compile_failure()
started = time.perf_counter()
f = torch.compile(lambda x: torch.nn.functional.relu(x) * 2.0 + 1.0, backend=backend)
y = f(torch.randn(64, device=device))
if device == "cuda":
    torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def compile_probe(config: dict[str, Any]) -> dict[str, Any]:
    """A tiny torch.compile in a child process: on if it works within :data:`PROBE_S` of compile time."""
    # the CPU smoke compiles with dynamo's eager backend on a shared CPU: it tests the decision, not the speed
    limit = float(os.environ.get("DEVICE_CHECK_PROBE_S", PROBE_S if config["mode"] == "gpu" else 60.0))
    cmd = [sys.executable, "-c", PROBE_CODE, config["device"], config["compile_backend"], ",".join(config["inject"])]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + PROBE_IMPORT_S, env=os.environ)
    except subprocess.TimeoutExpired:
        return {"ok": False, "compile": False, "error": f"the probe did not finish within {limit + PROBE_IMPORT_S:.0f} s"}
    if out.returncode != 0:
        tail = [line for line in out.stderr.strip().splitlines() if line.strip()][-3:]
        return {"ok": False, "compile": False, "error": " | ".join(tail) or f"exit {out.returncode}"}
    seconds = float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    fast = seconds <= limit
    return {"ok": True, "compile": fast, "seconds": seconds, "limit_s": limit,
            **({} if fast else {"error": f"compiling took {seconds:.1f} s, over the {limit:.0f} s probe limit"})}


def stage_env(config: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import importlib
    import platform

    packages: dict[str, str | None] = {}
    for name in ("torch", "torchvision", "numpy", "pandas", "PIL", "timm", "typer", "rich", "pydantic",
                 "triton", "sklearn", "cv2", "torch_lr_finder"):
        try:
            module = importlib.import_module(name)
            packages[name] = str(getattr(module, "__version__", "present"))
        except Exception:  # noqa: BLE001 - missing or broken: reported as missing
            packages[name] = None
    import torch

    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gib": props.total_memory / 2**30,
               "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    smi = shutil.which("nvidia-smi")
    driver = None
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        driver = q.stdout.strip() or None
    doc = {"python": platform.python_version(), "packages": packages, "gpu": gpu, "nvidia_smi": driver,
           "cpus": os.cpu_count(), "pydantic": packages["pydantic"] is not None}
    emit(doc)
    if config["device"] == "cuda" and gpu is None:
        raise RuntimeError("no CUDA device here: run scripts/device-check.sh --cpu-smoke on a CPU")
    doc["compile_probe"] = compile_probe(config)
    return doc


def _bench_options(config: dict[str, Any], **kw: Any) -> Any:
    from bmbench.bench.measure import BenchOptions

    compile_on = config.get("compile")
    return BenchOptions(device=config["device"], steps=config["steps"], warmup=config["warmup"],
                        eval_steps=config["eval_steps"], data="synthetic", images=config["images"],
                        compile=compile_on, compile_backend=config["compile_backend"],
                        image_size=config.get("image_size"), **kw)


def _bench_stage(config: dict[str, Any], emit: Callable[[dict[str, Any]], None], **kw: Any) -> dict[str, Any]:
    from bmbench.bench.measure import run_bench
    from bmbench.bench.report import derive

    def partial(doc: dict[str, Any]) -> None:
        import copy

        emit({"bench": derive(copy.deepcopy(doc))})

    doc = run_bench(_bench_options(config, **kw), command="python -m bmbench.bench device-check",
                    on_backbone=partial)
    return {"bench": derive(doc)}


def stage_data(config: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from bmbench.bench.measure import data_only_bench

    return {"bench": data_only_bench(_bench_options(config, backbones=(config["train32"][0],)), emit)}


def stage_train32(config: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    return _bench_stage(config, emit, backbones=tuple(config["train32"]), batch=32, cuda_graphs=True,
                        eval_as_run_only=True)


def stage_mfu(config: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    return _bench_stage(config, emit, backbones=tuple(config["mfu"]), batch=config["mfu_batch"],
                        paths=("bmbench",), only_train=True)


def stage_embed(config: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("bmbench.bench.embed") is None:
        return {"status": "not available", "reason": "bmbench.bench.embed does not exist in this checkout"}
    from bmbench.bench import embed

    entry = getattr(embed, "device_check", None)
    if entry is None:
        return {"status": "not available", "reason": "bmbench.bench.embed has no device_check(config) entry point"}
    return {"embed": entry(config, lambda doc: emit({"embed": doc}))}


def stage_run(config: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ModuleNotFoundError:  # a finder that refuses it (DEVICE_CHECK_SIMULATE_MISSING)
            return True

    missing = [m for m in ("pydantic", "typer", "rich") if absent(m)]
    if missing:
        return {"status": "needs pydantic" if "pydantic" in missing else f"needs {', '.join(missing)}",
                "reason": f"`bmbench run` validates submission.toml with pydantic and its CLI uses typer and rich; "
                          f"missing here: {', '.join(missing)}. Stages env to embed do not need them."}
    repo = Path(__file__).resolve().parents[3]
    work = Path(config["work"])
    sub = config["run_submission"]
    target = work / "submissions" / sub
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(repo / "submissions" / sub, target)
    toml = (target / "submission.toml").read_text(encoding="utf-8")
    extra: list[str] = []
    if config["mode"] == "gpu":  # a fixed LR: the range test needs torch-lr-finder and matplotlib
        extra = ["lr = 0.01"] + (["compile = false"] if config.get("compile") is False else [])
    else:
        toml = toml.replace("num_workers = 2", 'num_workers = 0\ndata_path = "gpu"')
    if extra and "\n[recipe]\n" in toml:
        toml = toml.replace("\n[recipe]\n", "\n[recipe]\n" + "".join(f"{x}\n" for x in extra), 1)
    elif extra:
        toml += "\n[recipe]\n" + "".join(f"{x}\n" for x in extra)
    (target / "submission.toml").write_text(toml, encoding="utf-8")
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    cmd = [sys.executable, "-m", "bmbench.cli.main", "run", str(target), "--data", "synthetic", "--folds", "0",
           "--device", config["device"], "--out", str(runs), "--epochs", "1"]
    if config["mode"] == "cpu":
        cmd += ["--max-steps", "2"]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    seconds = time.perf_counter() - started
    doc: dict[str, Any] = {"command": " ".join(cmd[1:]), "exit_code": out.returncode, "seconds": seconds,
                           "stderr_tail": out.stderr.strip().splitlines()[-8:]}
    fold = runs / sub / "synthetic" / "fold0"
    if (fold / "fold.json").is_file():
        record = json.loads((fold / "fold.json").read_text(encoding="utf-8"))
        doc["fold"] = {k: record.get(k) for k in ("data_path", "bf16", "channels_last", "compile", "cuda_graphs",
                                                  "static_shapes", "compile_fallback", "seconds",
                                                  "best_val_accuracy")}
        doc["history"] = [json.loads(line) for line in (fold / "history.jsonl").read_text().splitlines()]
    if out.returncode != 0:
        raise RuntimeError(f"bmbench run exited {out.returncode}: {' | '.join(doc['stderr_tail'][-3:])}")
    return doc


STAGE_FUNCTIONS: dict[str, Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], dict[str, Any]]] = {
    "env": stage_env, "data": stage_data, "train32": stage_train32, "mfu": stage_mfu, "embed": stage_embed,
    "run": stage_run,
}


def run_stage(name: str, config: dict[str, Any], out: Path) -> int:
    """One stage in this process: its JSON is written before any work, after each step, and at the end."""
    missing = [m for m in os.environ.get("DEVICE_CHECK_SIMULATE_MISSING", "").split(",") if m]
    if missing:
        hide_packages(missing)
    base = {"schema_version": SCHEMA_VERSION, "stage": name, "started_at": datetime.now(UTC).isoformat(
        timespec="seconds")}
    state: dict[str, Any] = {**base, "status": "running"}
    _write(out, state)

    def emit(partial: dict[str, Any]) -> None:
        state.update(partial)
        _write(out, state)

    started = time.perf_counter()
    try:
        if injected(config, "hang", name):
            time.sleep(10**6)
        if injected(config, "fail", name):
            raise RuntimeError(f"injected failure of stage {name} (DEVICE_CHECK_INJECT)")
        if name != "env" and (injected(config, "compile") or injected(config, "compile-late")):
            inject_compile_failure()
        if injected(config, "oom", name):
            inject_oom()
        result = STAGE_FUNCTIONS[name](config, emit)
    except BaseException as exc:  # noqa: BLE001 - every failure is written down, then the process exits 1
        from bmbench.bench.measure import failure

        state.update({"status": "failed", "seconds": time.perf_counter() - started, **failure(exc, name)})
        _write(out, state)
        return 1
    state.update({"status": "ok", **result, "seconds": time.perf_counter() - started})
    _write(out, state)
    return 0


# ---------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------


def _limits() -> dict[str, float]:
    out: dict[str, float] = {}
    for item in os.environ.get("DEVICE_CHECK_LIMITS", "").split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            out[key.strip()] = float(value)
    return out


def stage_limit(index: int, elapsed: float, budget: float, cpu: bool) -> float:
    """Seconds stage ``index`` may take: its share, or more while the later stages' shares stay covered."""
    left = budget - elapsed
    if cpu:
        return max(0.0, left)
    later = sum(s.seconds for s in STAGES[index + 1:])
    return max(0.0, min(left, max(STAGES[index].seconds, left - later)))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summary_line(doc: dict[str, Any]) -> str:
    """One line per stage for the console and the report."""
    status = doc.get("status", "?")
    line = f"{doc['stage']:8s} {status}"
    if doc.get("seconds") is not None:
        line += f" in {doc['seconds']:.0f} s"
    if doc.get("error"):
        line += f": {doc['error']}"
    if doc.get("reason"):
        line += f": {doc['reason']}"
    notes = doc.get("notes") or []
    return line + "".join(f"\n           {n}" for n in notes)


def write_report(out: Path, config: dict[str, Any], stages: list[dict[str, Any]], started: float) -> None:
    """``report.json`` (every stage's document) and ``report.md``, rewritten after each stage."""
    from bmbench.bench.report import device_check_markdown

    report = {"schema_version": SCHEMA_VERSION, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "mode": config["mode"], "budget_s": config["budget_s"], "elapsed_s": time.monotonic() - started,
              "compile": config.get("compile"), "stages": stages}
    _write(out / "report.json", report)
    from bmbench import atomic

    atomic.write_text(out / "report.md", device_check_markdown(report))


LOG_TAIL_LINES = 200
"""Lines of each stage's output kept in ``logs.txt``."""


def write_logs(path: Path, stages_dir: Path) -> None:
    """The tail of every stage's output so far, in stage order, as one file."""
    from bmbench import atomic

    parts = []
    for stage in STAGES:
        log_file = stages_dir / f"{stage.name}.log"
        if log_file.is_file():
            lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
            cut = f" (last {LOG_TAIL_LINES} of {len(lines)} lines)" if len(lines) > LOG_TAIL_LINES else ""
            parts.append(f"==== {stage.name}{cut} ====\n" + "\n".join(lines[-LOG_TAIL_LINES:]))
    atomic.write_text(path, "\n\n".join(parts) + "\n")


def device_check(mode: str, out: Path, work: Path, budget: float | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage in order under the budget; return the report (also in ``out/report.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    config = make_config(mode, work, out)
    config["budget_s"] = float(budget if budget is not None else os.environ.get(
        "DEVICE_CHECK_BUDGET", 900 if mode == "cpu" else TOTAL_BUDGET_S))
    config_path = work / "config.json"
    stages_dir = work / "stages"
    stages_dir.mkdir(exist_ok=True)
    started = time.monotonic()
    limits = _limits()
    stages: list[dict[str, Any]] = []
    log(f"bmbench device check ({mode}): budget {config['budget_s']:.0f} s, results in {out}")
    for k, stage in enumerate(STAGES):
        elapsed = time.monotonic() - started
        limit = limits.get(stage.name, stage_limit(k, elapsed, config["budget_s"], mode == "cpu"))
        path, log_path = stages_dir / f"{stage.name}.json", stages_dir / f"{stage.name}.log"
        path.unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)
        if limit < 5:
            doc = {"stage": stage.name, "status": "skipped", "reason": f"the {config['budget_s']:.0f} s budget "
                   f"is spent ({elapsed:.0f} s elapsed)"}
            _write(path, doc)
        else:
            _write(config_path, config)
            doc = _run_child(stage.name, config_path, path, log_path, limit)
        if stage.name == "env":
            probe = doc.get("compile_probe") or {}
            config["compile"] = bool(probe.get("compile"))
            config["pydantic"] = bool(doc.get("pydantic"))
            doc.setdefault("notes", []).append(
                "compilation ON for the later stages" if config["compile"] else
                f"compilation OFF for the later stages (eager figures): {probe.get('error', 'no probe result')}")
        stages.append(doc)
        log(summary_line(doc))
        write_report(out, config, stages, started)
        write_logs(out / "logs.txt", stages_dir)
    log(f"finished in {time.monotonic() - started:.0f} s; {out / 'report.md'}")
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def _run_child(name: str, config_path: Path, path: Path, log_path: Path, limit: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bmbench.bench", "stage", name, "--config", str(config_path), "--out", str(path)]
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
            _kill(proc)
    seconds = time.perf_counter() - started
    doc = _read(path) or {"stage": name}
    doc.setdefault("stage", name)
    if code is None:
        doc.update({"status": "timed out", "error": f"stopped at its {limit:.0f} s limit; what it measured "
                    "before is kept", "seconds": seconds})
    elif code != 0 and doc.get("status") in (None, "running", "ok"):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        doc.update({"status": "failed", "error": f"exit {code}: {' | '.join(tail)}", "seconds": seconds})
    doc["wall_s"] = seconds
    _write(path, doc)
    return doc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop a stage and everything it started (its own session)."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
