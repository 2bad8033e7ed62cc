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
    <index>/_LOCK                           held by the one run appending, while it runs

Appending is atomic: a run writes its files under runs/<run>/ (unreferenced, so invisible), then
writes generation N+1 under a temporary name and renames it into place; a run killed before that
leaves the index at generation N. Old runs' files are never rewritten. Two appenders are refused by
the lease (`pipeline.runner.WorkdirLease` on the index: created exclusively on local disks, read
back on object stores, renewed by a heartbeat; a dead holder's lease is taken over). All I/O goes
through `pipeline.storage`, so an index may live on gs:// or s3://.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import pyarrow as pa

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import WorkdirBusy, WorkdirLease

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
    def lease(self):
        """Hold the index's lease for the block; refuse (IndexBusy) while another live run holds it.
        The runner's workdir lease does the work (exclusive create, heartbeat, stale takeover)."""
        held = WorkdirLease(self.path)
        try:
            held.acquire()
        except WorkdirBusy as e:
            raise IndexBusy(f"the dedup index {self.path} is held by another run appending to it ({e})") from None
        try:
            yield held
        finally:
            held.release()
