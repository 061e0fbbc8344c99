"""Checks an sdist's file list: every file git tracks that the build or the package needs
(pyproject.toml, CMakeLists.txt, README.md, LICENSE, csrc/, pyrnn/) is in it, and nothing else
is (no tests, benchmarks, build outputs or stray files).

    python .ci/check_sdist.py dist/pyrnn-0.1.0.tar.gz
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = {"pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE"}
FOLDERS = ("csrc/", "pyrnn/")


def needed() -> set[str]:
    tracked = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True, check=True).stdout
    files = {f for f in tracked.splitlines() if f in TOP_LEVEL or f.startswith(FOLDERS)}
    return files | {"pyrnn/_core.pyi", "pyrnn/py.typed"}


def contents(sdist: str) -> set[str]:
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    prefix = os.path.commonpath(names) + "/"
    return {n[len(prefix):] for n in names} - {"PKG-INFO"}


def main(sdist: str) -> int:
    have, want = contents(sdist), needed()
    missing, extra = sorted(want - have), sorted(have - want)
    for name in missing:
        print(f"missing from the sdist: {name}")
    for name in extra:
        print(f"not needed in the sdist: {name}")
    if missing or extra:
        return 1
    print(f"{os.path.basename(sdist)}: the {len(have)} files the build needs, nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
