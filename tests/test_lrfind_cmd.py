"""`bmbench lr-find` and the range test's rough edges: restored weights, a fresh training optimizer, bf16, the cache."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from bmbench.classes import NUM_CLASSES
from bmbench.cli.main import app
from bmbench.errors import BmbenchError
from bmbench.splits.store import load_split
from bmbench.submissions.registry import default_submissions_dir
from bmbench.submissions.schema import load_submission
from bmbench.engine import loop as loop_module
from bmbench.runs import lrfind as lrfind_module
from bmbench.datapaths.plain import PlainDataPath
from bmbench.runs.lrfind import find_lr
from bmbench.runs.lrfind_cache import (LR_FIND_FILE, LR_FIND_PLOT, lr_find_identity, lr_find_path, plot_lr_find,
                                           read_lr_find)
from bmbench.recipe import LrFind, Recipe
from bmbench.records.lrfind import LrFindIdentity, LrFindRecord
from bmbench.runs.run import RunOptions, run_submission
from cpu_fixtures import cpu_recipe, tiny_cnn

runner = CliRunner()
CPU = torch.device("cpu")


def _recipe(**changes: object) -> Recipe:
    base = {"epochs": 1, "batch_size": 8, "lr": "find", "lr_find": LrFind(start_lr=1e-5, end_lr=1.0, num_iter=8)}
    return cpu_recipe(**(base | changes))


def _model(seed: int = 0) -> nn.Module:
    return tiny_cnn(seed, blocks=1)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_range_test_restores_weights_and_buffers_and_training_gets_a_fresh_optimizer(
        tiny_image_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split, paths = tiny_image_set
    recipe = _recipe()
    model = _model()
    before = _state(model)
    made: list[tuple[str, torch.optim.Optimizer, int]] = []
    states_during_test: list[int] = []
    original = loop_module.make_optimizer

    def spy(where: str):
        def make(*args, **kwargs):
            opt = original(*args, **kwargs)
            made.append((where, opt, len(opt.state)))
            if where == "range test":
                opt.register_step_post_hook(lambda o, *_: states_during_test.append(len(o.state)))
            return opt
        return make

    monkeypatch.setattr(lrfind_module, "make_optimizer", spy("range test"))
    monkeypatch.setattr(loop_module, "make_optimizer", spy("training"))
    datapath = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=0, fold=0)
    settings = loop_module.settings_for(recipe, CPU, epochs=1, lr=1e-5, seed=0, max_steps=1)
    train, val, test = (split.members(0, r) for r in ("train", "val", "test"))
    result = find_lr(model, datapath, train, recipe, settings)

    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, running stats, num_batches_tracked
    assert 1e-5 <= result.suggested_lr <= 1.0 and len(result.lrs) == len(result.losses) == 8
    (_, finder_opt, _), = made
    assert max(states_during_test) > 0  # the range test built momentum buffers in ITS optimizer ...

    lr = dataclasses.replace(settings, lr=0.01)
    loop_module.train_fold(model, datapath, recipe, lr, fold=0, train=train, val=val, test=test,
                           fold_dir=tmp_path / "fold0")
    where, train_opt, state_at_creation = made[1]
    assert where == "training" and train_opt is not finder_opt  # ... which training never sees
    assert state_at_creation == 0 and train_opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert {id(p) for p in train_opt.param_groups[0]["params"]} == {id(p) for p in model.parameters()}


def test_range_test_in_bf16_autocast(tiny_image_set) -> None:
    """The mixed-precision path (a GPU's bf16) exercised with CPU autocast: torch-lr-finder demands a
    GradScaler for amp_backend="torch", which bf16 does not need; a disabled one is passed."""
    split, paths = tiny_image_set
    recipe = _recipe()
    model = _model(1)
    before = _state(model)
    settings = dataclasses.replace(loop_module.settings_for(recipe, CPU, epochs=1, lr=1e-5, seed=0, max_steps=None),
                                   bf16=True)
    datapath = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=0, fold=0)
    result = find_lr(model, datapath, split.members(0, "train"), recipe, settings)
    assert np.isfinite(result.losses).all() and result.suggested_lr > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_plot_and_cache_file_checks(tmp_path: Path) -> None:
    record = {"suggested_lr": 3e-3, "rule": "steepest", "lrs": list(np.logspace(-5, 0, 20)),
              "losses": [3.0] * 8 + list(np.linspace(3.0, 1.0, 8)) + [2, 4, float("nan"), 9]}
    plot_lr_find(LrFindRecord.model_validate(record), tmp_path / LR_FIND_PLOT, title="t")
    assert (tmp_path / LR_FIND_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / LR_FIND_FILE
    path.write_text(json.dumps({"suggested_lr": -1, "rule": "steepest"}))
    with pytest.raises(BmbenchError, match="positive number"):
        read_lr_find(path)
    path.write_text("{not json")
    with pytest.raises(BmbenchError, match="delete the file"):
        read_lr_find(path)
    path.write_text(json.dumps({"suggested_lr": 0.01, "rule": "by hand"}))  # no computed_for: taken as given
    assert read_lr_find(path, LrFindIdentity(fold=3)).suggested_lr == 0.01


@pytest.fixture(scope="module")
def finding_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo_cnn with lr = "find", a short range test, batch 8 and single-process loading."""
    folder = tmp_path_factory.mktemp("subs") / "demo_cnn"
    shutil.copytree(default_submissions_dir() / "demo_cnn", folder)
    toml = (folder / "submission.toml").read_text()
    toml = toml.replace("lr = 0.05", 'lr = "find"\nbatch_size = 8').replace("num_workers = 2", "num_workers = 0")
    (folder / "submission.toml").write_text(toml + "\n[recipe.lr_find]\nnum_iter = 6\n")
    return folder


@pytest.mark.slow
def test_cli_lr_find_then_run_reuses_the_cache(finding_demo: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["lr-find", str(finding_demo), "--data", "synthetic", "--folds", "0", "--device", "cpu",
            "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "suggested learning rate" in result.output and "computed" in result.output
    cache = lr_find_path(tmp_path / "demo_cnn" / "synthetic", 0)
    assert cache.is_file() and cache.with_name(LR_FIND_PLOT).read_bytes()[:4] == b"\x89PNG"
    record = json.loads(cache.read_text())
    loaded = load_submission(finding_demo)
    assert record["computed_for"] == lr_find_identity(loaded, load_split("synthetic-cv5-v1"), 0, 0).model_dump()
    assert record["rule"] == "steepest" and 1e-7 <= record["suggested_lr"] <= 1.0 and len(record["lrs"]) == 6

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "cached" in again.output

    # The run trains with the cached LR (a distinctive one, written into the cache) and never recomputes it.
    record["suggested_lr"] = 0.0123
    cache.write_text(json.dumps(record))

    def no_range_test(*_a, **_k):
        raise AssertionError("the range test ran although its result was cached")

    monkeypatch.setattr(lrfind_module, "find_lr", no_range_test)
    run = run_submission(loaded, RunOptions(data="synthetic", folds=(0,), out=tmp_path, epochs=1, max_steps=1,
                                            device="cpu"))
    fold = json.loads((run.run_dir / "fold0" / "fold.json").read_text())
    assert fold["lr"] == 0.0123 and fold["lr_rule"] == "steepest"
    assert run.folds[0]["lr"] == 0.0123

    forced = runner.invoke(app, [*args, "--force"])  # the fold has trained with it: refuse to change it there
    assert forced.exit_code == 2 and "already trained" in forced.output


@pytest.mark.slow
def test_run_computes_the_cache_and_refuses_a_stale_one(finding_demo: Path, tmp_path: Path) -> None:
    loaded = load_submission(finding_demo)
    options = RunOptions(data="synthetic", folds=(1,), out=tmp_path / "a", epochs=1, max_steps=1, device="cpu")
    run = run_submission(loaded, options)
    cache = lr_find_path(run.run_dir, 1)
    record = json.loads(cache.read_text())
    assert run.folds[0]["lr"] == record["suggested_lr"] and record["computed_for"]["fold"] == 1

    stale_dir = tmp_path / "b" / "demo_cnn" / "synthetic" / "fold1"
    stale_dir.mkdir(parents=True)
    record["computed_for"]["recipe_digest"] = "0" * 64
    (stale_dir / LR_FIND_FILE).write_text(json.dumps(record))
    with pytest.raises(BmbenchError, match="computed for a different setting: recipe_digest"):
        run_submission(loaded, dataclasses.replace(options, out=tmp_path / "b"))


def test_cli_lr_find_refuses_baselines_and_bad_folds(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lr-find", "baseline_majority", "--data", "synthetic", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no learning rate" in result.output
    result = runner.invoke(app, ["lr-find", "demo_cnn", "--data", "synthetic", "--folds", "9", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--folds must be between 0 and 4" in result.output


@pytest.mark.slow
def test_lr_find_takes_the_cpu_threads_of_the_range_test_in_a_run(finding_demo: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`bmbench lr-find` on a CPU trains with the thread count a fold of `bmbench run` sets for its own range test
    (engine.fastpath.cpu_threads; the count changes float rounding): the same losses, the same cached LR."""
    from bmbench import parallel

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    wanted = torch.get_num_threads() + 1  # not torch's default, whatever the machine (no loader workers here)
    monkeypatch.setattr(parallel, "available_cpus", lambda: wanted)
    seen: list[int] = []
    real = lrfind_module.find_lr
    monkeypatch.setattr(lrfind_module, "find_lr", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    standalone = runner.invoke(app, ["lr-find", str(finding_demo), "--data", "synthetic", "--folds", "0",
                                     "--device", "cpu", "--out", str(tmp_path / "a")])
    assert standalone.exit_code == 0, standalone.output
    run_submission(load_submission(finding_demo), RunOptions(data="synthetic", folds=(0,), out=tmp_path / "b",
                                                             epochs=1, max_steps=1, device="cpu"))
    assert seen == [wanted, wanted]
    a, b = (json.loads(lr_find_path(tmp_path / x / "demo_cnn" / "synthetic", 0).read_text()) for x in "ab")
    assert a["losses"] == b["losses"] and a["suggested_lr"] == b["suggested_lr"]
