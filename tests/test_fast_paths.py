"""Issue 14's fast paths and correctness fixes, each pinned by a CPU test (no GPU needed).

Evaluation synchronises once per pass; CUDA settings turn on cudnn.benchmark; host-mode batches are one
pinned copy; gradient accumulation never leaves a micro-batch of one image and the range test accumulates as
training does; ``bench --warmup 0`` keeps 0; a concurrency fallback to host memory says why; the reference
submissions leave compile and channels_last at "auto", which on CUDA is the bench's fast path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from typer.testing import CliRunner

from bmbench.classes import NUM_CLASSES
from bmbench.cli.main import app
from bmbench.datapaths import gpu
from bmbench.datapaths.plain import PlainDataPath
from bmbench.engine.fastpath import backbone_default, make_optimizer, micro_batches, prepare_device, settings_for
from bmbench.engine.loop import NoProgress, _train_epoch, evaluate
from bmbench.recipe import Augmentation, LrFind, Recipe
from bmbench.runs.lrfind import find_lr
from bmbench.submissions.registry import default_submissions_dir
from bmbench.submissions.schema import load_submission

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
runner = CliRunner()


def _settings(recipe: Recipe, device: torch.device = CPU, backbone: str = "") -> Any:
    return settings_for(recipe, device, epochs=1, lr=0.01, seed=0, max_steps=None, backbone=backbone)


def _bn_model() -> nn.Module:
    """BatchNorm1d after pooling: a training-mode batch of one image raises (one value per channel)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8),
                         nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, NUM_CLASSES))


def _forward_sizes(model: nn.Module) -> list[int]:
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: sizes.append(int(args[0].shape[0])))
    return sizes


SYNCING = frozenset({"cpu", "item", "tolist", "numpy", "__float__", "__int__", "__bool__"})
"""Tensor calls that wait for the device."""


class _Syncs(TorchFunctionMode):
    """Records every tensor call that waits for the device (and the model's forward passes, as 'forward')."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            self.events.append(name)
        return func(*args, **(kwargs or {}))


def test_evaluation_synchronises_once_after_the_last_batch() -> None:
    model = _bn_model().eval()
    model.register_forward_pre_hook(lambda *_: syncs.events.append("forward"))
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, NUM_CLASSES, (n,), generator=gen))
               for n in (4, 4, 4, 3)]
    syncs = _Syncs()
    with syncs:
        loss, acc, probs = evaluate(model, batches, _settings(Recipe()), pad_to=4)
    last = max(i for i, e in enumerate(syncs.events) if e == "forward")
    assert syncs.events[:last + 1] == ["forward"] * 4  # nothing waits for the device between batches
    assert syncs.events[last + 1:].count("cpu") == 1  # the probabilities: one copy
    assert probs.shape == (15, NUM_CLASSES) and 0.0 <= acc <= 1.0 and loss > 0  # padding dropped


def test_cuda_settings_turn_on_cudnn_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(Recipe(), CUDA)
    assert settings.cudnn_benchmark and settings.describe()["cudnn_benchmark"] is True
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepare_device(settings)  # engine.loop.fit_fold and the bench call this before the first batch
    assert torch.backends.cudnn.benchmark is True
    assert not _settings(Recipe()).cudnn_benchmark


def test_host_batches_are_gathered_straight_into_pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    rows = np.array([7, 2, 5])
    pinned: list[bool] = []
    real_empty = torch.empty

    def empty(*args: Any, pin_memory: bool = False, **kwargs: Any) -> torch.Tensor:
        pinned.append(pin_memory)  # a CPU-only torch cannot pin: record the request instead
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pytest.fail("a second, pageable -> pinned copy"))
    out = gpu._host_rows(images, rows, pin=True)
    assert pinned == [True] and np.array_equal(out.numpy(), images[rows])


def test_micro_batches_never_hold_a_single_image() -> None:
    for n in range(2, 70):
        for k in range(1, 20):
            sizes = micro_batches(n, k)
            assert sum(sizes) == n and 1 <= len(sizes) <= k and min(sizes) >= 2 and max(sizes) - min(sizes) <= 1
    assert micro_batches(9, 8) == [3, 2, 2, 2]  # 8 parts would leave seven micro-batches of one image
    assert micro_batches(32, 8) == [4] * 8 and micro_batches(1, 8) == [1]


def test_accumulation_of_8_trains_a_ragged_batch_with_batchnorm() -> None:
    model = _bn_model()
    sizes = _forward_sizes(model)
    recipe = Recipe(batch_size=16, grad_accumulation=8)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, NUM_CLASSES, (n,), generator=gen))
               for n in (16, 9)]
    optimizer = make_optimizer(model, recipe, 0.01, CPU)
    _loss, _acc, seen = _train_epoch(model, batches, optimizer, recipe, _settings(recipe), NoProgress())
    assert seen == 25 and sizes == [2] * 8 + [3, 2, 2, 2]


def test_the_range_test_accumulates_like_training(tiny_image_set: Any) -> None:
    split, paths = tiny_image_set
    recipe = Recipe(epochs=1, batch_size=8, grad_accumulation=4, lr="find", eval_size=32, num_workers=0,
                    augmentation=Augmentation(crop_size=32), lr_find=LrFind(start_lr=1e-5, end_lr=1.0, num_iter=5))
    model = _bn_model()
    sizes = _forward_sizes(model)
    datapath = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=0, fold=0)
    result = find_lr(model, datapath, split.members(0, "train"), recipe, _settings(recipe))
    assert len(result.lrs) == 5  # one learning rate per optimizer step of 8 images ...
    assert sizes == [2] * 20  # ... each step 4 micro-batches of 2, as training splits them


def test_bench_warmup_zero_stays_zero(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--backbone", "demo_cnn", "--device", "cpu", "--steps", "1", "--warmup",
                                 "0", "--batch", "4", "--paths", "bmbench", "--only-train", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    (record,) = doc["backbones"][0]["variants"].values()
    assert doc["options"]["warmup"] == 0 and record["train"]["warmup"] == 0 and record["train"]["images"] == 4


def test_concurrent_folds_on_an_80_gb_card_say_why_images_stay_on_the_host(monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from bmbench.bench.report import concurrent_storage

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (79 * 2**30, 80 * 2**30))
    monkeypatch.delenv(gpu.STORAGE_ENV, raising=False)
    fold = int(109_700 * 250 * 250 * 3 * (1 + 0.5 * (224 / 250) ** 2))  # as GpuDataPath asks: bm-cv5-v1, 224 px
    monkeypatch.setenv(gpu.CONCURRENT_ENV, "1")
    assert gpu.resolve_storage("auto", CUDA, fold) == "device" and capsys.readouterr().err == ""
    monkeypatch.setenv(gpu.CONCURRENT_ENV, "2")
    assert gpu.resolve_storage("auto", CUDA, fold) == "host"
    err = capsys.readouterr().err
    for text in ("26.8 GiB", "shared by 2 concurrent folds", "23.7 GiB of 79.0 GiB free", "storage = host",
                 "BMBENCH_GPU_STORAGE=device"):
        assert text in err, err
    notes = gpu.host_fallback_notes("epoch 1 ...\n" + err)  # what bench --concurrent / run --concurrent-folds relay
    assert len(notes) == 1 and notes[0].startswith("the fold's images (26.8 GiB)")
    line = concurrent_storage({"storage_per_process": ["host", "host"], "storage_notes": [f"process 0: {notes[0]}"]})
    assert line.startswith("FELL BACK to host memory in 2 of 2 processes: process 0: the fold's images")
    assert concurrent_storage({"storage_per_process": ["device", "device"]}).startswith("images in device memory")


def test_reference_submissions_get_the_fast_path_on_cuda() -> None:
    checked = 0
    for folder in sorted(p for p in default_submissions_dir().iterdir() if (p / "submission.toml").is_file()):
        loaded = load_submission(folder)
        sub = loaded.submission
        if sub.kind == "baseline":
            continue
        recipe = sub.recipe
        assert (recipe.compile, recipe.channels_last, recipe.precision) == ("auto", "auto", "auto"), folder.name
        settings = _settings(recipe, CUDA, str(sub.backbone))
        assert settings.compile and settings.static_shapes and settings.bf16, folder.name
        assert settings.channels_last == bool(backbone_default(str(sub.backbone), "channels_last")), folder.name
        assert settings.channels_last == ("regnet" not in str(sub.backbone)), folder.name
        checked += 1
    assert checked >= 20


def test_cpu_threads_leave_the_loader_workers_their_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the training process takes the cores its DataLoader workers leave (at least one), the same under
    --concurrent-folds N (same rounding as a sequential run), and nothing when the user set OMP_NUM_THREADS; the
    count is restored after."""
    from bmbench.engine import fastpath

    monkeypatch.setattr("bmbench.parallel.available_cpus", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(gpu.CONCURRENT_ENV, raising=False)
    before = torch.get_num_threads()
    with fastpath.cpu_threads(2) as threads:
        assert threads == 6 and torch.get_num_threads() == 6
    assert torch.get_num_threads() == before
    with fastpath.cpu_threads(10) as threads:
        assert threads == 1
    monkeypatch.setenv(gpu.CONCURRENT_ENV, "2")
    with fastpath.cpu_threads(2) as threads:
        assert threads == 6
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with fastpath.cpu_threads(2) as threads:
        assert threads is None and torch.get_num_threads() == before


def test_a_cpu_fold_records_its_threads(tmp_path: Path, quick_demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bmbench.runs.run import RunOptions, run_submission

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("bmbench.parallel.available_cpus", lambda: 3)
    result = run_submission(load_submission(quick_demo), RunOptions(data="synthetic", folds=(0,), epochs=1,
                                                                    max_steps=1, out=tmp_path, device="cpu"))
    fold = json.loads((result.run_dir / "fold0" / "fold.json").read_text())
    assert fold["cpu_threads"] == 3  # quick_demo loads in the main process (num_workers = 0)
