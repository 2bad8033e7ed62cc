"""Atomic, sharded checkpoints with exact resume.

    <run>/checkpoints/step-00000010/
        .metadata, __*_*.distcp       model + optimizer, sharded by torch.distributed.checkpoint
                                      (each rank writes its own shards; loads under another layout)
        rng-rank00000.pt ...          each rank's torch (and CUDA) generator states
        trainer_state.json            step, data position, loss-spike guard, written by rank 0

A checkpoint is written into `step-N.inprogress`, and only when every rank has finished does rank
0 rename it to `step-N`: a save killed half way leaves an `.inprogress` folder that is never taken
for a checkpoint (and is cleared by the next save of that step). Multi-node runs need the run
folder on a shared filesystem. The learning rate and batch size are functions of the consumed
samples (in trainer_state.json), so no scheduler state is saved.

Resuming takes the newest checkpoint that is whole: a truncated `.distcp`, `.metadata`, RNG file or
trainer_state.json (a disk that filled up, a copy cut short) is reported with a warning naming it
and the previous checkpoint is used; the run's next saves replace the broken one and any other
checkpoint at or after their step. Every rank checks the same files, so all ranks agree.

Checkpoints must be trusted: DCP's `.metadata` is a pickle, and unpickling runs code. Load only
checkpoints your own runs wrote (trainer_state.json is JSON and the RNG files are read with
weights_only=True).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

STEP_DIR = re.compile(r"^step-(\d{8})$")
TRAINER_STATE = "trainer_state.json"
# One key per parameter for the optimizer too ("optim.state.<fqn>.exp_avg", "optim.param_groups.<fqn>.lr"):
# pipeline stages hold different parameters, and a single param_groups list would be saved by one of them.
FLAT = StateDictOptions(flatten_optimizer_state_dict=True)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_file(folder: Path, rank: int) -> Path:
    return folder / f"rng-rank{rank:05d}.pt"


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, newest first (in-progress folders are not checkpoints)."""
    if not root.is_dir():
        return []
    steps = sorted((int(m.group(1)) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()),
                   reverse=True)
    return [root / f"step-{step:08d}" for step in steps]


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from (a missing or truncated file), or None when it is whole:
    trainer_state.json parses, the RNG files and .metadata load, and every .distcp is as long as the
    metadata says."""
    try:
        state = json.loads((folder / TRAINER_STATE).read_text())
        if not isinstance(state, dict) or "step" not in state:
            return f"{folder / TRAINER_STATE}: no step"
    except (OSError, ValueError) as err:
        return f"{folder / TRAINER_STATE}: {err}"
    try:
        metadata = dcp.FileSystemReader(str(folder)).read_metadata()
    except Exception as err:  # noqa: BLE001 - a truncated pickle raises many kinds of errors
        return f"{folder / '.metadata'}: unreadable ({type(err).__name__}: {err})"
    for rng_path in sorted(folder.glob("rng-rank*.pt")):  # every rank's, so that all ranks agree
        try:
            torch.load(rng_path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - a truncated zip raises RuntimeError, EOFError, ...
            return f"{rng_path}: unreadable ({type(err).__name__}: {err})"
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        path = folder / name
        actual = path.stat().st_size if path.exists() else -1
        if actual < size:
            return f"{path}: {'missing' if actual < 0 else f'{actual} bytes, the metadata needs {size}'}"
    return None


def load_latest_good_checkpoint(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                                dropout_seed: int, warn=warnings.warn) -> tuple[Path, dict] | None:
    """Load the newest whole checkpoint under `root`; (folder, trainer state), or None when there
    is none. Each broken one is skipped with a warning that names the bad file."""
    for folder in checkpoints(root):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, load_checkpoint(folder, model, optimizer, dropout_seed)
        warn(f"warning: checkpoint {folder} is broken, falling back to the previous one: {problem}")
    return None


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict, keep: int) -> Path:
    final = root / f"step-{step:08d}"
    staging = root / f"step-{step:08d}.inprogress"
    if _rank() == 0:
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed save
        staging.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer, options=FLAT)
    with _single_process_is_fine():
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(staging))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, _rng_file(staging, _rank()))
    if _rank() == 0:
        (staging / TRAINER_STATE).write_text(json.dumps({"step": step, **trainer_state}, indent=2))
    _barrier()
    if _rank() == 0:
        # Checkpoints of this step or later are ones the resume passed over as broken: this run
        # replaces them (a non-empty `final` would fail the rename) and they must not count for `keep`.
        for stale in checkpoints(root):
            if int(STEP_DIR.match(stale.name).group(1)) >= step:
                shutil.rmtree(stale)
        os.replace(staging, final)
        _fsync_dir(root)
        complete = sorted(p for p in root.iterdir() if STEP_DIR.match(p.name))
        for old in complete[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, dropout_seed: int) -> dict:
    """Restore model, optimizer and this rank's RNG in place; returns the trainer state. Without
    this rank's RNG file the dropout stream restarts from `dropout_seed` (the rank's stream, so
    ranks that must agree still do) offset by the step."""
    model_state, optim_state = get_state_dict(model, optimizer, options=FLAT)
    tied = _tied_copy_reads_embedding_state(optim_state, folder)
    state = {"model": model_state, "optim": {tied.get(k, k): v for k, v in optim_state.items()}}
    with _single_process_is_fine():
        dcp.load(state, checkpoint_id=str(folder))
    untied = {v: k for k, v in tied.items()}
    optim_state = {untied.get(k, k): v for k, v in state["optim"].items()}
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=optim_state, options=FLAT)
    trainer_state = json.loads((folder / TRAINER_STATE).read_text())
    rng_path = _rng_file(folder, _rank())
    if rng_path.exists():
        rng = torch.load(rng_path, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    else:  # more processes than the checkpoint had: weights and data position are still exact
        warnings.warn(f"{rng_path} missing (the checkpoint was written by fewer processes): rank {_rank()} "
                      f"reseeds its dropout from the step; the resumed run is not bit-identical")
        torch.manual_seed(dropout_seed + trainer_state["step"] * 100_003)
    return trainer_state


def _tied_copy_reads_embedding_state(optim_state: dict, folder: Path) -> dict[str, str]:
    """Optimizer keys of the last pipeline stage's copy of the tied embedding (output.weight) to
    read from word_embeddings.weight's, for checkpoints written without pipeline stages (one tied
    parameter, saved under its first name only)."""
    keys = [k for k in optim_state if "output.weight" in k]
    if not keys:
        return {}
    saved = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    return {k: k.replace("output.weight", "word_embeddings.weight") for k in keys if f"optim.{k}" not in saved}


@contextlib.contextmanager
def _single_process_is_fine():
    """DCP warns when no process group exists; one process (glmtrain) is a supported layout."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
