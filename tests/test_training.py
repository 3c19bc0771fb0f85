"""The training engine on CPU: sampler, augmentation, schedule, best-checkpoint selection, resume, LR test."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from bmbench.classes import NUM_CLASSES
from bmbench.engine.checkpoint import load_checkpoint
from bmbench.datapaths.plain import PlainDataPath
from bmbench.engine.loop import BEST, HISTORY, LAST, EpochRecord, make_scheduler, settings_for, train_fold
from bmbench.runs.lrfind import find_lr, suggest_lr
from bmbench.recipe import Augmentation, LrFind, Recipe
from bmbench.datapaths.transforms import train_transform
from cpu_fixtures import cpu_recipe, tiny_cnn

CPU = torch.device("cpu")


def small_recipe(**changes: object) -> Recipe:
    return cpu_recipe(**({"epochs": 3, "batch_size": 16, "lr": 0.05} | changes))


def tiny_model(seed: int = 0) -> nn.Module:
    return tiny_cnn(seed)


def test_sampler_sees_every_class_equally_often() -> None:
    """The draws bmbench's data path makes (not torch's WeightedRandomSampler, which it does not use):
    over 40 epochs of an imbalanced training set (1 to 200 images per class), a chi-square goodness-of-fit
    test against equal class frequencies does not reject at p = 0.001, while the unweighted shuffle of the
    same set is rejected (so the test can fail)."""
    from scipy.stats import chisquare

    counts = np.linspace(1, 200, NUM_CLASSES).astype(int)
    labels = np.repeat(np.arange(NUM_CLASSES), counts)
    paths = [Path(f"/nowhere/{i}.jpg") for i in range(len(labels))]  # the sampler never opens an image
    positions = np.arange(len(labels))

    def class_counts(sampler: str) -> np.ndarray:
        path = PlainDataPath(small_recipe(sampler=sampler), paths, labels, NUM_CLASSES, seed=0, fold=0)
        drawn = np.concatenate([np.asarray(path.train_batches(positions, epoch=e).sampler.indices)
                                for e in range(40)])
        assert len(drawn) == 40 * len(labels)  # an epoch has as many draws as training images
        return np.bincount(labels[positions[drawn]], minlength=NUM_CLASSES)

    balanced = class_counts("class_balanced")
    assert chisquare(balanced).pvalue > 1e-3, balanced
    assert chisquare(class_counts("uniform")).pvalue < 1e-12


def test_epoch_length_is_the_training_set_size(tiny_image_set) -> None:
    split, paths = tiny_image_set
    recipe = small_recipe()
    path = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=0, fold=0)
    train = split.members(0, "train")
    loader = path.train_batches(train, epoch=0)
    assert len(loader.sampler) == len(train)
    assert path.train_steps(train) == math.ceil(len(train) / recipe.batch_size)
    images, labels = next(iter(loader))
    assert images.shape == (recipe.batch_size, 3, 32, 32) and labels.dtype == torch.int64


def test_augmentation_is_configured_as_the_paper_says() -> None:
    pipeline = train_transform(Recipe()).transforms
    crop = next(t for t in pipeline if isinstance(t, v2.RandomResizedCrop))
    rotation = next(t for t in pipeline if isinstance(t, v2.RandomRotation))
    flips = {type(t): t.p for t in pipeline if isinstance(t, v2.RandomHorizontalFlip | v2.RandomVerticalFlip)}
    assert tuple(crop.size) == (224, 224) and tuple(crop.scale) == (0.08, 1.0) and tuple(crop.ratio) == (0.75, 1.33)
    assert list(rotation.degrees) == [0.0, 180.0]
    assert flips == {v2.RandomHorizontalFlip: 0.5, v2.RandomVerticalFlip: 0.5}
    no_crop = train_transform(Recipe(augmentation=Augmentation(random_crop=False))).transforms
    assert not any(isinstance(t, v2.RandomResizedCrop) for t in no_crop)


def test_augmentation_draws_parameters_in_the_stated_ranges() -> None:
    pipeline = train_transform(Recipe()).transforms
    crop = next(t for t in pipeline if isinstance(t, v2.RandomResizedCrop))
    rotation = next(t for t in pipeline if isinstance(t, v2.RandomRotation))
    image = torch.zeros(3, 250, 250)
    torch.manual_seed(0)
    areas, ratios, angles = [], [], []
    for _ in range(3000):
        p = crop.make_params([image])
        areas.append(p["height"] * p["width"] / 250**2)
        ratios.append(p["width"] / p["height"])
        angles.append(rotation.make_params([image])["angle"])
    areas, ratios, angles = map(np.array, (areas, ratios, angles))
    assert areas.min() >= 0.08 - 0.01 and areas.max() <= 1.0
    assert ratios.min() >= 0.75 * 0.97 and ratios.max() <= 1.33 / 0.97  # integer rounding of the crop box
    assert 0 <= angles.min() < 5 and 175 < angles.max() <= 180
    assert abs(angles.mean() - 90) < 4  # uniform over [0, 180]


def test_train_transform_output() -> None:
    from PIL import Image

    out = train_transform(small_recipe())(Image.new("RGB", (250, 250), (143, 126, 187)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_plateau_schedule_reduces_after_patience() -> None:
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0, momentum=0.9)
    scheduler = make_scheduler(optimizer, Recipe())
    lrs = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]:
        scheduler.step(loss)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:5] == [1.0] * 5  # four epochs without improvement are needed (patience 3)
    assert lrs[5] == pytest.approx(0.1) and lrs[9] == pytest.approx(0.01)


def _fit(split, paths, fold_dir: Path, recipe: Recipe, *, resume: bool = False, progress=None, seed: int = 0):
    datapath = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=seed, fold=0)
    settings = settings_for(recipe, CPU, epochs=recipe.epochs, lr=float(recipe.lr), seed=seed, max_steps=None)
    return train_fold(tiny_model(), datapath, recipe, settings, fold=0, train=split.members(0, "train"),
                      val=split.members(0, "val"), test=split.members(0, "test"), fold_dir=fold_dir,
                      resume=resume, progress=progress)


def test_best_checkpoint_is_the_highest_validation_accuracy(tiny_image_set, tmp_path: Path) -> None:
    split, paths = tiny_image_set
    outcome = _fit(split, paths, tmp_path, small_recipe(epochs=4))
    accuracies = [h["val_accuracy"] for h in outcome.history]
    assert outcome.best_epoch == int(np.argmax(accuracies))  # first epoch reaching the maximum
    assert load_checkpoint(tmp_path / BEST)["epoch"] == outcome.best_epoch
    assert [h["best"] for h in outcome.history].count(True) >= 1
    assert len((tmp_path / HISTORY).read_text().splitlines()) == 4
    assert outcome.test_probs.shape == (len(split.members(0, "test")), NUM_CLASSES)
    np.testing.assert_allclose(outcome.test_probs.sum(axis=1), 1.0, atol=1e-9)


class _Kill:
    """Progress callback that interrupts training after a given epoch, like a killed job."""

    def __init__(self, after_epoch: int) -> None:
        self.after_epoch = after_epoch

    def epoch_start(self, *args: object) -> None:
        pass

    def step(self, images: int) -> None:
        pass

    def epoch_end(self, record: EpochRecord) -> None:
        if record.epoch == self.after_epoch:
            raise KeyboardInterrupt


def _comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


def test_resume_equals_an_uninterrupted_run(tiny_image_set, tmp_path: Path) -> None:
    split, paths = tiny_image_set
    recipe = small_recipe(epochs=3)
    straight = _fit(split, paths, tmp_path / "a", recipe)
    with pytest.raises(KeyboardInterrupt):
        _fit(split, paths, tmp_path / "b", recipe, progress=_Kill(after_epoch=1))
    assert load_checkpoint(tmp_path / "b" / LAST)["epoch"] == 1
    resumed = _fit(split, paths, tmp_path / "b", recipe, resume=True)
    assert _comparable(resumed.history) == _comparable(straight.history)
    np.testing.assert_array_equal(resumed.test_probs, straight.test_probs)


def test_lr_range_test_restores_weights_and_suggests_in_range(tiny_image_set) -> None:
    split, paths = tiny_image_set
    recipe = small_recipe(lr="find", lr_find=LrFind(start_lr=1e-5, end_lr=1.0, num_iter=30))
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    datapath = PlainDataPath(recipe, paths, split.labels, NUM_CLASSES, seed=0, fold=0)
    settings = settings_for(recipe, CPU, epochs=1, lr=1e-5, seed=0, max_steps=None)
    result = find_lr(model, datapath, split.members(0, "train"), recipe, settings)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert 1e-5 <= result.suggested_lr <= 1.0 and result.rule == "steepest"
    assert len(result.lrs) == len(result.losses) > 5


def test_suggest_lr_rules() -> None:
    lrs = list(np.logspace(-5, 0, 40))
    losses = [2.0] * 15 + list(np.linspace(2.0, 0.5, 15)) + list(np.linspace(0.5, 5, 10))
    steepest = suggest_lr(lrs, losses, "steepest")
    assert lrs[14] <= steepest <= lrs[29]
    assert suggest_lr(lrs, losses, "min_div_10") == pytest.approx(lrs[int(np.argmin(losses))] / 10)


def test_settings_fall_back_on_cpu() -> None:
    recipe = Recipe(precision="bf16", channels_last=True, compile=True)
    settings = settings_for(recipe, CPU, epochs=1, lr=0.1, seed=0, max_steps=None)
    assert (settings.bf16, settings.channels_last, settings.compile) == (False, False, False)
    assert dataclasses.replace(settings, lr=0.2).lr == 0.2
