"""`bmbench data manifest` and `bmbench data import-hf`: the SYNTHETIC set pushed through `datasets` and back."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES, CLASS_INDEX
from bmbench.cli.main import app
from bmbench.data.hf_import import import_hf, tcia_relpath
from bmbench.data.layout import scan_data
from bmbench.data.manifest import HEADER, MANIFEST_NAME, read_manifest
from bmbench.data.synthetic import generate_synthetic
from bmbench.errors import BmbenchError
from fixtures_bm import write_bm_tree

datasets = pytest.importorskip("datasets")
runner = CliRunner()
PER_CLASS = 3


@pytest.fixture(autouse=True)
def _private_splits_and_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may write the checkout's splits/ (the published manifest) or the user's Hugging Face cache."""
    monkeypatch.setenv("BMBENCH_SPLITS", str(tmp_path / "splits"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # read at call time
    return tmp_path / "splits"


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated SYNTHETIC copy in the TCIA layout (3 images a class)."""
    return generate_synthetic(tmp_path_factory.mktemp("orig"), seed=5, counts=dict.fromkeys(CLASS_CODES, PER_CLASS),
                              workers=1)


@pytest.fixture
def manifest(original: Path, tmp_path: Path) -> Path:
    out = tmp_path / "manifest.csv"
    result = runner.invoke(app, ["data", "manifest", "--data", str(original), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "not the complete data set" in result.output
    return out


def _hf_dataset(original: Path, *, extra: list[bytes] = (), drop: int = 0, reencode: bool = False):
    """The copy as a `datasets.Dataset` (Image feature, original bytes kept), shuffled, without file names."""
    records = list(scan_data(original).records)[drop:]
    order = np.random.default_rng(0).permutation(len(records))
    images, labels = [], []
    for k in order:
        data = records[k].path.read_bytes()
        if reencode:  # what a mirror that decoded and re-saved the images would hold
            buffer = io.BytesIO()
            Image.open(io.BytesIO(data)).save(buffer, format="PNG")
            data = buffer.getvalue()
        images.append({"bytes": data, "path": None})
        labels.append(CLASS_INDEX[records[k].code])
    for data in extra:
        images.append({"bytes": data, "path": None})
        labels.append(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_CODES))})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifest_rows_are_the_files_hashes(original: Path, manifest: Path) -> None:
    rows = read_manifest(manifest)
    assert manifest.read_text().splitlines()[0] == ",".join(HEADER)
    assert len(rows) == 21 * PER_CLASS and [r.image_id for r in rows] == sorted(r.image_id for r in rows)
    by_id = scan_data(original).by_id()
    for row in rows:
        data = by_id[row.image_id].path.read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest() and row.size == len(data)
        assert row.label == row.image_id[:3]


@pytest.mark.parametrize("form", ["save_to_disk", "parquet"])
def test_import_restores_the_tree_byte_for_byte(original: Path, manifest: Path, tmp_path: Path, form: str) -> None:
    ds = _hf_dataset(original)
    dd = datasets.DatasetDict({"train": ds.select(range(40)), "test": ds.select(range(40, len(ds)))})
    if form == "save_to_disk":
        source = tmp_path / "disk"
        dd.save_to_disk(str(source))
    else:
        source = tmp_path / "parquet" / "data"
        source.mkdir(parents=True)
        for name, part in dd.items():
            part.to_parquet(str(source / f"{name}-00000-of-00001.parquet"))
    result = runner.invoke(app, ["data", "import-hf", str(source), "--out", str(tmp_path / "imported"),
                                 "--manifest", str(manifest), "--synthetic"])
    assert result.exit_code == 0, result.output
    assert "matched 63" in result.output and "complete" in result.output and "SYNTHETIC" in result.output
    imported = scan_data(tmp_path / "imported")
    assert imported.dataset.synthetic and [r.image_id for r in imported.records] == \
        [r.image_id for r in scan_data(original).records]
    before, after = _tree(original), _tree(imported.root)
    marker = "bmbench-synthetic.json"
    assert {k: v for k, v in after.items() if k != marker} == {k: v for k, v in before.items() if k != marker}
    assert marker in after  # the imported tree stays labelled SYNTHETIC


def test_unmatched_images_are_counted_not_written_and_missing_ones_reported(original: Path, manifest: Path,
                                                                            tmp_path: Path) -> None:
    stranger = io.BytesIO()
    Image.new("RGB", (250, 250), (10, 20, 30)).save(stranger, format="JPEG")
    ds = _hf_dataset(original, extra=[stranger.getvalue(), stranger.getvalue()], drop=2)
    ds = datasets.concatenate_datasets([ds, ds.select(range(3))])  # three images twice
    ds.save_to_disk(str(tmp_path / "disk"))
    report = import_hf(str(tmp_path / "disk"), tmp_path / "out", manifest, synthetic=True)
    assert report.rows_read == 61 + 2 + 3 and report.matched == 61 + 3 and report.unmatched == 2
    assert report.repeated == 3 and report.written == 61 and report.label_disagreements == 0
    assert report.missing == ["ABE_00001", "ABE_00002"]
    assert len(scan_data(report.root).records) == 61  # nothing written for the strangers

    result = runner.invoke(app, ["data", "import-hf", str(tmp_path / "disk"), "--out", str(tmp_path / "cli"),
                                 "--manifest", str(manifest), "--synthetic"])
    assert result.exit_code == 2 and "2 image(s) match no manifest entry" in result.output
    assert "incomplete" in result.output and "ABE_00001" in result.output


def test_a_reencoding_mirror_matches_nothing(original: Path, manifest: Path, tmp_path: Path) -> None:
    _hf_dataset(original, reencode=True).save_to_disk(str(tmp_path / "disk"))
    report = import_hf(str(tmp_path / "disk"), tmp_path / "out", manifest, synthetic=True)
    assert report.matched == 0 and report.unmatched == 63 and report.written == 0


def test_import_without_a_committed_manifest_says_how_to_make_one(original: Path, tmp_path: Path,
                                                                  _private_splits_and_hf_cache: Path) -> None:
    result = runner.invoke(app, ["data", "import-hf", "hf:ekim15/bone_marrow_cell_dataset", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert f"{MANIFEST_NAME} does not exist yet" in text
    assert "bmbench data manifest --data /path/to/BM_cytomorphology_data" in text


def test_published_manifest_needs_a_real_complete_copy(original: Path, tmp_path: Path,
                                                       _private_splits_and_hf_cache: Path) -> None:
    result = runner.invoke(app, ["data", "manifest", "--data", str(original)])
    assert result.exit_code == 2 and "SYNTHETIC" in result.output and "--out" in result.output
    partial = write_bm_tree(tmp_path / "bm", {"ABE": 2, "ART": 3}, chunk_size=2)
    result = runner.invoke(app, ["data", "manifest", "--data", str(partial)])
    assert result.exit_code == 2 and "not the complete BM release" in " ".join(result.output.split())
    assert not (_private_splits_and_hf_cache / MANIFEST_NAME).exists()


def test_manifest_refuses_to_replace_a_different_one(original: Path, manifest: Path, tmp_path: Path) -> None:
    again = runner.invoke(app, ["data", "manifest", "--data", str(original), "--out", str(manifest)])
    assert again.exit_code == 0 and "unchanged" in again.output
    lines = manifest.read_text().splitlines()
    image_id, label, _sha, size = lines[1].split(",")
    lines[1] = ",".join([image_id, label, "0" * 64, size])  # as if that file had been re-encoded
    changed = "\n".join(lines) + "\n"
    manifest.write_text(changed)
    result = runner.invoke(app, ["data", "manifest", "--data", str(original), "--out", str(manifest)])
    assert result.exit_code == 2 and "differs" in result.output and manifest.read_text() == changed
    forced = runner.invoke(app, ["data", "manifest", "--data", str(original), "--out", str(manifest), "--force"])
    assert forced.exit_code == 0 and manifest.read_text() != changed


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("id,label,sha256,size\n", "line 1: expected the header"),
        ("image_id,label,sha256,size\nABE_00001,ART," + "a" * 64 + ",12\n", "line 2: image id"),
        ("image_id,label,sha256,size\nABE_00001,ABE,xyz,12\n", "line 2: sha256 must be"),
        ("image_id,label,sha256,size\nABE_00001,ABE," + "a" * 64 + ",-1\n", "line 2: size"),
        ("image_id,label,sha256,size\nABE_00001,ABE," + "a" * 64 + ",1\nABE_00001,ABE," + "b" * 64 + ",1\n",
         "line 3: image id ABE_00001 already listed on line 2"),
    ],
)
def test_bad_manifests_are_refused_with_the_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(BmbenchError, match=fragment):
        read_manifest(path)


def test_tcia_layout_of_the_real_release() -> None:
    assert str(tcia_relpath("ART", 19630, 19630)) == "ART/19001-19630/ART_19630.jpg"
    assert str(tcia_relpath("ART", 1, 19630)) == "ART/0001-1000/ART_00001.jpg"
    assert str(tcia_relpath("ART", 1000, 19630)) == "ART/0001-1000/ART_01000.jpg"
    assert str(tcia_relpath("ART", 1001, 19630)) == "ART/1001-2000/ART_01001.jpg"
    assert str(tcia_relpath("ABE", 8, 8)) == "ABE/ABE_00008.jpg"


def test_bad_sources_are_refused(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(BmbenchError, match="no such file or folder"):
        import_hf(str(tmp_path / "missing" / "x"), tmp_path / "out", manifest)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(BmbenchError, match="save_to_disk folder"):
        import_hf(str(tmp_path / "notes"), tmp_path / "out", manifest)
