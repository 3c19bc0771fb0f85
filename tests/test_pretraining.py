"""`bmbench pretrain`: PatchCamelyon HDF5, Comparison Detector COCO crops, Hugging Face copies, and the
checkpoint the in-domain initialisations resolve. Every fixture is generated here (small N, real keys,
dtypes and shapes); nothing touches the network."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bmbench.cli.main import app
from bmbench.errors import BmbenchError, DataNotFoundError
from bmbench.models.backbones import head_name
from bmbench.models.init import CheckpointRef, build_initialised_model, sha256_file
from bmbench.pretraining import cd as cd_mod
from bmbench.pretraining import hf as hf_mod
from bmbench.pretraining import pcam as pcam_mod
from bmbench.pretraining.pretrain import (PretrainOptions, SilentProgress, checkpoint_init, load_pretrain_data,
                                          load_recipe_file, pretrain, pretrain_recipe)
from bmbench.pretraining.source import CD, PCAM, SourceDataPath
from bmbench.submissions.schema import load_submission
from bmbench.recipe import Augmentation, Recipe
from bmbench.records.pcam_source import read_pcam_source
from bmbench.runs.run import RunOptions, run_submission
from cpu_fixtures import cpu_recipe

runner = CliRunner()
BACKBONE = "torchvision:mobilenet_v3_small"
PCAM_COUNTS = {"train": 24, "valid": 8, "test": 8}


def small_recipe(**changes: object) -> Recipe:
    """The paper's recipe at CPU size: 32 px, batch 4, a fixed LR (no range test), no workers."""
    return cpu_recipe(**({"epochs": 1, "batch_size": 4, "lr": 0.01} | changes))


# --- fixtures -------------------------------------------------------------------------------------------------

def write_pcam(folder: Path, *, gz: bool = False, counts: dict[str, int] = PCAM_COUNTS) -> Path:
    """The six release files with the real keys, dtypes and shapes (x: N,96,96,3 uint8; y: N,1,1,1 uint8)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in counts.items():
        y = (np.arange(n) % 2).astype(np.uint8)
        x = rng.integers(0, 80, size=(n, 96, 96, 3), dtype=np.uint8)
        x[y == 1, 32:64, 32:64, 0] = 250  # a red centre marks the positive class
        for key, array in (("x", x), ("y", y.reshape(n, 1, 1, 1))):
            path = folder / pcam_mod.file_name(split, key)
            with h5py.File(path, "w") as handle:
                handle.create_dataset(key, data=array, chunks=(1, *array.shape[1:]))
            if gz:
                with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                path.unlink()
    return folder


CD_NAMES = ["ASC-US", "asch", "LSIL", "hsil", "scc", "agc", "trichomonas", "candida", "flora", "herps",
            "actinomyces"]


def write_cd(root: Path, *, images_per_split: int = 6) -> Path:
    """A COCO release: .bmp images under train/ and test/, boxes including degenerate ones (see EXPECTED_DROPS)."""
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(images_per_split):
            name = f"{split}_{i:03d}.bmp"
            Image.fromarray(rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)).save(root / split / name)
            images.append({"id": 100 + i, "file_name": name, "width": 64, "height": 48})
            for k in range(3):  # three good boxes per image, one of them reaching over the border
                cat = (i * 3 + k) % 11
                box = [5 + 10 * k, 4, 12, 20] if k < 2 else [56, 40, 16, 16]
                annotations.append({"id": len(annotations), "image_id": 100 + i, "category_id": 50 + cat, "bbox": box})
        annotations += [
            {"id": 900, "image_id": 100, "category_id": 50, "bbox": [10, 10, 1, 30]},      # w <= 1
            {"id": 901, "image_id": 100, "category_id": 50, "bbox": [10, 10, 30, 0.5]},    # h <= 1
            {"id": 902, "image_id": 100, "category_id": 50, "bbox": [200, 10, 20, 20]},    # outside the image
            {"id": 903, "image_id": 100, "category_id": 50, "bbox": [-40, -40, 20, 20]},   # outside the image
            {"id": 904, "image_id": 999, "category_id": 50, "bbox": [1, 1, 20, 20]},       # unknown image
        ]
        categories = [{"id": 50 + k, "name": name} for k, name in enumerate(CD_NAMES)]
        (root / f"{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    return root


EXPECTED_DROPS = {"outside the image": 2, "unknown image_id": 1, "w or h <= 1 px": 2}


@pytest.fixture(scope="module")
def cd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cd(tmp_path_factory.mktemp("cd"))


@pytest.fixture(scope="module")
def pcam_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pcam(tmp_path_factory.mktemp("pcam"))


# --- PatchCamelyon ----------------------------------------------------------------------------------------------

def test_pcam_reads_the_published_split(pcam_root: Path) -> None:
    data = pcam_mod.load_pcam(pcam_root)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 8, 8)
    assert data.spec is PCAM and data.labels.tolist()[:4] == [0, 1, 0, 1]
    assert set(data.train) | set(data.val) | set(data.test) == set(range(40))
    image = data.source.image(int(data.test[1]))
    assert image.size == (96, 96) and image.mode == "RGB" and image.getpixel((48, 48))[0] == 250
    assert data.counts()["val"]["per_class"] == {"normal": 4, "metastasis": 4}


def test_pcam_opens_each_file_once_per_process(pcam_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = pcam_mod.load_pcam(pcam_root)
    opened: list[str] = []
    real = h5py.File

    def counting(path: object, *args: object, **kwargs: object) -> h5py.File:
        opened.append(Path(str(path)).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", counting)
    datapath = SourceDataPath(small_recipe(), data.source, data.labels, 2, seed=0)
    every = np.arange(len(data.labels))
    for _ in range(2):  # two passes over all 40 items, in batches, as the loop reads them
        seen = sum(len(labels) for _, labels in datapath.eval_batches(every))
        assert seen == 40
    assert sorted(opened) == sorted(pcam_mod.file_name(s, "x") for s in pcam_mod.SPLITS)
    # A worker gets a copy without the parent's open handles (spawned workers pickle the source).
    clone = pickle.loads(pickle.dumps(data.source))
    assert clone._handles == {} and clone.image(3).size == (96, 96)
    data.source.close()


def test_pcam_gzipped_is_decompressed_once_into_the_cache(tmp_path: Path) -> None:
    root = write_pcam(tmp_path / "gz", gz=True)
    advanced: dict[str, int] = {}

    def task(description: str, total: int | None):
        advanced[description] = 0

        def advance(k: int) -> None:
            advanced[description] += k
        return advance

    data = pcam_mod.load_pcam(root, task)
    cached = data.source.paths[0]
    assert cached.parent.name == "pcam" and cached.name == pcam_mod.file_name("train", "x")
    key = f"decompressing camelyonpatch_level_2_split_train_x.h5.gz into {cached.parent} (kept for later runs)"
    assert len(advanced) == 6 and advanced[key] == (root / "camelyonpatch_level_2_split_train_x.h5.gz").stat().st_size
    assert len(data.labels) == 40
    before = cached.stat().st_mtime_ns
    advanced.clear()
    again = pcam_mod.load_pcam(root, task)  # reused: no second decompression
    assert advanced == {} and cached.stat().st_mtime_ns == before
    assert np.array_equal(np.asarray(again.source.image(5)), np.asarray(data.source.image(5)))
    record = cached.with_name(cached.name + ".source.json")
    assert read_pcam_source(record).size == (root / "camelyonpatch_level_2_split_train_x.h5.gz").stat().st_size
    record.write_text(record.read_text().replace('"size"', '"bytes"'))  # damaged: decompressed again
    with pytest.raises(BmbenchError) as info:
        read_pcam_source(record)
    assert info.value.exit_code == 2 and str(record) in info.value.message and "bytes" in info.value.message
    pcam_mod.load_pcam(root, task)
    assert advanced and read_pcam_source(record).mtime_ns > 0


def test_pcam_missing_and_corrupt_files(tmp_path: Path) -> None:
    root = write_pcam(tmp_path / "p")
    (root / pcam_mod.file_name("valid", "y")).unlink()
    with pytest.raises(DataNotFoundError) as info:
        pcam_mod.load_pcam(root)
    assert "camelyonpatch_level_2_split_valid_y.h5" in info.value.message and "zenodo" in info.value.message
    (root / pcam_mod.file_name("valid", "y")).write_bytes(b"not hdf5")
    with pytest.raises(BmbenchError, match="not a readable HDF5 file"):
        pcam_mod.load_pcam(root)
    bad_gz = write_pcam(tmp_path / "g", gz=True)
    target = bad_gz / (pcam_mod.file_name("test", "y") + ".gz")
    target.write_bytes(target.read_bytes()[:20])
    with pytest.raises(BmbenchError, match="cannot be decompressed"):
        pcam_mod.load_pcam(bad_gz)


def test_pcam_wrong_shape_is_named(tmp_path: Path) -> None:
    root = write_pcam(tmp_path / "p")
    with h5py.File(root / pcam_mod.file_name("test", "y"), "w") as handle:
        handle.create_dataset("y", data=np.zeros((3, 1, 1, 1), np.uint8))
    with pytest.raises(BmbenchError, match=r"'y' has shape \(3, 1, 1, 1\), expected \(8, 1, 1, 1\)"):
        pcam_mod.load_pcam(root)


# --- Comparison Detector ---------------------------------------------------------------------------------------

def test_cd_crops_boxes_and_counts_dropped_ones(cd_root: Path) -> None:
    lines: list[str] = []
    data = cd_mod.load_cd(cd_root, lines.append)
    assert data.info["dropped_boxes"] == {"train": EXPECTED_DROPS, "test": EXPECTED_DROPS}
    assert any("train.json: 6 images, 18 boxes kept, 5 dropped" in line for line in lines), lines
    assert len(data.test) == 18 and len(data.train) + len(data.val) == 18
    # split by image: 6 train images -> floor(0.2 * 6 + 0.5) = 1 val image with its 3 boxes
    assert len(data.val) == 3 and data.info["val_images"] == 1
    # categories by name: "ASC-US" -> ascus (0), the file's ids (50..60) are not the labels
    assert data.labels[0] == 0 and set(data.labels.tolist()) == set(range(11))
    crop = data.source.image(0)  # box [5, 4, 12, 20]: square side 20 * 1.2 = 24 around its centre
    assert crop.size == (24, 24) and crop.mode == "RGB"
    border = data.source.image(2)  # [56, 40, 16, 16] clipped to [56, 40, 8, 8]: side 9.6 -> 10, padded
    assert border.size == (10, 10)
    assert border.getpixel((9, 9)) == cd_mod.fill_colour()


def test_cd_square_box_rules() -> None:
    assert cd_mod.square_box(10, 10, 20, 10, 100, 100) == (8, 3, 24)
    assert cd_mod.square_box(10, 10, 1, 10, 100, 100) == cd_mod.DROP_SMALL
    assert cd_mod.square_box(10, 10, float("nan"), 10, 100, 100) == cd_mod.DROP_SMALL
    assert cd_mod.square_box(99.5, 10, 10, 10, 100, 100) == cd_mod.DROP_OUTSIDE


def test_cd_val_split_is_deterministic(cd_root: Path) -> None:
    a = cd_mod.load_cd(cd_root)
    b = cd_mod.load_cd(cd_root)
    assert np.array_equal(a.val, b.val) and np.array_equal(a.train, b.train)


def test_cd_errors_name_the_file_and_problem(tmp_path: Path) -> None:
    root = write_cd(tmp_path / "cd", images_per_split=2)
    (root / "test.json").write_text('{"images": [], "annotations": [')
    with pytest.raises(BmbenchError, match=r"test.json: not valid JSON \(line 1"):
        cd_mod.load_cd(root)
    doc = json.loads((root / "train.json").read_text())
    doc["categories"][0]["name"] = "koilocyte"
    (root / "test.json").write_text(json.dumps(doc))
    with pytest.raises(BmbenchError, match="unknown category koilocyte"):
        cd_mod.load_cd(root)
    doc = json.loads((root / "train.json").read_text())
    doc["annotations"][1]["bbox"] = [1, 2, 3]
    (root / "test.json").write_text(json.dumps(doc))
    with pytest.raises(BmbenchError, match=r"annotations\[1\]: 'bbox' must be 4 numbers"):
        cd_mod.load_cd(root)
    (root / "test.json").unlink()
    with pytest.raises(DataNotFoundError, match="(?s)lacks test.json.*ComparisonDetector"):
        cd_mod.load_cd(root)
    (root / "test.json").write_text((root / "train.json").read_text())
    (root / "train" / "train_001.bmp").unlink()
    with pytest.raises(DataNotFoundError, match="train_001.bmp"):
        cd_mod.load_cd(root)


# --- Hugging Face ----------------------------------------------------------------------------------------------

def _hf_cd(folder: Path) -> tuple[Path, Path]:
    """A CD copy through `datasets`: save_to_disk (train/validation/test, ClassLabel names in another order)
    and a parquet folder (string labels, columns img/labels, no validation split)."""
    import datasets

    rng = np.random.default_rng(2)
    names = list(reversed(CD_NAMES))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})

    def part(n: int) -> datasets.Dataset:
        images = [Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)) for _ in range(n)]
        return datasets.Dataset.from_dict({"image": images, "label": [k % 11 for k in range(n)]}, features=features)

    saved = folder / "saved"
    datasets.DatasetDict(train=part(22), validation=part(11), test=part(11)).save_to_disk(str(saved))
    parquet = folder / "parquet"
    (parquet / "data").mkdir(parents=True)
    for split, n in (("train", 30), ("test", 11)):
        images = [Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)) for _ in range(n)]
        ds = datasets.Dataset.from_dict({"img": images, "labels": [CD_NAMES[k % 11] for k in range(n)]},
                                        features=datasets.Features({"img": datasets.Image(),
                                                                    "labels": datasets.Value("string")}))
        ds.to_parquet(str(parquet / "data" / f"{split}-00000-of-00001.parquet"))
    return saved, parquet


@pytest.fixture(scope="module")
def hf_cd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _hf_cd(tmp_path_factory.mktemp("hf"))


def test_hf_save_to_disk_maps_label_names(hf_cd: tuple[Path, Path]) -> None:
    saved, _ = hf_cd
    lines: list[str] = []
    data = load_pretrain_data(CD, str(saved), progress=_Log(lines))
    assert (len(data.train), len(data.val), len(data.test)) == (22, 11, 11)
    # ClassLabel index 0 is "actinomyces" (reversed names): bmbench label 10
    assert data.labels[0] == 10 and data.labels[10] == 0
    assert data.source.image(0).size == (24, 20) and data.info["has_test"] is True
    assert "image column 'image', label column 'label'" in lines[0]


def test_hf_parquet_folder_with_other_columns(hf_cd: tuple[Path, Path]) -> None:
    _, parquet = hf_cd
    data = load_pretrain_data(CD, str(parquet))
    assert data.info["image_column"] == "img" and data.info["label_column"] == "labels"
    assert len(data.train) + len(data.val) == 30 and len(data.val) == 6 and len(data.test) == 11  # 20 % of 30
    assert data.labels[0] == 0 and data.labels[9] == 9  # names in CD order
    single = load_pretrain_data(CD, str(parquet / "data" / "test-00000-of-00001.parquet"))
    assert single.info["has_test"] is False and np.array_equal(single.test, single.val)
    with pytest.raises(BmbenchError, match="no column 'pixels'"):
        load_pretrain_data(CD, str(parquet), image_column="pixels")


def test_hf_pcam_numpy_images_and_override_columns(tmp_path: Path) -> None:
    import datasets

    rng = np.random.default_rng(3)
    ds = datasets.Dataset.from_dict({"patch": [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(10)],
                                     "tumour": [bool(k % 2) for k in range(10)]})
    ds.save_to_disk(str(tmp_path / "pcam"))
    data = load_pretrain_data(PCAM, str(tmp_path / "pcam"), image_column="patch", label_column="tumour")
    assert data.labels.tolist() == [k % 2 for k in range(10)] and data.source.image(3).size == (96, 96)
    with pytest.raises(BmbenchError, match="no image column found.*--image-column"):
        load_pretrain_data(PCAM, str(tmp_path / "pcam"))


def test_hf_hub_offline_is_a_clear_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BmbenchError, match="not in the local Hugging Face cache"):
        load_pretrain_data(PCAM, "hf:nobody/no-such-pcam")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_mod, "_reachable", lambda url, timeout=5.0: False)
    with pytest.raises(BmbenchError, match="cannot reach https://huggingface.co.*HF_HUB_OFFLINE=1"):
        load_pretrain_data(PCAM, "hf:nobody/no-such-pcam")


# --- recipe and orchestration ----------------------------------------------------------------------------------

def test_pretrain_recipe_is_the_finetuning_recipe_with_two_changes() -> None:
    recipe = pretrain_recipe(PCAM)
    default = Recipe()
    assert recipe.normalization == "pcam" and recipe.augmentation.random_crop is False
    assert recipe.model_dump(exclude={"normalization", "augmentation"}) == default.model_dump(
        exclude={"normalization", "augmentation"})
    assert recipe.augmentation.model_dump(exclude={"random_crop"}) == default.augmentation.model_dump(
        exclude={"random_crop"})
    assert pretrain_recipe(CD, Recipe(batch_size=8)).batch_size == 8
    assert pretrain_recipe(CD, {"eval_size": 64}).eval_size == 64  # crop_size need not follow: no random crop
    with pytest.raises(BmbenchError, match="normalises with cd's Table 2"):
        pretrain_recipe(CD, Recipe(normalization="imagenet"))
    with pytest.raises(BmbenchError, match="does not crop randomly"):
        pretrain_recipe(CD, Recipe(augmentation=Augmentation(random_crop=True)))
    assert [checkpoint_init(d, i) for d in ("cd", "pcam") for i in ("random", "imagenet")] == [
        "cd", "imagenet+cd", "pcam", "imagenet+pcam"]


def test_recipe_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("[recipe]\nbatch_size = 8\neval_size = 32\n[recipe.augmentation]\nhflip = 0.0\n")
    recipe = load_recipe_file(path, "cd")
    assert (recipe.batch_size, recipe.eval_size, recipe.augmentation.hflip) == (8, 32, 0.0)
    assert recipe.normalization == "cd" and recipe.digest() == pretrain_recipe(CD, recipe).digest()
    path.write_text("batch_sise = 8\n")
    with pytest.raises(BmbenchError, match="r.toml: invalid recipe:\n  batch_sise"):
        load_recipe_file(path, "cd")
    path.write_text('normalization = "bm"\n')
    with pytest.raises(BmbenchError, match="r.toml: pre-training on pcam normalises"):
        load_recipe_file(path, "pcam")


def test_reachability_probe_is_bounded() -> None:
    import socket
    import time

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert hf_mod._reachable(f"http://127.0.0.1:{port}", timeout=2.0) is True
    started = time.perf_counter()
    assert hf_mod._reachable(f"http://127.0.0.1:{port}", timeout=2.0) is False  # closed again
    assert time.perf_counter() - started < 3.0


def _submission(folder: Path, init: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(
        f'name = "{folder.name}"\nauthors = ["t"]\ndescription = "d"\nbackbone = "{BACKBONE}"\ninit = "{init}"\n'
        "[recipe]\nepochs = 1\nlr = 0.01\neval_size = 32\nbatch_size = 8\nnum_workers = 0\n"
        "[recipe.augmentation]\ncrop_size = 32\n")
    return folder


@pytest.mark.slow
def test_pretrain_then_finetune_starts_from_the_checkpoint(cd_root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))
    options = PretrainOptions(dataset="cd", backbone=BACKBONE, init="random", data=str(cd_root), epochs=1,
                              max_steps=2, device="cpu", recipe=small_recipe())
    result = pretrain(options)
    ref = CheckpointRef(BACKBONE, "cd")
    assert result.checkpoint == ref.path and result.meta_path == ref.meta_path and result.trained
    meta = json.loads(ref.meta_path.read_text())
    assert meta["sha256"] == sha256_file(ref.path) and meta["dataset"] == "cd" and meta["init"] == "random"
    assert meta["smoke"] is True and meta["epochs"] == 1 and meta["num_classes"] == 11
    assert meta["recipe_digest"] == pretrain_recipe(CD, small_recipe()).digest()
    assert meta["recipe"]["normalization"] == "cd" and meta["recipe"]["augmentation"]["random_crop"] is False
    assert 0.0 <= meta["val_accuracy"] <= 1.0 and 0.0 <= meta["test_accuracy"] <= 1.0
    assert meta["data"]["dropped_boxes"]["train"] == EXPECTED_DROPS and meta["bmbench_version"]
    assert not ref.path.with_name("cd.work").exists()  # training state removed once complete
    saved = torch.load(ref.path, weights_only=True)
    head = meta["head"]
    assert saved[f"{head}.weight"].shape[0] == 11  # the in-domain head is in the file

    # Fine-tuning: a submission with init "cd" on the same backbone starts from the pre-trained body.
    sub = load_submission(_submission(tmp_path / "subs" / "tiny_cd", "cd"))
    model, info = build_initialised_model(sub.submission.backbone, sub.submission.init, 21)
    state = model.state_dict()
    assert head_name(model) == head and state[f"{head}.weight"].shape[0] == 21
    body = [k for k in saved if not k.startswith(head + ".")]
    assert body and all(torch.equal(state[k], saved[k]) for k in body)
    assert info["checkpoint_sha256"] == meta["sha256"] and info["pretraining"]["dataset"] == "cd"
    run = run_submission(sub, RunOptions(data="synthetic", epochs=1, max_steps=1, folds=(0,), out=tmp_path / "runs",
                                         device="cpu"))
    assert run.folds[0]["init"]["checkpoint_sha256"] == meta["sha256"]
    assert run.folds[0]["init"]["pretraining"]["recipe_digest"] == meta["recipe_digest"]
    assert run.run["smoke_pretraining"] is True and run.run["comparable"] is False  # a smoke checkpoint taints it

    # A finished checkpoint is not overwritten; --resume on it does nothing.
    with pytest.raises(BmbenchError, match="already exists"):
        pretrain(options)
    again = pretrain(PretrainOptions(**{**options.__dict__, "resume": True}))
    assert again.trained is False and again.meta["sha256"] == meta["sha256"]


class _Interrupt(Exception):
    pass


class _StopAfterFirstEpoch(SilentProgress):
    def epoch_end(self, record: object) -> None:
        raise _Interrupt


def test_pretrain_pcam_resume_gives_the_uninterrupted_result(pcam_root: Path, tmp_path: Path) -> None:
    def options(out: Path, **changes: object) -> PretrainOptions:
        base = dict(dataset="pcam", backbone=BACKBONE, init="random", data=str(pcam_root), epochs=2, max_steps=1,
                    device="cpu", out_weights=out, recipe=small_recipe(batch_size=8))
        return PretrainOptions(**(base | changes))

    whole = pretrain(options(tmp_path / "a"))
    assert whole.checkpoint == tmp_path / "a" / "torchvision-mobilenet_v3_small" / "pcam.pt"
    assert whole.meta["epochs"] == 2 and len(whole.meta["history"]) == 2 and whole.meta["num_classes"] == 2
    assert whole.meta["data"]["counts"]["test"]["images"] == 8 and whole.meta["data"]["format"] == "pcam-hdf5"

    with pytest.raises(_Interrupt):
        pretrain(options(tmp_path / "b"), progress=_StopAfterFirstEpoch())
    work = tmp_path / "b" / "torchvision-mobilenet_v3_small" / "pcam.work"
    assert (work / "last.pt").is_file() and not (tmp_path / "b" / "torchvision-mobilenet_v3_small" / "pcam.pt").exists()
    with pytest.raises(BmbenchError, match="interrupted pre-training.*--resume"):
        pretrain(options(tmp_path / "b"))
    with pytest.raises(BmbenchError, match="other settings.*epochs"):
        pretrain(options(tmp_path / "b", epochs=3, resume=True))
    settings = work / "pretrain.json"
    good = settings.read_text()
    settings.write_text(good.replace('"seed": 0', '"seed": "zero"'))  # tampered: refused, naming file and key
    with pytest.raises(BmbenchError) as info:
        pretrain(options(tmp_path / "b", resume=True))
    assert info.value.exit_code == 2 and str(settings) in info.value.message and "seed" in info.value.message
    settings.write_text(good)
    resumed = pretrain(options(tmp_path / "b", resume=True))
    assert resumed.meta["epochs"] == 2 and not work.exists()
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_from_imagenet_writes_the_imagenet_plus_checkpoint(pcam_root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BMBENCH_WEIGHTS", str(tmp_path / "weights"))
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    torch.manual_seed(5)
    stand_in = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    target = tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name
    target.parent.mkdir(parents=True)
    torch.save(stand_in, target)
    result = pretrain(PretrainOptions(dataset="pcam", backbone=BACKBONE, init="imagenet", data=str(pcam_root),
                                      epochs=1, max_steps=1, device="cpu", recipe=small_recipe(lr=1e-12)))
    assert result.checkpoint == CheckpointRef(BACKBONE, "imagenet+pcam").path
    meta = result.meta
    assert meta["init"] == "imagenet" and meta["checkpoint_init"] == "imagenet+pcam"
    assert meta["init_info"]["imagenet_weights"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    saved = torch.load(result.checkpoint, weights_only=True)
    # lr = 1e-12 (0 is refused): the convolution weights are still the ImageNet stand-in's (BN running stats move)
    assert torch.allclose(saved["features.0.0.weight"], stand_in["features.0.0.weight"], rtol=0, atol=1e-9)
    assert saved["classifier.3.weight"].shape == (2, 1024)


def test_cli_pretrain_smoke_and_errors(cd_root: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("epochs = 1\nlr = 0.01\neval_size = 32\nbatch_size = 4\nnum_workers = 0\n")
    result = runner.invoke(app, ["pretrain", "--dataset", "cd", "--backbone", BACKBONE, "--data", str(cd_root),
                                 "--max-steps", "1", "--device", "cpu", "--recipe", str(recipe),
                                 "--out-weights", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "5 dropped" in out and "SMOKE" in out and "cd.pt" in out and "sha256" in out
    for args, fragment in [
        (["--dataset", "imagenet", "--backbone", BACKBONE], "--dataset must be one of pcam, cd"),
        (["--dataset", "cd", "--backbone", "model.py"], "--backbone must be torchvision:<name> or timm:<name>"),
        (["--dataset", "cd", "--backbone", BACKBONE, "--init", "cd"], "--init must be random or imagenet"),
        (["--dataset", "pcam", "--backbone", BACKBONE], "BMBENCH_PCAM_DATA"),
        (["--dataset", "pcam", "--backbone", BACKBONE, "--data", str(tmp_path / "nope")], "does not exist"),
    ]:
        bad = runner.invoke(app, ["pretrain", *args, "--out-weights", str(tmp_path / "w2")])
        assert bad.exit_code == 2 and fragment in bad.output.replace("\n", " "), (args, bad.output)
        assert "Traceback" not in bad.output


class _Log:
    """A progress object that keeps the log lines."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def log(self, message: str) -> None:
        self.lines.append(message)

    def counter(self, description: str, total: int | None):
        return lambda k: None
