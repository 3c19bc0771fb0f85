"""bmbench.data.layout: finding the data root and indexing the BM tree as users download it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bmbench.classes import CLASS_CODES, cell_classes
from bmbench.datasets import BM, SYNTHETIC, TCIA_URL
from bmbench.errors import BmbenchError, DataNotFoundError
from bmbench.data.layout import (
    SYNTHETIC_MARKER,
    DataIndex,
    ImageRecord,
    find_data_root,
    read_abbreviations,
    scan_data,
)

try:
    from fixtures_bm import KAGGLE_WRAPPER, TOP, chunk_folder, jpeg_bytes, spec, write_abbreviations, write_bm_tree
except ImportError:  # tests/ collected as a package
    from tests.fixtures_bm import (  # type: ignore[no-redef]
        KAGGLE_WRAPPER,
        TOP,
        chunk_folder,
        jpeg_bytes,
        spec,
        write_abbreviations,
        write_bm_tree,
    )

COUNTS = {"ABE": 2, "ART": 7, "BAS": 3, "PMO": 1}


def ids(index: DataIndex) -> list[str]:
    return [r.image_id for r in index.records]


def expected_ids(counts: dict[str, int]) -> list[str]:
    return sorted(f"{code}_{n:05d}" for code, c in counts.items() for n in range(1, c + 1))


# --- the layout ------------------------------------------------------------------------------------


def test_flat_and_chunked_classes_found_recursively(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS, chunk_size=3)
    assert (root / "ART" / "0007-0007" / "ART_00007.jpg").is_file()  # chunked as in the release
    assert (root / "ABE" / "ABE_00001.jpg").is_file()  # small class flat
    index = scan_data(root, dataset=spec(COUNTS))
    assert index.root == root.resolve()
    assert ids(index) == expected_ids(COUNTS)
    assert all(isinstance(r, ImageRecord) and r.path.is_file() for r in index.records)
    assert all(r.path.name.startswith(r.image_id) and r.code == r.image_id[:3] for r in index.records)
    assert index.misplaced == index.duplicates == index.ignored == ()
    assert index.by_id()["ART_00005"].path == root.resolve() / "ART" / "0004-0006" / "ART_00005.jpg"
    assert index.counts()["ART"] == 7 and index.counts()["LYT"] == 0 and list(index.counts()) == list(CLASS_CODES)


def test_chunk_folder_names_match_release() -> None:
    assert chunk_folder(1, 1000) == "0001-1000"
    assert chunk_folder(19001, 19630) == "19001-19630"


def test_depth_is_not_hard_coded(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS, chunk_size=3)
    deep = root / "ART" / "0001-0003" / "more" / "deeper"
    deep.mkdir(parents=True)
    shutil.move(root / "ART" / "0001-0003" / "ART_00002.jpg", deep / "ART_00002.jpg")
    (root / "ABE" / "x" / "y").mkdir(parents=True)
    shutil.move(root / "ABE" / "ABE_00001.jpg", root / "ABE" / "x" / "y" / "ABE_00001.jpg")
    index = scan_data(root, dataset=spec(COUNTS))
    assert ids(index) == expected_ids(COUNTS)
    assert index.by_id()["ART_00002"].path == deep.resolve() / "ART_00002.jpg"
    assert index.ignored == ()


def test_extension_case_and_jpeg_accepted(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, {"ABE": 3})
    (root / "ABE" / "ABE_00002.jpg").rename(root / "ABE" / "ABE_00002.JPG")
    (root / "ABE" / "ABE_00003.jpg").rename(root / "ABE" / "ABE_00003.jpeg")
    index = scan_data(root, dataset=spec({"ABE": 3}))
    assert ids(index) == ["ABE_00001", "ABE_00002", "ABE_00003"]


# --- where the user points -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "point_at"),
    [
        ("plain", "root"),
        ("plain", "parent"),
        ("kaggle_with_top", "wrapper"),
        ("kaggle_with_top", "above_wrapper"),
        ("kaggle_without_top", "wrapper"),
        ("kaggle_without_top", "above_wrapper"),
    ],
)
def test_root_found_wherever_the_user_points(tmp_path: Path, layout: str, point_at: str) -> None:
    download = tmp_path / "download"
    if layout == "plain":
        root = write_bm_tree(download, COUNTS, chunk_size=3)
    elif layout == "kaggle_with_top":
        root = write_bm_tree(download / KAGGLE_WRAPPER, COUNTS, chunk_size=3)
    else:
        root = write_bm_tree(download / KAGGLE_WRAPPER, COUNTS, chunk_size=3, top=None)
    (download / "README.txt").write_text("unrelated\n")
    (download / "other_project" / "src").mkdir(parents=True)
    target = {
        "root": root,
        "parent": download,
        "wrapper": download / KAGGLE_WRAPPER,
        "above_wrapper": download,
    }[point_at]
    assert find_data_root(target) == root
    index = scan_data(target, dataset=spec(COUNTS))
    assert index.root == root.resolve()
    assert ids(index) == expected_ids(COUNTS)


def test_root_search_prefers_most_class_folders_then_shallowest(tmp_path: Path) -> None:
    (tmp_path / "a" / "ABE").mkdir(parents=True)  # 1 class folder, depth 1
    for code in ("ABE", "ART"):
        (tmp_path / "b" / "c" / code).mkdir(parents=True)  # 2 class folders, depth 2
    assert find_data_root(tmp_path) == tmp_path / "b" / "c"

    tie = tmp_path / "tie"
    (tie / "a" / "deep" / "ABE").mkdir(parents=True)  # depth 2, sorted first
    (tie / "z" / "ABE").mkdir(parents=True)  # depth 1: shallower wins the tie
    (tie / "y" / "ART").mkdir(parents=True)  # depth 1 too, sorted before z
    assert find_data_root(tie) == tie / "y"


def test_root_search_goes_three_levels_down_not_four(tmp_path: Path) -> None:
    three = tmp_path / "three"
    write_bm_tree(three / "1" / "2", {"ABE": 1})  # the root is three/1/2/BM_cytomorphology_data
    assert find_data_root(three) == three / "1" / "2" / TOP
    four = tmp_path / "four"
    write_bm_tree(four / "1" / "2" / "3", {"ABE": 1})
    with pytest.raises(DataNotFoundError):
        find_data_root(four)


def test_root_search_stops_at_first_complete_root(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, dict.fromkeys(CLASS_CODES, 0), abbreviations=False)
    assert find_data_root(tmp_path) == root
    assert find_data_root(root) == root


def _assert_helpful(message: str, path: Path) -> None:
    assert str(path) in message
    assert TCIA_URL in message
    assert "Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer" in message
    assert "6.8 GB" in message
    assert "BM_cytomorphology_data/" in message and "ABE, ART" in message
    assert "export BMBENCH_DATA=" in message and "--data /path/to/BM_cytomorphology_data" in message
    assert "--data synthetic" in message


def test_missing_path_raises_helpful_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError) as info:
        scan_data(missing)
    _assert_helpful(info.value.message, missing)
    assert "does not exist" in info.value.message


def test_empty_folder_raises_helpful_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataNotFoundError) as info:
        find_data_root(tmp_path / "empty")
    _assert_helpful(info.value.message, tmp_path / "empty")


def test_file_instead_of_folder_raises_helpful_error(tmp_path: Path) -> None:
    f = tmp_path / "BM_cytomorphology_data.zip"
    f.write_bytes(b"PK")
    with pytest.raises(DataNotFoundError) as info:
        scan_data(f)
    _assert_helpful(info.value.message, f)
    assert "not a folder" in info.value.message


def test_pointing_at_a_class_folder_gets_a_hint(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, {"ART": 4}, chunk_size=2)
    with pytest.raises(DataNotFoundError) as info:
        scan_data(root / "ART")
    assert "single class folder" in info.value.message and str(root) in info.value.message


# --- what else lies in the tree --------------------------------------------------------------------


def test_ignored_misplaced_and_duplicate_files(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS, chunk_size=3)
    img = jpeg_bytes()
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "ART" / "0001-0003" / "Thumbs.db").write_bytes(b"\0")
    (root / "ABE" / "ABE_1.jpg").write_bytes(img)  # wrong name
    (root / "ABE" / "XYZ_00001.jpg").write_bytes(img)  # unknown class code
    (root / "ABE" / "notes.txt").write_text("x")
    (root / "__MACOSX" / "ABE").mkdir(parents=True)
    (root / "__MACOSX" / "ABE" / "._ABE_00001.jpg").write_bytes(b"\0")
    (root / "ART" / "0001-0003" / "ABE_00002.jpg").write_bytes(img)  # ABE image under ART: misplaced
    (root / "BAS_00009.jpg").write_bytes(img)  # image loose in the root: misplaced
    (root / "ART" / "0004-0006" / "ART_00001.jpg").write_bytes(img)  # second copy of ART_00001

    index = scan_data(root, dataset=spec(COUNTS))
    assert ids(index) == expected_ids(COUNTS)  # the misplaced ABE_00002 did not count for ABE
    assert index.by_id()["ART_00001"].path.parent.name == "0001-0003"  # first copy in sorted order kept
    assert index.by_id()["ABE_00002"].path.parent.name == "ABE"
    sep = os.sep
    assert [str(p) for p in index.misplaced] == [f"ART{sep}0001-0003{sep}ABE_00002.jpg", "BAS_00009.jpg"]
    assert [str(p) for p in index.duplicates] == [f"ART{sep}0004-0006{sep}ART_00001.jpg"]
    assert sorted(str(p) for p in index.ignored) == sorted(
        [
            ".DS_Store",
            f"ABE{sep}ABE_1.jpg",
            f"ABE{sep}XYZ_00001.jpg",
            f"ABE{sep}notes.txt",
            f"ART{sep}0001-0003{sep}Thumbs.db",
            "__MACOSX",
        ]
    )
    assert all(not p.is_absolute() for p in index.misplaced + index.duplicates + index.ignored)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS, chunk_size=3)
    try:
        os.symlink(root / "ART", root / "ART" / "0001-0003" / "loop")
        os.symlink(root, root / "ABE" / "up")
    except OSError:
        pytest.skip("symlinks not permitted here")
    index = scan_data(root, dataset=spec(COUNTS))
    assert ids(index) == expected_ids(COUNTS)
    assert index.duplicates == ()
    ignored = {str(p) for p in index.ignored}
    assert os.path.join("ART", "0001-0003", "loop") in ignored
    assert os.path.join("ABE", "up") in ignored
    assert find_data_root(tmp_path) == root


# --- abbreviations.csv -----------------------------------------------------------------------------


def test_abbreviations_parsed(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS)
    index = scan_data(root, dataset=spec(COUNTS))
    assert index.abbreviations == {c.code: c.name for c in cell_classes()}
    assert index.abbreviations_error is None


@pytest.mark.parametrize(("bom", "crlf"), [(True, False), (False, True), (True, True)])
def test_abbreviations_bom_and_crlf(tmp_path: Path, bom: bool, crlf: bool) -> None:
    path = write_abbreviations(tmp_path, ["ABE", "ART"], bom=bom, crlf=crlf, header="ABBREVIATIONS;Meaning")
    assert read_abbreviations(path) == {"ABE": "Abnormal eosinophils", "ART": "Artefacts"}


def test_abbreviations_tolerates_blank_lines_spaces_and_trailing_cells(tmp_path: Path) -> None:
    path = tmp_path / "abbreviations.csv"
    path.write_text("Abbreviation;Meaning;\n\n ABE ; Abnormal eosinophils ;;\nOTH;Other; cells\n", encoding="utf-8")
    assert read_abbreviations(path) == {"ABE": "Abnormal eosinophils", "OTH": "Other;cells"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("Code;Meaning\nABE;Abnormal eosinophils\n", 1),
        ("Abbreviation;Meaning\nABE;Abnormal eosinophils\nART Artefacts\n", 3),
        ("Abbreviation;Meaning\nABE;x\nABE;y\n", 3),
        ("", 1),
    ],
)
def test_malformed_abbreviations_name_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "abbreviations.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BmbenchError) as info:
        read_abbreviations(path)
    assert str(path) in info.value.message and f"line {line}" in info.value.message


def test_malformed_abbreviations_do_not_stop_the_scan(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS, abbreviations=False)
    (root / "abbreviations.csv").write_text("Abbreviation;Meaning\nbroken\n", encoding="utf-8")
    index = scan_data(root, dataset=spec(COUNTS))
    assert index.abbreviations is None
    assert index.abbreviations_error is not None and "line 2" in index.abbreviations_error
    assert ids(index) == expected_ids(COUNTS)


def test_no_abbreviations_file(tmp_path: Path) -> None:
    root = write_bm_tree(tmp_path, COUNTS, abbreviations=False)
    index = scan_data(root, dataset=spec(COUNTS))
    assert index.abbreviations is None and index.abbreviations_error is None
    assert index.ignored == ()


# --- which data set ----------------------------------------------------------------------------------


def test_dataset_is_bm_by_default_and_synthetic_with_marker(tmp_path: Path) -> None:
    real = write_bm_tree(tmp_path / "real", COUNTS)
    assert scan_data(real).dataset == BM
    demo = write_bm_tree(tmp_path / "demo", COUNTS, synthetic_marker=True)
    assert (demo / SYNTHETIC_MARKER).is_file()
    index = scan_data(demo)
    assert index.dataset == SYNTHETIC
    assert index.ignored == ()  # the marker is not an "other file"
    custom = spec(COUNTS, title="custom")
    assert scan_data(demo, dataset=custom).dataset is custom
