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
    """python3.X for FOREIGN_PYTHON: on PATH or under pyenv. Missing: a failure in CI, else a skip."""
    found = shutil.which(f"python{FOREIGN_PYTHON}") or next(
        iter(sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{FOREIGN_PYTHON}.*/bin/python{FOREIGN_PYTHON}")))), None)
    if found is None:
        message = f"no python{FOREIGN_PYTHON} (PATH or ~/.pyenv/versions) for the foreign-Python artifacts"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@functools.cache
def foreign_dist() -> Path:
    """`python -m pipeline.dist --python-version FOREIGN_PYTHON` into build/test-dist/, with the
    environment `make dist` gives it (no PYTHONPATH, which conftest sets for Spark's workers)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    made = subprocess.run([sys.executable, "-m", "pipeline.dist", "--python-version", FOREIGN_PYTHON, "--out",
                           str(FOREIGN_DIST)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    print(made.stdout.strip())
    return FOREIGN_DIST
