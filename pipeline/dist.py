"""`python -m pipeline.dist` (what `make dist` runs): the artifacts a cluster needs, in dist/.

    dist/glmdata-<version>-py3-none-any.whl   the project
    dist/glmdata-env.tar.gz                   a venv-pack'ed environment: the wheel plus its runtime
                                              dependencies, for every executor (--archives ...#environment)

The environment gets exactly the distributions installed (and tested) in the running virtualenv:
the runtime closure of the `glmdata` requirement (no extras: no torch, no pyspark, which the cluster
provides) is copied file by file from this venv's site-packages, following each distribution's
RECORD, so building it needs no network and takes seconds instead of a pip resolve. Build it on the
OS and Python of the cluster nodes: the packed venv reuses the node's interpreter.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
# Artifact names under dist/ (glmdata submit refers to these).
ENV_ARCHIVE = "glmdata-env.tar.gz"  # relocatable executor environment: spark-submit --archives ENV_ARCHIVE#ENV_DIR
ENV_DIR = "environment"  # where --archives unpacks it on each node
EXECUTOR_PYTHON = f"./{ENV_DIR}/bin/python"  # its launcher: the node's python3.X with the archive's packages
WHEELHOUSE = "wheelhouse"  # folder: the glmdata wheel + a wheel of every runtime dependency, for the target Python
NODE_SETUP = "glmdata-node-setup.sh"  # Dataproc initialization action / EMR bootstrap action: wheelhouse -> NODE_ENV
NODE_ENV = "/opt/glmdata-env"  # where NODE_SETUP installs the environment on each node
NODE_PYTHON = f"{NODE_ENV}/bin/python"
DOCKERFILES = {  # custom images: Dataproc Serverless, EMR Serverless, Dataflow workers (FROM is an ARG)
    "dataproc-serverless": "Dockerfile.dataproc-serverless",
    "emr-serverless": "Dockerfile.emr-serverless",
    "dataflow": "Dockerfile.dataflow",
}
MANIFEST = "dist.json"  # what was built: target Python and platform, file sizes, distributions


def runtime_closure(root: str = "glmdata") -> list[metadata.Distribution]:
    """Installed distributions that `root` needs at run time (extras excluded), root excluded."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    seen.pop(canonicalize_name(root))
    return sorted(seen.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def copy_distribution(dist: metadata.Distribution, site_packages: Path) -> int:
    """Copy one installed distribution's files (per its RECORD) into another site-packages."""
    copied = 0
    for rel in dist.files or []:
        if ".." in rel.parts or "__pycache__" in rel.parts:
            continue  # console scripts in bin/ (their shebangs name this venv) and bytecode
        src = Path(dist.locate_file(rel))
        if src.is_file():
            dst = site_packages / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied += 1
    return copied


def build_isolation_flags() -> list[str]:
    """Build the wheel with this venv's setuptools when it can (no download): 70.1+ builds wheels
    by itself; an older one needs pip's isolated build environment."""
    try:
        version = Version(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if version >= Version("70.1") else []


def build(out: Path, work: Path) -> Path:
    started = time.time()
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *build_isolation_flags(), "-w", str(out),
                    str(REPO)], check=True)
    wheel = next(out.glob("glmdata-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(work)], check=True)
    env_python = work / "bin" / "python"
    site = Path(subprocess.run([str(env_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    closure = runtime_closure()
    files = sum(copy_distribution(d, site) for d in closure)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    archive = out / ENV_ARCHIVE
    subprocess.run([str(Path(sysconfig.get_paths()["scripts"]) / "venv-pack"), "-q", "-f", "--compress-level", "1",
                    "-p", str(work), "-o", str(archive)], check=True)
    print(f"dist: {wheel.name}, {archive.name} ({archive.stat().st_size / 1e6:.0f} MB: glmdata + "
          f"{len(closure)} distributions, {files} files) in {time.time() - started:.0f} s")
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "dist"), help="output folder (default dist/)")
    parser.add_argument("--work", default=str(REPO / "build" / "executor-env"), help="where the venv is assembled")
    args = parser.parse_args(argv)
    build(Path(args.out), Path(args.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
