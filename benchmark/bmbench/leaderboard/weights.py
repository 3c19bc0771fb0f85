"""``weights = {url, sha256, licence}`` of an entry: the trained checkpoint, hashed from the local file.

``bmbench leaderboard add --weights-url URL`` hashes the run's checkpoint (the only ``fold<k>/best.pt`` of a
one-fold run, else the file given with ``--weights-file``, e.g. an archive of all folds' checkpoints) so
the hash on the board is of the file the run produced, never typed by hand. ``--weights-sha256`` states
the hash of the file behind the URL; a mismatch is refused.
"""

from __future__ import annotations

from pathlib import Path

from bmbench.errors import BmbenchError
from bmbench.leaderboard.schema import SHA256_RE, Weights
from bmbench.safe_io import sha256_file


def checkpoint_of(run_dir: Path, weights_file: Path | None) -> Path:
    """The checkpoint to hash: ``weights_file``, else the run's only ``fold<k>/best.pt``."""
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise BmbenchError(f"--weights-file {path}: no such file; give the checkpoint file the URL serves",
                               exit_code=2)
        return path
    found = sorted(Path(run_dir).glob("fold*/best.pt"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise BmbenchError(f"{run_dir} holds no fold*/best.pt to hash for --weights-url; pass --weights-file PATH "
                           "(the file the URL serves)", exit_code=2)
    raise BmbenchError(f"{run_dir} holds {len(found)} checkpoints ({', '.join(str(p.parent.name) for p in found)}); "
                       "pass --weights-file PATH with the one file the URL serves (e.g. an archive of all folds)",
                       exit_code=2)


def weights_for(run_dir: Path, url: str, *, weights_file: Path | None = None, sha256: str | None = None,
                licence: str | None = None) -> Weights:
    """The entry's ``weights``: the URL, the local checkpoint's SHA-256 (checked against ``sha256``), licence."""
    if not url.startswith(("https://", "http://")):
        raise BmbenchError(f"--weights-url {url!r}: must be an http(s) URL", exit_code=2)
    path = checkpoint_of(run_dir, weights_file)
    digest = sha256_file(path)
    if sha256 is not None:
        stated = sha256.strip().lower()
        if not SHA256_RE.fullmatch(stated):
            raise BmbenchError(f"--weights-sha256 {sha256!r}: must be 64 hex digits", exit_code=2)
        if stated != digest:
            raise BmbenchError(f"weights hash mismatch: --weights-sha256 is {stated}, but {path} hashes to {digest}; "
                               "upload the file you hashed, or pass the right --weights-file", exit_code=2)
    return Weights(url=url, sha256=digest, licence=licence)
