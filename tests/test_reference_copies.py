"""The project's copies of the paper's tables equal the shared reference files (where those are present)."""

from __future__ import annotations

from pathlib import Path

import pytest

OURS = Path(__file__).resolve().parents[1] / "benchmark" / "bmbench" / "resources" / "paper"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.mark.parametrize("name", [f"published_table{i}.csv" for i in (2, 3, 4, 5)])
def test_copy_matches_shared_reference(name: str) -> None:
    if not (SHARED / name).is_file():
        pytest.skip("the shared reference folder is not beside this checkout")
    assert (OURS / name).read_bytes() == (SHARED / name).read_bytes()
