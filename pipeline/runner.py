"""Runs a stage to the output contract: skip when finished, else run, check, commit atomically.

A stage is finished when `<workdir>/<stage>/_SUCCESS` holds the same config hash and input
fingerprint as now. The input fingerprint of a stage with an upstream is derived from the
upstream's `_SUCCESS`, so re-running a changed stage re-runs everything downstream of it.

One writer per workdir: a run holds `<workdir>/_LOCK` (see WorkdirLease) while its stages run, and a
second run on the same workdir is refused with who holds it. Temporary stage folders
(`.tmp/<stage>-<run id>`) left by earlier runs are removed only by the run holding the lease, so
never while their own run is alive; one whose _SUCCESS matches the stage's config and input (its run
was killed while committing it) is committed instead of running the stage again.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid

from pipeline import storage
from pipeline.config import RunConfig
from pipeline.stage import PENDING, Stage, StageRun

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


class StageNotReady(RuntimeError):
    """The upstream a stage reads has not finished."""


class WorkdirBusy(RuntimeError):
    """Another live run holds the workdir's lease; `holder` says which run."""

    def __init__(self, message: str, holder: str = "another run"):
        super().__init__(message)
        self.holder = holder


LOCK = "_LOCK"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0  # a lease not renewed for this long belongs to a dead run and may be taken over
SETTLE_SECONDS = 1.0  # object stores have no create-if-absent: re-read the lease after this long


def _place_new(draft: str, path: str, content: str) -> None:
    """Put the file `draft` (holding `content`) at `path` unless a file is there (FileExistsError): a hard
    link, so `path` appears whole. On a file system without hard links (exFAT, some FUSE mounts) `path`
    is created exclusively and then written: a reader may see it empty for that moment."""
    try:
        os.link(draft, path)
    except FileExistsError:
        raise
    except OSError:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(content)


class WorkdirLease:
    """`<workdir>/_LOCK`: {run_id, host, pid, started, heartbeat}, renewed every HEARTBEAT_SECONDS by a
    daemon thread. Local workdirs create it with link(); on object stores (no create-if-absent
    through pyarrow) the run writes it and reads it back after SETTLE_SECONDS, so of two runs that
    start together the one whose write landed last keeps it. A lease whose heartbeat is older than
    STALE_SECONDS is taken over (the run that held it died), and so is one whose process on this
    host is gone."""

    def __init__(self, workdir: str, run_id: str | None = None):
        self.workdir = workdir
        self.path = storage.join(workdir, LOCK)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.started = time.time()
        self.lost: str | None = None  # set when another run took the lease over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> str:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": self.started, "heartbeat": time.time()})

    def _read(self) -> dict | None:
        try:
            return json.loads(storage.read_text(self.path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half written: treat as stale

    def _refuse(self, holder: dict) -> None:
        age = time.time() - float(holder.get("heartbeat", 0))
        started = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))
        who = (f"run {holder.get('run_id')} (host {holder.get('host')}, pid {holder.get('pid')}, started {started}, "
               f"last heartbeat {age:.0f} s ago)")
        raise WorkdirBusy(
            f"workdir {self.workdir} is in use by {who}. Two runs on one workdir would delete each other's files: "
            f"wait for it to finish, use another workdir, or, if that run is dead, wait until its lease is "
            f"{STALE_SECONDS:.0f} s old (or delete {self.path}).", holder=who)

    def _is_stale(self, holder: dict) -> bool:
        """No heartbeat for STALE_SECONDS, or held by a process of this host that is gone (a run
        killed with -9 and started again at once need not wait)."""
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return time.time() - float(holder.get("heartbeat", 0)) > STALE_SECONDS

    def acquire(self) -> None:
        storage.makedirs(self.workdir)
        if "://" not in self.workdir:
            self._acquire_local()
        else:
            self._acquire_remote()
        self._thread = threading.Thread(target=self._beat, name=f"glmdata-lease-{self.run_id}", daemon=True)
        self._thread.start()

    def _acquire_local(self) -> None:
        # Written whole under a private name, then linked into place (link fails where the lease exists):
        # a lease created empty and written after could be read empty by a second run, taken for a dead
        # run's, removed and taken over while its own run goes on.
        draft = f"{self.path}.{self.run_id}"
        try:
            for _ in range(2):
                content = self._content()
                with open(draft, "w") as f:
                    f.write(content)
                try:
                    _place_new(draft, self.path, content)
                except FileExistsError:
                    holder = self._read()
                    if holder is None:
                        continue  # released in between
                    if not self._is_stale(holder):
                        self._refuse(holder)
                    log.warning("taking over the stale lease of run %s on %s", holder.get("run_id"), self.workdir)
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                return
        finally:
            os.remove(draft)
        raise WorkdirBusy(f"workdir {self.workdir}: another run took the lease at the same moment")

    def _acquire_remote(self) -> None:
        holder = self._read()
        if holder and holder.get("run_id") != self.run_id and not self._is_stale(holder):
            self._refuse(holder)
        storage.write_text(self.path, self._content())
        time.sleep(SETTLE_SECONDS)
        holder = self._read()
        if not holder or holder.get("run_id") != self.run_id:
            self._refuse(holder or {})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            holder = self._read()
            if holder and holder.get("run_id") != self.run_id:
                self.lost = f"run {holder.get('run_id')} took over the lease of {self.workdir}"
                log.error("%s; this run's next stage will stop", self.lost)
                return
            try:
                storage.write_text(self.path, self._content())
            except OSError as e:  # a transient store error: the next beat tries again
                log.warning("lease heartbeat on %s failed: %s", self.path, e)

    def check(self) -> None:
        if self.lost:
            raise WorkdirBusy(self.lost)

    def confirm(self) -> None:
        """check(), reading the lease now rather than trusting the last heartbeat: before a commit, which
        deletes the stage's output, a run paused past STALE_SECONDS must see that another run took over."""
        self.check()
        holder = self._read()
        if holder and holder.get("run_id") != self.run_id:
            self.lost = f"run {holder.get('run_id')} took over the lease of {self.workdir}"
            raise WorkdirBusy(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = self._read()
        if holder is not None and holder.get("run_id") == self.run_id:
            storage.rmtree(self.path)


_held: dict[str, WorkdirLease] = {}  # workdir -> this process's lease on it


@contextlib.contextmanager
def hold_workdir(workdir: str, config_path: str | None = None):
    """Hold the workdir's lease for the block (re-entrant: stages inside a `glmdata run` share it).
    The first acquisition for a run logs the resolved config file and workdir."""
    if workdir in _held:
        _held[workdir].check()
        yield _held[workdir]
        return
    lease = WorkdirLease(workdir)
    lease.acquire()
    if config_path:
        log.info("config %s, workdir %s (run %s)", os.path.abspath(config_path), workdir, lease.run_id)
    _held[workdir] = lease
    try:
        yield lease
    finally:
        del _held[workdir]
        lease.release()


def read_success(stage_dir: str) -> dict | None:
    path = storage.join(stage_dir, SUCCESS)
    if not storage.exists(path):
        return None
    try:
        return json.loads(storage.read_text(path))
    except (ValueError, OSError):
        return None


def read_stats(stage_dir: str) -> dict | None:
    """A stage's stats.json, None when it has none. A damaged one (an interrupted copy, a hand edit)
    is refused by name rather than failing somewhere in the figures."""
    path = storage.join(stage_dir, "stats.json")
    if not storage.exists(path):
        return None
    damaged = "the stage's output is damaged: re-run it with --force"
    try:
        stats = json.loads(storage.read_text(path))
    except ValueError as e:  # bad JSON or bad UTF-8
        raise StageNotReady(f"{path}: not valid JSON ({e}); {damaged}") from None
    if not isinstance(stats, dict):
        raise StageNotReady(f"{path}: expected a JSON object, got {type(stats).__name__}; {damaged}")
    return stats


def marker_key(marker: dict) -> str:
    """What identifies a stage's output: the config and input it was built from (a --force re-run of the
    same keeps it, as the output is the same)."""
    return f"{marker.get('config_hash')}:{marker.get('input_fingerprint')}"


def stage_inputs(stage: Stage, upstream_dir: str | None) -> dict[str, str]:
    """{stage whose output `stage` reads: its marker_key}; recorded in _SUCCESS as `inputs`, so report and
    inspect can tell exactly which stages were built from an output that has been replaced since."""
    inputs = {}
    if upstream_dir is not None:
        marker = read_success(upstream_dir)
        if marker is None:
            raise StageNotReady(f"stage {stage.name!r} reads {upstream_dir}, which has not finished: run "
                                f"`glmdata run --config {stage.cfg.path} --until {stage.name}` (the stages up to "
                                f"it that have not run), or `glmdata {stage.upstream} --config {stage.cfg.path}` first")
        inputs[stage.upstream] = marker_key(marker)
    for name in stage.depends_on:
        marker = read_success(stage_dir(stage.cfg, name))
        if marker is None:
            raise StageNotReady(f"stage {stage.name!r} needs the {name!r} stage's output: "
                                f"run `glmdata {name} --config {stage.cfg.path}` first")
        inputs[name] = marker_key(marker)
    return inputs


def input_fingerprint(stage: Stage, upstream_dir: str | None, inputs: dict[str, str] | None = None) -> str:
    inputs = stage_inputs(stage, upstream_dir) if inputs is None else inputs
    h = hashlib.sha256()
    for name, key in inputs.items():  # the upstream first, unnamed: fingerprints of earlier runs stay valid
        h.update((key if name == stage.upstream else f"{name}:{key}").encode())
    for path in stage.input_paths():
        info = storage.file_info(path)
        h.update(f"{path}:{info.size}:{info.mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def stage_dir(cfg: RunConfig, name: str) -> str:
    return storage.join(cfg.run.workdir, name)


def is_finished(stage: Stage) -> bool:
    sdir = stage_dir(stage.cfg, stage.name)
    upstream_dir = stage_dir(stage.cfg, stage.upstream) if stage.upstream else None
    marker = read_success(sdir)
    if marker is None:
        return False
    try:
        return (marker.get("config_hash") == stage.config_hash()
                and marker.get("input_fingerprint") == input_fingerprint(stage, upstream_dir))
    except StageNotReady:
        return False


def run_stage(stage: Stage, engine, force: bool = False) -> dict:
    """Run one stage unless it is finished; return its stats.json content."""
    with hold_workdir(stage.cfg.run.workdir, stage.cfg.path) as lease:
        return _run_stage(stage, engine, force, lease)


def _run_stage(stage: Stage, engine, force: bool, lease: WorkdirLease) -> dict:
    cfg = stage.cfg
    sdir = stage_dir(cfg, stage.name)
    upstream_dir = stage_dir(cfg, stage.upstream) if stage.upstream else None
    inputs = stage_inputs(stage, upstream_dir)
    fingerprint = input_fingerprint(stage, upstream_dir, inputs)
    config_hash = stage.config_hash()
    marker = read_success(sdir)
    stats = read_stats(sdir) if marker else None  # a marker without stats.json: run the stage again
    if (not force and stats is not None and marker.get("config_hash") == config_hash
            and marker.get("input_fingerprint") == fingerprint):
        log.debug("%s: finished earlier with the same config and input; skipped", stage.name)
        stats["skipped"] = True
        return stats

    # Work in a private folder and commit it whole, so a run that fails or is killed leaves the old output
    # as it was. Other runs' folders are dead runs' leftovers: this run holds the workdir's lease.
    tmp_root = storage.join(cfg.run.workdir, ".tmp")
    leftovers = [storage.join(tmp_root, name) for name in storage.listdir(tmp_root)
                 if name.startswith(stage.name + "-")]
    finished = None if force else next(
        (left for left in leftovers if _is_finished_output(left, config_hash, fingerprint)), None)
    if finished is not None:  # a run killed while it committed: its output is whole, commit it again
        log.warning("%s: committing %s, the finished output of a run killed while committing it",
                    stage.name, finished)
        lease.confirm()
        commit_output(finished, sdir, engine)
        return read_stats(sdir)
    for left in leftovers:
        storage.rmtree(left)
    tmp = storage.join(tmp_root, f"{stage.name}-{lease.run_id}")
    storage.makedirs(tmp)
    started = time.time()
    run = StageRun(cfg=cfg, engine=engine, stage_dir=sdir, tmp_dir=tmp, upstream_dir=upstream_dir)
    stats = stage.execute(run)
    stats.check_conservation(f"stage {stage.name}")
    summary = {"stage": stage.name, "engine": engine.name, "seconds": round(time.time() - started, 3),
               **stats.to_dict(), "report": stage.report_data(run)}
    storage.write_text(storage.join(tmp, "stats.json"), json.dumps(summary, indent=2, sort_keys=True))
    lease.confirm()
    storage.write_text(storage.join(tmp, SUCCESS), json.dumps({
        "stage": stage.name, "config_hash": config_hash, "input_fingerprint": fingerprint, "inputs": inputs,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    commit_output(tmp, sdir, engine)
    return summary


def _is_finished_output(folder: str, config_hash: str, fingerprint: str) -> bool:
    marker = read_success(folder)
    return (marker is not None and marker.get("config_hash") == config_hash
            and marker.get("input_fingerprint") == fingerprint and storage.exists(storage.join(folder, "stats.json")))


# Files one task copies when a stage on an object store is committed: the copies are spread over the
# engine's workers as the writes were, not left to the driver alone while the cluster waits on it.
COMMIT_FILES_PER_UNIT = 256


def commit_output(finished: str, sdir: str, engine) -> None:
    """Replace the stage's output with the folder `finished`, whose _SUCCESS is written. Where folders
    rename, one rename commits data and marker at once. Object stores have none: the files are copied (on
    the store's side, by the engine's tasks), _SUCCESS last, and `finished` is deleted after; a run killed
    while copying leaves the stage unfinished and `finished` whole, which the next run commits instead of
    running the stage."""
    remove_output(sdir)
    if storage.renames_folders(sdir):
        storage.rename(finished, sdir)
        return
    folders, files = storage.tree(finished)
    for folder in folders:
        if folder != PENDING:
            storage.makedirs(storage.join(sdir, folder))
    copies = _copies(finished, files)
    data = [copy for copy in copies if copy[1] != SUCCESS]
    units = [data[i:i + COMMIT_FILES_PER_UNIT] for i in range(0, len(data), COMMIT_FILES_PER_UNIT)]
    engine.map_units(f"commit {posixpath.basename(sdir)}", functools.partial(_copy_unit, finished, sdir), units)
    storage.copy_files(finished, sdir, [copy for copy in copies if copy[1] == SUCCESS])
    storage.rmtree(finished)


def _copies(finished: str, files: list[tuple[str, int]]) -> list[tuple[str, str, int]]:
    """(file below `finished`, its name in the stage's output, size) for every file the output keeps, of
    `files` (storage.tree's): the files its units left under temporary names (their PENDING lists) and
    the other files under their own names; not the lists, nor temporary files no list names (a failed
    attempt's, left behind)."""
    sizes = dict(files)
    lists = [name for name, _ in files if name.startswith(PENDING + "/")]
    with concurrent.futures.ThreadPoolExecutor(storage.COPY_THREADS) as pool:
        pending = [item for text in pool.map(lambda name: storage.read_text(storage.join(finished, name)), lists)
                   for item in json.loads(text).items()]
    named = [(temporary, target, sizes[temporary]) for target, temporary in pending]
    return sorted(named + [(name, name, size) for name, size in files
                           if not name.startswith(PENDING + "/") and not storage.is_temporary(name)])


def _copy_unit(src: str, dst: str, files: list[tuple[str, str, int]]) -> dict:
    storage.copy_files(src, dst, files)
    return {"files": len(files)}


def remove_output(sdir: str) -> None:
    """Delete a stage's output, its _SUCCESS first: a run killed halfway through leaves an unfinished
    stage, never a finished-looking half of the old output."""
    storage.rmtree(storage.join(sdir, SUCCESS))
    storage.rmtree(sdir)
