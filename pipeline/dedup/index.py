"""The persistent dedup index: every earlier run's survivors, so a new snapshot is deduplicated
against them without re-reading or re-hashing the old data.

    <index>/runs/<run>/part-NNNNN.parquet   one file per upstream part of that run: `INDEX_SCHEMA` rows
                                            of its documents, dropped ones too (node, id, the survivor
                                            and its run, exact keys, LSH band keys, shingle set), so a
                                            new copy of a dropped document finds its survivor, as it
                                            would in one run over everything
    <index>/_manifest/gen-NNNNNN.json       generation N: the settings the signatures depend on and
                                            the runs it covers (run, input fingerprint, config hash,
                                            documents); the highest generation is the index
    <index>/_lease.json                     held by the one run appending, while it runs

Appending is atomic: a run writes its files under runs/<run>/ (unreferenced, so invisible), then
writes generation N+1 under a temporary name and renames it into place; a run killed before that
leaves the index at generation N. Old runs' files are never rewritten. Two appenders are refused by
the lease (created exclusively on local disks; written then read back on object stores, which
have no exclusive create); a lease whose holder died on this host, or whose time ran out, is taken
over. All I/O goes through `pipeline.storage`, so an index may live on gs:// or s3://.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa

from pipeline import storage
from pipeline.config import ConfigError

FORMAT = "glmdata-dedup-index"
VERSION = 1
RUN_BITS = 47  # an indexed node: -((seq + 1) << 47 | part << 32 | row): negative, so never a new run's node

INDEX_SCHEMA = pa.schema([
    ("node", pa.int64()),
    ("id", pa.string()),
    ("run", pa.string()),
    ("survivor", pa.string()),  # the id of the document's cluster survivor (its own id when it survived)
    ("survivor_run", pa.string()),  # the run that survivor belongs to
    ("text_key", pa.int64()),
    ("url_key", pa.int64()),
    ("n_shingles", pa.int32()),
    ("bands", pa.list_(pa.int64())),
    ("shingles", pa.list_(pa.int32())),
])


class IndexBusy(RuntimeError):
    """Another run holds the index's lease."""


def index_node(seq: int, node: int) -> int:
    """The node number of a run's document once indexed (unique across runs, below every new node)."""
    if node >> RUN_BITS:
        raise ValueError(f"dedup index: part {node >> 32} is beyond the {1 << (RUN_BITS - 32)} parts an indexed run may have")
    return -(((seq + 1) << RUN_BITS) | node)


@dataclass
class DedupIndex:
    path: str

    @property
    def manifest_dir(self) -> str:
        return storage.join(self.path, "_manifest")

    @property
    def lease_path(self) -> str:
        return storage.join(self.path, "_lease.json")

    def run_dir(self, run: str) -> str:
        return storage.join(self.path, "runs", run)

    def generation(self) -> dict:
        """The latest manifest; an empty index (generation 0) when there is none."""
        gens = sorted(n for n in storage.listdir(self.manifest_dir) if n.startswith("gen-") and n.endswith(".json"))
        if not gens:
            return {"format": FORMAT, "version": VERSION, "generation": 0, "settings": None, "runs": []}
        path = storage.join(self.manifest_dir, gens[-1])
        manifest = json.loads(storage.read_text(path))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ConfigError(f"{path}: not a {FORMAT} manifest of version {VERSION}")
        return manifest

    def run_files(self, manifest: dict, skip_run: str | None = None) -> list[str]:
        """The Parquet files of every run the manifest covers (but `skip_run`)."""
        return [f for r in manifest["runs"] if r["run"] != skip_run
                for f in storage.expand(self.run_dir(r["run"])) if f.endswith(".parquet")]

    def check_settings(self, manifest: dict, settings: dict, where: str) -> None:
        """Signatures are comparable only under the same MinHash settings: name the first that differs."""
        if manifest["settings"] is None:
            return
        for key, value in settings.items():
            if manifest["settings"].get(key) != value:
                raise ConfigError(f"{where}: dedup.{key} is {value!r} but the index at {self.path} was built with "
                                  f"{manifest['settings'].get(key)!r}; use the index's setting or a new index")

    def commit(self, manifest: dict, settings: dict, run: dict) -> dict:
        """Generation N+1 = `manifest` (generation N, read under the lease) + `run`, renamed into place."""
        gen = manifest["generation"] + 1
        new = {"format": FORMAT, "version": VERSION, "generation": gen, "settings": settings,
               "runs": manifest["runs"] + [run]}
        target = storage.join(self.manifest_dir, f"gen-{gen:06d}.json")
        if storage.exists(target):
            raise IndexBusy(f"{target} appeared while this run held the lease: another run appended without it")
        storage.write_text(target, json.dumps(new, indent=2, sort_keys=True))
        return new

    # -- the lease
    @contextlib.contextmanager
    def lease(self, ttl_s: float, holder: str):
        """Hold the index's lease for the block; refuse (IndexBusy) while another live run holds it."""
        mine = {"owner": uuid.uuid4().hex, "holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                "expires": time.time() + ttl_s}
        self._acquire(mine)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                if json.loads(storage.read_text(self.lease_path)).get("owner") == mine["owner"]:
                    storage.rmtree(self.lease_path)

    def _acquire(self, mine: dict) -> None:
        for _ in range(2):
            if storage.exists(self.lease_path):
                held = self._read_lease()
                if held is not None and not _stale(held):
                    raise IndexBusy(
                        f"the dedup index {self.path} is being appended to by {held.get('holder')} "
                        f"(host {held.get('host')}, pid {held.get('pid')}, lease until "
                        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(held.get('expires', 0)))}); "
                        f"wait for it, or delete {self.lease_path} if that run is gone")
                storage.rmtree(self.lease_path)  # stale: its holder died or its time ran out
            if self._create_exclusive(json.dumps(mine).encode()) and self._read_lease() == mine:
                return
        raise IndexBusy(f"another run took the lease on {self.path} at the same moment; try again")

    def _read_lease(self) -> dict | None:
        with contextlib.suppress(FileNotFoundError, OSError, ValueError):
            return json.loads(storage.read_text(self.lease_path))
        return None

    def _create_exclusive(self, data: bytes) -> bool:
        if "://" in self.path:  # object stores: last writer wins; the read-back decides
            storage.write_bytes(self.lease_path, data)
            return True
        storage.makedirs(self.path)
        try:
            fd = os.open(self.lease_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True


def _stale(lease: dict) -> bool:
    if time.time() > lease.get("expires", 0):
        return True
    if lease.get("host") == socket.gethostname():
        try:
            os.kill(int(lease["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
    return False
