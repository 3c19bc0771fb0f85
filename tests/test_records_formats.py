"""The typed records (bmbench.records.*): a leaf room without torch; each format round-trips through its one
reader and writer and a damaged file is refused with exit 2 naming the file and the key. Fast: no torch."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bmbench.records
import pytest
from bmbench.errors import BmbenchError
from bmbench.records import checkpoint, pcam_source, pretrain_settings

RECORDS = Path(bmbench.records.__file__).parent
LEAF_IMPORTS = ("bmbench.errors", "bmbench.atomic", "bmbench.safe_io", "bmbench.protocols", "bmbench.classes",
                "bmbench.metric_registry", "bmbench.records")
"""What a records module may import from bmbench; anything else is third-party pydantic or the stdlib."""
HEX = "ab" * 32


def test_records_import_only_leaf_modules_and_pydantic() -> None:
    for path in sorted(RECORDS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom)
                     else [])
            for name in names:
                top = name.split(".")[0]
                assert top != "torch" and top != "numpy", f"{path.name} imports {name}"
                if top == "bmbench":
                    assert name.startswith(LEAF_IMPORTS), f"{path.name} imports {name} (not a leaf module)"


def _checkpoint_meta() -> checkpoint.CheckpointMeta:
    return checkpoint.CheckpointMeta(
        backbone="torchvision:resnet18", checkpoint_init="imagenet+pcam", dataset="pcam", dataset_title="PCam",
        init="imagenet", num_classes=2, classes=["normal", "metastasis"], head="fc", recipe={}, recipe_digest=HEX,
        epochs=1, epochs_planned=1, smoke=True, seed=0, lr=0.01, lr_rule="fixed in the recipe", data_path="plain",
        val_accuracy=0.5, seconds=1.0, wall_seconds_this_invocation=1.0, bmbench_version="t",
        created_at="2026-12-01T00:00:00+00:00", sha256=HEX)


Case = tuple[str, Callable[[], Any], Callable[[Path, Any], None], Callable[[Path], Any], str, object]
CASES: list[Case] = [
    ("meta.json", _checkpoint_meta, checkpoint.write_checkpoint_meta,
     lambda p: checkpoint.read_checkpoint_meta(p, fix="run bmbench pretrain"), "lr", float("nan")),
    ("pretrain.json", lambda: pretrain_settings.PretrainSettings(
        backbone="timm:resnet10t", dataset="cd", init="random", recipe_digest=HEX, epochs=2, seed=1, data="/d"),
     pretrain_settings.write_pretrain_settings, pretrain_settings.read_pretrain_settings, "epochs", 0),
    ("x.h5.source.json", lambda: pcam_source.PcamSource(source="/a.h5.gz", size=3, mtime_ns=1_766_000_000_123_456_789),
     pcam_source.write_pcam_source, pcam_source.read_pcam_source, "size", -1),
]


@pytest.mark.parametrize("name, make, write, read, key, bad", CASES, ids=[c[0] for c in CASES])
def test_round_trip_legacy_and_tampered(tmp_path: Path, name: str, make: Callable[[], Any],
                                        write: Callable[[Path, Any], None], read: Callable[[Path], Any], key: str,
                                        bad: object) -> None:
    target = tmp_path / name
    if name == "cache":
        target.mkdir()
    record = make()
    write(target, record)
    file = target / "manifest.json" if target.is_dir() else target
    assert read(target) == record and not [p for p in tmp_path.rglob(".*")]  # no temporary left behind
    doc = json.loads(file.read_text(encoding="utf-8"))
    assert doc["schema_version"] == 1
    file.write_text(json.dumps({k: v for k, v in doc.items() if k != "schema_version"}), encoding="utf-8")
    assert read(target) == record  # files from before schema_version read as version 1
    for tampered in ({**doc, key: bad}, {**doc, "schema_version": 2}, {**doc, "unknown_key": 1}):
        file.write_text(json.dumps(tampered, allow_nan=True), encoding="utf-8")
        with pytest.raises(BmbenchError) as info:
            read(target)
        wrong = next(k for k in tampered if tampered[k] != doc.get(k, object()))
        message = info.value.message
        assert info.value.exit_code == 2 and str(file) in message and (wrong in message or "finite" in message)


def test_checkpoint_meta_must_fit_the_checkpoint_it_lies_beside(tmp_path: Path) -> None:
    path = tmp_path / "pcam.json"
    checkpoint.write_checkpoint_meta(path, _checkpoint_meta())
    with pytest.raises(BmbenchError, match=r"checkpoint_init is 'imagenet\+pcam'.*'pcam' checkpoint.*pretrain"):
        checkpoint.read_checkpoint_meta(path, fix="run bmbench pretrain", init="pcam")
    with pytest.raises(ValueError, match="serves 'pcam'"):  # random start + pcam serves 'pcam', not imagenet+pcam
        checkpoint.CheckpointMeta.model_validate({**_checkpoint_meta().model_dump(), "init": "random"})
    assert _checkpoint_meta().pretraining() == {"dataset": "pcam", "init": "imagenet", "recipe_digest": HEX,
                                                "epochs": 1, "val_accuracy": 0.5, "smoke": True}


def test_pretrain_settings_name_what_differs() -> None:
    make = CASES[1][1]
    before, now = make(), make().model_copy(update={"seed": 2, "epochs": 3})
    assert before.differences(now) == {"epochs": (2, 3), "seed": (1, 2)} and before.differences(make()) == {}


def test_explain_record_keeps_the_class_key_and_null_probabilities(tmp_path: Path) -> None:
    from bmbench.records.explain import Available, ExplainedImage, ExplainRecord, read_explain, write_explain
    from bmbench.records.run import DataRef, SplitRef, SubmissionRef

    record = ExplainRecord(
        run_dir="runs/x/synthetic", submission=SubmissionRef(name="x", digest=HEX, folder="submissions/x"),
        split=SplitRef(name="synthetic-cv5-v1", sha256=HEX, dataset="synthetic"),
        data=DataRef(dataset="synthetic", synthetic=True, root="/d"), class_code="ABE", class_name="Abnormal",
        n_requested=2, available=Available(correct=1, misclassified=0), selection="s", method="Grad-CAM",
        target_layer="layer4", target_rule="last conv", input_size=224,
        examples=[ExplainedImage(image_id="ABE_00001", fold=0, true="ABE", pred="ABE", correct=True,
                                 maps_for=["ABE"])])  # predictions without probabilities: p_* are null
    path = tmp_path / "explain.json"
    write_explain(path, record)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["class"] == "ABE" and "class_code" not in doc and doc["examples"][0]["p_true"] is None
    assert read_explain(path) == record


def _store_key() -> Any:
    from bmbench.records.features import Preprocessing, StoreKey

    pre = Preprocessing(size=16, resize=16, interpolation="nearest", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                        source="test")
    return StoreKey(encoder_id="model.py", weights_sha256=HEX, fold=None, preprocess=pre, dataset="synthetic",
                    index_sha256=HEX)


def test_feature_records_refuse_a_key_digest_that_is_not_their_key(tmp_path: Path) -> None:
    """manifest.json and progress.json carry the store key and its digest: one check that the two agree."""
    from bmbench.records._io import read_model, write_model
    from bmbench.records.features import EmbedProgress

    key = _store_key()
    progress = EmbedProgress(key=key, key_sha256=key.digest(), rows=10, dim=4, rows_done=5, wall_seconds=1.0)
    path = tmp_path / "progress.json"
    write_model(path, progress)
    read = lambda: read_model(EmbedProgress, path, what="embedding progress record", fix="embed again")  # noqa: E731
    assert read() == progress
    doc = json.loads(path.read_text())
    for tampered, fragment in (({**doc, "key_sha256": HEX}, "key_sha256"),
                               ({**doc, "key": {**doc["key"], "dataset": "bm"}}, "key_sha256"),
                               ({**doc, "rows_done": 11}, "rows_done")):
        path.write_text(json.dumps(tampered))
        with pytest.raises(BmbenchError) as info:
            read()
        assert info.value.exit_code == 2 and str(path) in info.value.message and fragment in info.value.message
