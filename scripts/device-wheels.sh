#!/usr/bin/env bash
# Download pydantic (and what it needs beyond torch's typing_extensions) as wheels for CPython 3.10-3.13 on
# x86_64 Linux into .device-wheels/, for scripts/device-check.sh on a GPU machine without network access.
# Run it on a machine with PyPI access, in this checkout; the folder travels with the working tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEST="${1:-.device-wheels}"
PIP="${PIP:-python3 -m pip}"
mkdir -p "$DEST"
for version in 3.10 3.11 3.12 3.13; do
  $PIP download --quiet --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --python-version "$version" --implementation cp --dest "$DEST" "pydantic>=2.5" typing_extensions
done
ls -1 "$DEST"
du -sh "$DEST"
