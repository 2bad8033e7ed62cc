"""Runs a stage to the output contract: skip when finished, else run, check, commit atomically.

A stage is finished when `<workdir>/<stage>/_SUCCESS` holds the same config hash and input
fingerprint as now. The input fingerprint of a stage with an upstream is derived from the
upstream's `_SUCCESS`, so re-running a changed stage re-runs everything downstream of it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid

from pipeline import storage
from pipeline.config import RunConfig
from pipeline.stage import Stage, StageRun

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


class StageNotReady(RuntimeError):
    """The upstream a stage reads has not finished."""


def read_success(stage_dir: str) -> dict | None:
    path = storage.join(stage_dir, SUCCESS)
    if not storage.exists(path):
        return None
    try:
        return json.loads(storage.read_text(path))
    except (ValueError, OSError):
        return None


def input_fingerprint(stage: Stage, upstream_dir: str | None) -> str:
    h = hashlib.sha256()
    if upstream_dir is not None:
        marker = read_success(upstream_dir)
        if marker is None:
            raise StageNotReady(f"stage {stage.name!r} reads {upstream_dir}, which has not finished: "
                                f"run `glmdata {stage.upstream}` first (or `glmdata run`)")
        h.update(f"{marker['config_hash']}:{marker['input_fingerprint']}".encode())
    for name in stage.depends_on:
        marker = read_success(stage_dir(stage.cfg, name))
        if marker is None:
            raise StageNotReady(f"stage {stage.name!r} needs the {name!r} stage's output: run `glmdata {name}` first")
        h.update(f"{name}:{marker['config_hash']}:{marker['input_fingerprint']}".encode())
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
    cfg = stage.cfg
    sdir = stage_dir(cfg, stage.name)
    upstream_dir = stage_dir(cfg, stage.upstream) if stage.upstream else None
    fingerprint = input_fingerprint(stage, upstream_dir)
    config_hash = stage.config_hash()
    marker = read_success(sdir)
    if (not force and marker and marker.get("config_hash") == config_hash
            and marker.get("input_fingerprint") == fingerprint):
        log.info("%s: finished earlier with the same config and input; skipped", stage.name)
        stats = json.loads(storage.read_text(storage.join(sdir, "stats.json")))
        stats["skipped"] = True
        return stats

    local = "://" not in cfg.run.workdir
    if local:
        # Work in a private folder and rename it into place, so a killed run leaves no half stage.
        tmp_root = storage.join(cfg.run.workdir, ".tmp")
        for stale in storage.listdir(tmp_root):
            if stale.startswith(stage.name + "-"):
                storage.rmtree(storage.join(tmp_root, stale))
        tmp = storage.join(tmp_root, f"{stage.name}-{uuid.uuid4().hex[:8]}")
    else:
        # Object stores have no directory rename: write in place; _SUCCESS (written last) marks it done.
        storage.rmtree(sdir)
        tmp = sdir
    storage.makedirs(tmp)
    started = time.time()
    run = StageRun(cfg=cfg, engine=engine, stage_dir=sdir, tmp_dir=tmp, upstream_dir=upstream_dir)
    stats = stage.execute(run)
    stats.check_conservation(f"stage {stage.name}")
    summary = {"stage": stage.name, "engine": engine.name, "seconds": round(time.time() - started, 3),
               **stats.to_dict(), "report": stage.report_data(run)}
    storage.write_text(storage.join(tmp, "stats.json"), json.dumps(summary, indent=2, sort_keys=True))
    if local:
        storage.rmtree(sdir)
        storage.rename(tmp, sdir)
    storage.write_text(storage.join(sdir, SUCCESS), json.dumps({
        "stage": stage.name, "config_hash": config_hash, "input_fingerprint": fingerprint,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    return summary
