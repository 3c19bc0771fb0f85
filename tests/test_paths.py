"""bmbench.paths: the working root, the published splits as package data, local overrides, cache and weights."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bmbench import extras, paths
from bmbench.cli.main import app
from bmbench.errors import BmbenchError, SplitIntegrityError
from bmbench.leaderboard.board import get_board
from bmbench.splits.store import SUMS_NAME, load_split, read_sums
from bmbench.submissions.registry import default_submissions_dir

REPO = Path(__file__).resolve().parents[1]


def test_repository_splits_is_the_package_copy() -> None:
    """One copy of truth: the repository's splits/ is a link to the package data that wheels ship."""
    assert (REPO / "splits").is_symlink()
    assert (REPO / "splits").resolve() == paths.published_splits_dir().resolve()
    assert paths.published_splits_dir() == REPO / "benchmark" / "bmbench" / "resources" / "splits"
    assert paths.local_splits_dir() is None  # run from the checkout: no override


def test_root_defaults_to_cwd_then_env_then_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.root() == Path.cwd()
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    assert paths.submissions_dir() == tmp_path / "submissions" == default_submissions_dir()
    assert paths.runs_dir() == tmp_path / "runs"
    assert get_board("main").root == tmp_path / "leaderboard"
    assert get_board("demo").root == tmp_path / "runs" / "demo" / "board"
    other = tmp_path / "other"
    other.mkdir()
    paths.set_root(other)  # --root wins over the variable
    assert paths.leaderboard_dir() == other.resolve() / "leaderboard"
    paths.set_root(None)
    assert paths.root() == tmp_path
    monkeypatch.setenv(paths.SUBMISSIONS_ENV, str(tmp_path / "subs"))
    assert paths.submissions_dir() == tmp_path / "subs"
    with pytest.raises(BmbenchError, match="no such folder") as info:
        paths.set_root(tmp_path / "missing")
    assert info.value.exit_code == 2


def test_cli_root_option(tmp_path: Path) -> None:
    (tmp_path / "submissions").mkdir()
    result = CliRunner().invoke(app, ["--root", str(tmp_path), "submissions", "list"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "submissions") in result.output.replace("\n", "")
    bad = CliRunner().invoke(app, ["--root", str(tmp_path / "nope"), "submissions", "list"])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_cache_and_weights_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "bmbench"
    assert paths.weights_dir() == tmp_path / "xdg" / "bmbench" / "weights"
    assert paths.split_cache_dir() == tmp_path / "xdg" / "bmbench" / "splits"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "bmbench"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv(paths.WEIGHTS_ENV, str(tmp_path / "w"))
    assert (paths.cache_dir(), paths.weights_dir()) == (tmp_path / "c", tmp_path / "w")


def test_local_splits_folder_used_only_with_published_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "splits"
    local.mkdir()
    shutil.copy(paths.published_splits_dir() / "synthetic-cv5-v1.csv", local)
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))  # <root>/splits is picked up without BMBENCH_SPLITS
    assert paths.local_splits_dir() == local
    assert load_split("synthetic-cv5-v1").path == local / "synthetic-cv5-v1.csv"
    assert load_split("synthetic-holdout-v1").path.parent == paths.published_splits_dir()  # not in the folder
    path = local / "synthetic-cv5-v1.csv"
    path.write_bytes(path.read_bytes().replace(b",val,", b",train,", 1))
    with pytest.raises(SplitIntegrityError, match="may only hold the published files") as info:
        load_split("synthetic-cv5-v1")
    assert info.value.exit_code == 2
    # Its own SHA256SUMS does not make a modified file acceptable.
    import hashlib

    (local / SUMS_NAME).write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  synthetic-cv5-v1.csv\n")
    with pytest.raises(SplitIntegrityError, match="was modified"):
        load_split("synthetic-cv5-v1", local)
    assert read_sums(paths.published_splits_dir())["synthetic-cv5-v1.csv"] != read_sums(local)["synthetic-cv5-v1.csv"]


def test_manifest_goes_to_the_local_splits_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bmbench.data.manifest import default_manifest_path

    assert default_manifest_path().parent == paths.published_splits_dir()
    monkeypatch.setenv(paths.SPLITS_ENV, str(tmp_path))
    assert default_manifest_path().parent == tmp_path


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    extras.require("numpy", "train")  # present: nothing happens
    monkeypatch.setattr(extras, "missing", lambda module: module == "torch")
    with pytest.raises(extras.MissingExtraError, match=r"pip install 'bmbench\[train\]'") as info:
        extras.require("torch", "train", "bmbench run")
    assert info.value.exit_code == 2 and "bmbench run needs the [train] extra" in info.value.message
    assert extras.extra_for("torch.nn") == "train" and extras.extra_for("h5py") == "pretrain"
    assert extras.extra_for("pandas") is None
    err = extras.missing_extra_error(ModuleNotFoundError("No module named 'timm'", name="timm"))
    assert err is not None and "[train]" in err.message


def test_python_dash_m_bmbench() -> None:
    out = subprocess.run([sys.executable, "-m", "bmbench", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("bmbench "), out.stderr


def test_license_is_an_alias_of_licence(tmp_path: Path) -> None:
    from bmbench.submissions.schema import load_submission

    folder = tmp_path / "lic"
    folder.mkdir()
    base = 'name = "lic"\nauthors = ["a"]\ndescription = "d"\nbackbone = "baseline:majority"\ninit = "none"\n'
    (folder / "submission.toml").write_text(base + 'license = "Apache-2.0"\n')
    assert load_submission(folder).submission.licence == "Apache-2.0"
    (folder / "submission.toml").write_text(base + 'license = "Apache-2.0"\nlicence = "MIT"\n')
    with pytest.raises(BmbenchError, match="give only one") as info:
        load_submission(folder)
    assert info.value.exit_code == 2


def test_readme_documents_every_environment_variable() -> None:
    """Each ``BMBENCH_*`` name the package reads is a row of the README's table (and paths.ENVIRONMENT's are)."""
    import re

    from bmbench.paths import ENVIRONMENT

    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = {name for line in table.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([A-Z_]+)`", line.split("|")[1])}
    used = {name for path in (repo / "benchmark" / "bmbench").rglob("*.py")
            for name in re.findall(r"[\"'](BMBENCH_[A-Z_]+)[\"']", path.read_text(encoding="utf-8"))}
    assert used, "the scan found no variables: the pattern is wrong"
    missing = sorted((used | set(ENVIRONMENT)) - rows)
    assert not missing, f"add these to the README's table: {missing}"
    assert not {r for r in rows if r.startswith("BMBENCH_")} - used, "the README lists variables nothing reads"


@pytest.fixture(scope="module")
def _cache_seen_by_a_module_fixture() -> str:
    import os

    return os.environ.get("BMBENCH_CACHE", "")


def test_module_fixtures_already_use_the_temporary_cache(_cache_seen_by_a_module_fixture: str,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """Module-scoped fixtures run before function-scoped ones: they too must build caches in the test's cache
    (a module-scoped image cache once landed in the user's ~/.cache/bmbench)."""
    assert Path(_cache_seen_by_a_module_fixture) == tmp_path_factory.getbasetemp() / "bmbench-cache"
