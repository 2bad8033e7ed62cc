"""Pipeline parallelism (1F1B) alone and composed with tensor and data parallelism, over gloo on CPU:
the same losses and gradient norms as one process, exact resume after a kill, fallback from a broken
checkpoint, and shard checksums checked when a shard is first opened."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from test_trainer import TINY, assert_same_steps, logged_steps, run_trainer

REPO = Path(__file__).resolve().parents[1]
# One process: micro-batches of 2. Pipeline 2 (data 1): the same. PP 2 x TP 2 x DP 2: micro-batches of
# 1 on each of the two data-parallel ranks. The ramp-up (4 -> 8 sequences) rounds alike in all three.
SETTINGS = ("model.dropout=0.0", "logging.tensorboard=false", "train.global_batch_size=8",
            "train.rampup_start_batch_size=4", "train.rampup_samples=16", "train.warmup_samples=8",
            "train.lr_decay_samples=64")  # the schedule does not depend on max_steps
KILL_DURING_SAVE_OF_STEP_4 = """
import os, signal
import trainer.checkpoint as ckpt
real_replace = ckpt.os.replace
def replace(src, dst):
    if str(dst).endswith("step-00000004"):  # every rank's shards written, not yet committed
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
ckpt.os.replace = replace
"""


def train_here(shards: Path, out: Path, *settings: str) -> None:
    """One trainer process: this one (no interpreter and torch start-up to pay)."""
    from trainer.train import main

    args = ["--config", str(TINY), "--data", str(shards), "--out", str(out), "--device", "cpu"]
    assert main(args + [a for setting in settings for a in ("--set", setting)]) == 0


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    from train_mfu import random_shards  # the GLM objective's packing over random token ids

    folder = tmp_path_factory.mktemp("pipeline_shards")
    random_shards(folder, 96, 64, 500)
    return folder


@pytest.fixture(scope="module")
def one_process_run(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    train_here(shards, out, *SETTINGS, "train.max_steps=6", "checkpoint.interval=2", "checkpoint.keep=3",
               "train.micro_batch_size=2")
    return out


@pytest.fixture(scope="module")
def one_process(one_process_run) -> dict[int, dict]:
    return logged_steps(one_process_run)


def test_checkpoints_move_between_one_process_and_pipeline_2_exactly(shards, one_process_run, one_process, tmp_path):
    """One process's step-2 checkpoint continues in pipeline 2 (the last stage's copy of the tied
    embedding and its AdamW state from the one tied parameter) to step 4, whose checkpoint continues
    in one process (the two stages' halves into one model): every step equals one process's."""
    out = tmp_path / "run"
    shutil.copytree(one_process_run / "checkpoints" / "step-00000002", out / "checkpoints" / "step-00000002")
    run_trainer(shards, out, *SETTINGS, "train.max_steps=4", "checkpoint.interval=4", "train.micro_batch_size=2",
                "parallel.pipeline=2", nproc=2)
    pp = logged_steps(out)
    assert sorted(pp) == [3, 4] and all(r["batch_size"] < 8 for r in pp.values())  # ramp under way
    assert_same_steps(pp, one_process)
    train_here(shards, out, *SETTINGS, "train.max_steps=6", "checkpoint.interval=0", "train.micro_batch_size=2")
    resumed = logged_steps(out)
    assert sorted(resumed) == [3, 4, 5, 6]
    assert_same_steps({s: resumed[s] for s in (5, 6)}, one_process)


def test_pipeline_tensor_data_2x2x2_matches_one_process_and_resumes_after_a_kill(shards, one_process, tmp_path):
    """8 processes, sequence parallel, the loss in chunks of 48 tokens: killed while committing the step-4 checkpoint
    (step 2's is complete), then restarted: steps 1-4 of the killed run and 3-6 of the resumed one
    equal one process's (whole logits)."""
    out = tmp_path / "3d"
    settings = (*SETTINGS, "train.max_steps=6", "checkpoint.interval=2", "train.micro_batch_size=1",
                "parallel.pipeline=2", "parallel.tensor=2", "parallel.sequence_parallel=true",
                "train.cross_entropy_chunk=48")  # rows of 64 tokens
    killed = run_trainer(shards, out, *settings, nproc=8, prelude=KILL_DURING_SAVE_OF_STEP_4, check=False)
    assert killed.returncode != 0
    first = logged_steps(out)
    assert sorted(first) == [1, 2, 3, 4]
    assert_same_steps(first, one_process)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000004.inprogress"]
    resumed = run_trainer(shards, out, *settings, nproc=8)
    assert "resumed from" in resumed.stderr and "step-00000002" in resumed.stderr
    after = logged_steps(out)
    assert sorted(after) == [1, 2, 3, 4, 5, 6]
    assert_same_steps({s: after[s] for s in (3, 4, 5, 6)}, one_process)


@pytest.mark.parametrize("broken", [".distcp", ".metadata", "trainer_state.json", "rng-rank00000.pt"])
def test_a_truncated_checkpoint_file_is_named(one_process_run, tmp_path, broken):
    from trainer.checkpoint import checkpoint_problem

    folder = tmp_path / "step-00000006"
    shutil.copytree(one_process_run / "checkpoints" / folder.name, folder)
    assert checkpoint_problem(folder) is None
    target = next(folder.glob("*.distcp")) if broken == ".distcp" else folder / broken
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    assert str(target) in checkpoint_problem(folder)


def test_resume_falls_back_to_the_previous_checkpoint(shards, one_process_run, one_process, tmp_path, capsys):
    shutil.copytree(one_process_run / "checkpoints", tmp_path / "run" / "checkpoints")
    distcp = next((tmp_path / "run" / "checkpoints" / "step-00000006").glob("*.distcp"))
    distcp.write_bytes(distcp.read_bytes()[:100])
    capsys.readouterr()
    train_here(shards, tmp_path / "run", *SETTINGS, "train.max_steps=6", "checkpoint.interval=0",
               "train.micro_batch_size=2")
    stderr = capsys.readouterr().err
    assert f"checkpoint {distcp.parent} is broken" in stderr and str(distcp) in stderr
    assert "resumed from" in stderr and "step-00000004" in stderr
    after = logged_steps(tmp_path / "run")
    assert sorted(after) == [5, 6]
    assert_same_steps(after, one_process)



def test_a_resumed_run_saves_over_the_broken_checkpoint_it_passed_over(shards, one_process_run, one_process,
                                                                       tmp_path):
    """Resumed from step 4 past a broken step 6, the run saves steps 5 and 6 again: the broken folder
    neither blocks the rename of the new step 6 nor counts as one of the `keep` newest (with keep 1,
    saving step 5 used to delete step 5 itself and keep the broken step 6)."""
    from trainer.checkpoint import checkpoint_problem

    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copytree(one_process_run / "checkpoints", checkpoints)
    distcp = next((checkpoints / "step-00000006").glob("*.distcp"))
    distcp.write_bytes(distcp.read_bytes()[:100])
    train_here(shards, tmp_path / "run", *SETTINGS, "train.max_steps=6", "checkpoint.interval=1",
               "checkpoint.keep=1", "train.micro_batch_size=2")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000006"]
    assert checkpoint_problem(checkpoints / "step-00000006") is None
    assert_same_steps(logged_steps(tmp_path / "run"), one_process)

def test_shard_checksum_is_checked_when_the_shard_is_first_opened(shards, tmp_path):
    from trainer.shard_format import ShardDataset, ShardFormatError
    from trainer.train import parse_args

    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    shard = next(copy.glob("shard-*.arrow"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the token columns
    shard.write_bytes(bytes(data))
    dataset = ShardDataset(str(copy), verify=True)  # opening the folder reads no shard
    with pytest.raises(ShardFormatError, match=f"{shard}: sha256 differs"):
        dataset[0]
    assert ShardDataset(str(copy))[0]["tokens"].shape == (64,)  # unverified, the flipped byte passes
    assert parse_args(["--config", "c", "--data", "d"]).verify_shards  # the trainer checks by default
    assert not parse_args(["--config", "c", "--data", "d", "--no-verify-shards"]).verify_shards


class _MeshDim:
    def __init__(self, size: int, rank: int):
        self._size, self._rank = size, rank

    def size(self) -> int:
        return self._size

    def get_local_rank(self) -> int:
        return self._rank


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_dropout_streams_agree_only_where_activations_are_replicas(sequence_parallel):
    """Over every rank of a PP 2 x DP 3 x TP 2 mesh: two ranks share a dropout stream exactly when they
    drop the same activations, i.e. same pipeline stage and data-parallel rank and, without sequence
    parallelism, any tensor-parallel rank (replicas); under sequence parallelism each TP rank holds its
    own part of the sequence, so all streams differ."""
    from trainer.config import ParallelConfig
    from trainer.parallelize import dropout_stream

    cfg = ParallelConfig(tensor=2, pipeline=2, sequence_parallel=sequence_parallel)
    sizes = {"pp": 2, "dp": 3, "tp": 2}
    coords = [(pp, dp, tp) for pp in range(2) for dp in range(3) for tp in range(2)]
    streams = {c: dropout_stream({d: _MeshDim(sizes[d], r) for d, r in zip(("pp", "dp", "tp"), c)}, cfg)
               for c in coords}
    for a in coords:
        for b in coords:
            replicas = a[:2] == b[:2] and (a[2] == b[2] or not sequence_parallel)
            assert (streams[a] == streams[b]) == replicas, (a, b)
    assert dropout_stream(None, cfg) == 0
