"""The cluster artifacts built for a CPython other than the one running the tests (the dress
rehearsal's nodes), shared by test_dist and test_rehearsal: built once, then found up to date."""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

# The nodes' Python: 3.12 unless the tests already run on it (pyenv has both on these machines).
FOREIGN_PYTHON = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
FOREIGN_DIST = REPO / "build" / "test-dist" / f"py{FOREIGN_PYTHON}"


def foreign_interpreter() -> str:
    """python3.X for FOREIGN_PYTHON: a pyenv installation's binary (not its shim), else one on PATH
    that runs. Missing: a failure in CI, else a skip."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{FOREIGN_PYTHON}.*/bin/python{FOREIGN_PYTHON}")))
    candidates += [shutil.which(f"python{FOREIGN_PYTHON}") or ""]
    found = next((c for c in candidates if c and subprocess.run([c, "-c", ""], capture_output=True).returncode == 0), None)
    if found is None:
        message = f"no python{FOREIGN_PYTHON} (PATH or ~/.pyenv/versions) for the foreign-Python artifacts"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@functools.cache
def foreign_dist() -> Path:
    """`python -m pipeline.dist --python-version FOREIGN_PYTHON` into build/test-dist/, on purpose
    with conftest's PYTHONPATH (the repo) still set: the build must not let it stand in for the
    project (it once made pip skip installing it)."""
    assert str(REPO) in os.environ["PYTHONPATH"]
    made = subprocess.run([sys.executable, "-m", "pipeline.dist", "--python-version", FOREIGN_PYTHON, "--out",
                           str(FOREIGN_DIST)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    print(made.stdout.strip())
    return FOREIGN_DIST
