"""Atomic, sharded checkpoints with exact resume.

    <run>/checkpoints/step-00000010/
        .metadata, __*_*.distcp       model + optimizer, sharded by torch.distributed.checkpoint
                                      (each rank writes its own shards; loads under another layout)
        rng-rank00000.pt ...          each rank's torch (and CUDA) generator states
        trainer_state.json            step, data position, loss-spike guard, written by rank 0

A checkpoint is written into `step-N.inprogress`, and only when every rank has finished does rank
0 rename it to `step-N`: a save killed half way leaves an `.inprogress` folder that is never taken
for a checkpoint (and is cleared by the next save of that step). Multi-node runs need the run
folder on a shared filesystem. The learning rate is a function of the step, so the step is the
whole scheduler state.
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
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

STEP_DIR = re.compile(r"^step-(\d{8})$")
TRAINER_STATE = "trainer_state.json"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_file(folder: Path, rank: int) -> Path:
    return folder / f"rng-rank{rank:05d}.pt"


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root` (in-progress folders are not checkpoints)."""
    if not root.is_dir():
        return None
    steps = sorted(int(m.group(1)) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    return root / f"step-{steps[-1]:08d}" if steps else None


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict, keep: int) -> Path:
    final = root / f"step-{step:08d}"
    staging = root / f"step-{step:08d}.inprogress"
    if _rank() == 0:
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed save
        staging.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
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
        os.replace(staging, final)
        _fsync_dir(root)
        complete = sorted(p for p in root.iterdir() if STEP_DIR.match(p.name))
        for old in complete[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and this rank's RNG in place; returns the trainer state."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with _single_process_is_fine():
        dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
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
        torch.manual_seed(trainer_state["step"] * 100_003 + _rank())
    return trainer_state


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
