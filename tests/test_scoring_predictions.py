"""Strict validation of predictions files: every bad input gets exit 2, a message naming file and line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from bmbench.classes import CLASS_CODES, NUM_CLASSES
from bmbench.cli.main import app
from bmbench.errors import PredictionsError, SplitIntegrityError
from bmbench.scoring.predictions import read_predictions
from bmbench.scoring.score import score_file
from bmbench.splits.store import default_splits_dir
from conftest import PredsWriter, header, prediction_rows

SPLIT = "synthetic-cv5-v1"


def _edit(line_index: int, column: int, value: str) -> Callable[[list[str]], list[str]]:
    def mutate(lines: list[str]) -> list[str]:
        cells = lines[line_index].split(",")
        cells[column] = value
        lines[line_index] = ",".join(cells)
        return lines

    return mutate


def _expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(PredictionsError) as info:
        score_file(path, SPLIT)
    message = info.value.message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert info.value.exit_code == 2
    # Through the CLI: exit status 2, the message, no traceback and no JSON written.
    out = path.parent / "score.json"
    result = CliRunner().invoke(app, ["score", str(path), "--split", SPLIT, "--json", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not out.exists()
    return message


def test_valid_file_scores_like_sklearn(tmp_path: Path, synthetic_split) -> None:
    lines, true, pred = prediction_rows(synthetic_split, range(5), probs=True, seed=3)
    path = tmp_path / "p.csv"
    path.write_text("\n".join([header(), *lines]) + "\n")
    score = score_file(path, SPLIT)
    assert score["split"]["name"] == SPLIT and score["synthetic"] is True
    assert score["predictions"]["rows"] == len(synthetic_split.image_ids)
    per_fold = score["per_fold"]
    assert sum(np.sum(f["confusion"]) for f in per_fold) == len(true)
    # Whole-file macro F1 of the pooled confusion equals sklearn's on the same labels.
    pooled = np.sum([np.array(f["confusion"]) for f in per_fold], axis=0)
    tp = np.diag(pooled)
    assert tp.sum() == (true == pred).sum()
    assert np.mean([f["macro_f1"] for f in per_fold]) == pytest.approx(score["summary"]["macro_f1"]["mean"])
    fold0 = [i for i, line in enumerate(lines) if line.split(",")[1] == "0"]
    assert per_fold[0]["macro_f1"] == pytest.approx(
        f1_score(true[fold0], pred[fold0], labels=list(range(NUM_CLASSES)), average="macro", zero_division=0))


def test_cli_writes_json(tmp_path: Path, write_preds: PredsWriter) -> None:
    path = write_preds(folds=(1, 3), probs=False)
    out = tmp_path / "out" / "score.json"
    result = CliRunner().invoke(app, ["score", str(path), "--split", SPLIT, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    doc = json.loads(out.read_text())
    assert doc["folds"] == [1, 3]
    assert set(doc) >= {"schema_version", "split", "classes", "folds", "per_fold", "per_class", "summary"}
    assert doc["split"]["sha256"] and len(doc["classes"]) == 21
    assert set(doc["per_class"]["ABE"]) == {"precision", "recall", "f1", "support"}
    assert set(doc["summary"]) == {"precision", "recall", "f1", "macro_f1", "accuracy", "balanced_accuracy",
                                   "weighted_f1", "auroc", "log_loss", "brier", "ece"}
    assert all(doc["summary"][name] is None for name in ("auroc", "log_loss", "brier", "ece"))  # no p_* columns


def test_single_fold_has_null_std(write_preds: PredsWriter) -> None:
    score = score_file(write_preds(folds=(4,)), SPLIT)
    assert score["folds"] == [4]
    assert score["summary"]["f1"]["std"] is None and score["summary"]["accuracy"]["std"] is None


def test_bom_and_crlf_are_accepted(tmp_path: Path, write_preds: PredsWriter) -> None:
    path = write_preds(folds=(0,))
    text = path.read_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert score_file(path, SPLIT)["folds"] == [0]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("  \n")
    _expect_error(path, "empty")


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(header() + "\n")
    _expect_error(path, "no prediction rows")


@pytest.mark.parametrize(
    ("new_header", "fragment"),
    [
        ("image_id,fold", "missing column(s) pred"),
        ("image_id,fold,pred,score", "unexpected column(s) 'score'"),
        ("fold,image_id,pred", "wrong order"),
        ("image_id,fold,pred,p_ABE,p_ART", "all 21 or none"),
        ("image_id,image_id,fold,pred", "repeats column(s) image_id"),
    ],
)
def test_bad_headers(write_preds: PredsWriter, new_header: str, fragment: str) -> None:
    def mutate(lines: list[str]) -> list[str]:
        return [new_header, *[",".join(line.split(",")[:3]) for line in lines[1:]]]

    _expect_error(write_preds(probs=False, mutate=mutate), fragment)


def test_probability_columns_in_wrong_order(write_preds: PredsWriter) -> None:
    def mutate(lines: list[str]) -> list[str]:
        cells = lines[0].split(",")
        cells[3], cells[4] = cells[4], cells[3]
        return [",".join(cells), *lines[1:]]

    _expect_error(write_preds(mutate=mutate), "wrong order")


def test_unknown_image_id(write_preds: PredsWriter) -> None:
    _expect_error(write_preds(mutate=_edit(5, 0, "ZZZ_00001")), "line 6: unknown image id 'ZZZ_00001'", SPLIT)


def test_ids_of_another_split(write_preds: PredsWriter) -> None:
    # ART_05000 exists in the real BM split but not in the small synthetic one.
    _expect_error(write_preds(mutate=_edit(2, 0, "ART_05000")), "line 3: unknown image id 'ART_05000'")


def test_duplicate_image_id(write_preds: PredsWriter) -> None:
    def mutate(lines: list[str]) -> list[str]:
        return [*lines, lines[7]]

    message = _expect_error(write_preds(mutate=mutate), "duplicate image ids", "already predicted on line 8")
    assert "line 8: " not in message.split("duplicate")[0]


def test_image_of_the_training_part(write_preds: PredsWriter, synthetic_split) -> None:
    def mutate(lines: list[str]) -> list[str]:
        image_id, fold = lines[1].split(",")[:2]
        other = (int(fold) + 1) % 5
        return [lines[0], lines[1].replace(f"{image_id},{fold},", f"{image_id},{other},", 1), *lines[2:]]

    _expect_error(write_preds(mutate=mutate), "line 2:", "part of fold", "it is tested in fold")


def test_incomplete_fold(write_preds: PredsWriter) -> None:
    def mutate(lines: list[str]) -> list[str]:
        return [line for i, line in enumerate(lines) if i not in (3, 4)]

    _expect_error(write_preds(folds=(0, 2), mutate=mutate), "incomplete", "missing 2")


@pytest.mark.parametrize("value", ["5", "-1", "x", "1.0", ""])
def test_fold_out_of_range(write_preds: PredsWriter, value: str) -> None:
    _expect_error(write_preds(mutate=_edit(4, 1, value)), "fold numbers out of range", f"line 5: fold {value!r}")


def test_unknown_class_code(write_preds: PredsWriter) -> None:
    _expect_error(write_preds(mutate=_edit(9, 2, "XYZ")), "line 10: pred 'XYZ'", "ABE, ART")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("", "NaN or infinite"),
     ("-0.5", "negative"), ("abc", "non-numeric"), ("0.9", "do not sum to 1")],
)
def test_bad_probabilities(write_preds: PredsWriter, value: str, fragment: str) -> None:
    _expect_error(write_preds(mutate=_edit(3, 5, value)), fragment, "line 4")


def test_blank_line_in_the_middle(write_preds: PredsWriter) -> None:
    def mutate(lines: list[str]) -> list[str]:
        return [*lines[:4], "", *lines[4:]]

    _expect_error(write_preds(mutate=mutate), "line 5: missing")


def test_row_with_too_many_fields(write_preds: PredsWriter) -> None:
    def mutate(lines: list[str]) -> list[str]:
        lines[6] += ",0.1"
        return lines

    _expect_error(write_preds(mutate=mutate), "line 7 has 25 fields")


def test_short_row_is_reported(write_preds: PredsWriter) -> None:
    def mutate(lines: list[str]) -> list[str]:
        lines[6] = ",".join(lines[6].split(",")[:2])
        return lines

    _expect_error(write_preds(probs=False, mutate=mutate), "line 7")


def test_wrong_encodings(tmp_path: Path, write_preds: PredsWriter) -> None:
    path = write_preds(folds=(0,))
    text = path.read_text()
    path.write_bytes(text.encode("utf-16"))
    _expect_error(path, "UTF-16")
    path.write_bytes(text.replace("ABE_", "ABÉ_", 1).encode("latin-1"))
    _expect_error(path, "not valid UTF-8")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.csv", "no such file")


def test_split_hash_mismatch(tmp_path: Path, write_preds: PredsWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "splits"
    shutil.copytree(default_splits_dir(), folder)
    split_file = folder / f"{SPLIT}.csv"
    split_file.write_bytes(split_file.read_bytes().replace(b",val\n", b",train\n", 1))
    path = write_preds(folds=(0,))
    with pytest.raises(SplitIntegrityError, match="was modified"):
        score_file(path, SPLIT, folder)
    monkeypatch.setenv("BMBENCH_SPLITS", str(folder))
    result = CliRunner().invoke(app, ["score", str(path), "--split", SPLIT])
    assert result.exit_code == 2 and "was modified" in result.output


def test_unknown_split_name(write_preds: PredsWriter) -> None:
    result = CliRunner().invoke(app, ["score", str(write_preds()), "--split", "nope"])
    assert result.exit_code != 0 and "published splits: bm-cv5-v1" in result.output


def test_many_errors_are_summarised(write_preds: PredsWriter) -> None:
    def bad_folds(lines: list[str]) -> list[str]:
        out = [lines[0]]
        for line in lines[1:]:
            cells = line.split(",")
            cells[1] = "9"
            out.append(",".join(cells))
        return out

    message = _expect_error(write_preds(folds=(0,), mutate=bad_folds), "more line(s)")
    assert message.count("\n  line ") == 8


def test_read_predictions_returns_arrays(write_preds: PredsWriter, synthetic_split) -> None:
    preds = read_predictions(write_preds(folds=(2, 3)), synthetic_split)
    assert preds.folds_scored == (2, 3)
    assert preds.probs is not None and preds.probs.shape == (len(preds.positions), NUM_CLASSES)
    assert (synthetic_split.test_fold[preds.positions] == preds.folds).all()


@pytest.mark.parametrize("probs", [True, False], ids=["probabilities", "labels"])
def test_strict_parse_reads_valid_files_and_pandas_the_rest(write_preds: PredsWriter, synthetic_split,
                                                             monkeypatch: pytest.MonkeyPatch, probs: bool) -> None:
    """A well-formed file (BOM, CRLF, quoted cells, spaces around numbers, shuffled rows) takes the strict
    pyarrow parse; one with folds written ``+1`` is refused by it and read by pandas, with the same arrays."""
    from bmbench.scoring import predictions

    def shuffled_quoted(lines: list[str]) -> list[str]:
        rows = lines[1:]
        np.random.default_rng(5).shuffle(rows)
        return [lines[0], *[f'"{row.split(",", 1)[0]}",{row.split(",", 1)[1]}' for row in rows]]

    def signed_folds(lines: list[str]) -> list[str]:
        cells = [line.split(",") for line in lines[1:]]
        return [lines[0], *[",".join([c[0], f"+{c[1]}", *c[2:]]) for c in cells]]

    def shuffled_quoted_spaced(lines: list[str]) -> list[str]:
        head, *rows = shuffled_quoted(lines)
        return [head, *[",".join([*c[:3], *(f" {p} " for p in c[3:])]) for c in (r.split(",") for r in rows)]]

    plain = write_preds(folds=(1, 3), probs=probs, mutate=shuffled_quoted_spaced)
    plain.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    signed = write_preds(folds=(1, 3), probs=probs, mutate=signed_folds, name="signed.csv")
    used = []
    strict = predictions._rows_arrow
    monkeypatch.setattr(predictions, "_rows_arrow", lambda *a: used.append(strict(*a) is not None) or strict(*a))
    one, other = read_predictions(plain, synthetic_split), read_predictions(signed, synthetic_split)
    assert used == [True, False]
    order = np.argsort(one.positions)
    assert np.array_equal(one.positions[order], np.sort(other.positions))
    for name in ("folds", "pred", "probs"):
        a, b = getattr(one, name), getattr(other, name)
        assert (a is None) == (b is None) == (not probs if name == "probs" else False)
        assert a is None or np.array_equal(a[order], b[np.argsort(other.positions)]), name


@pytest.mark.parametrize("strict", [True, False], ids=["pyarrow", "pandas"])
def test_ids_made_of_digits_keep_their_leading_zeros(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     strict: bool) -> None:
    """Ids are text on both parse paths: an all-digit id column is not read as integers ('0007' stays '0007')."""
    from conftest import make_split

    from bmbench.scoring import predictions

    split = make_split({"ABE": [f"{i:04d}" for i in range(20)], "BAS": [f"0{i:04d}" for i in range(20)]})
    members = split.members(0, "test")
    rows = [f"{split.image_ids[p]},0,{CLASS_CODES[split.labels[p]]}" for p in members]
    path = tmp_path / "digits.csv"
    path.write_text("\n".join(["image_id,fold,pred", *rows]) + "\n")
    if not strict:
        monkeypatch.setattr(predictions, "_rows_arrow", lambda *a: None)
    preds = read_predictions(path, split)
    assert np.array_equal(preds.positions, members) and np.array_equal(preds.pred, split.labels[members])
