"""`glmtrain plan`: its parameter, gradient and optimizer counts against a meta-device build of every
pipeline stage under tensor + data parallelism (a fake process group: one process plays each rank),
and the 130B preset fitting 80 GB GPUs on GLM-130B's 96 x 8 GPUs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from trainer.config import load_config
from trainer.plan import GIB, GPUS, main as plan_main, plan, stage_parameter_shapes

REPO = Path(__file__).resolve().parents[1]


def meta_build(cfg, rank: int, world: int):
    """The trainer's model for `rank`, built on the meta device with its parallelism applied."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from trainer.model import GLM
    from trainer.parallelize import build_mesh, parallelize

    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
    try:
        mesh = build_mesh(cfg.parallel, torch.device("cpu"))
        with torch.device("meta"):
            model = GLM(cfg.model)
        parallelize(model, cfg.parallel, mesh)
        shapes = sorted(tuple(p.shape) for p in model.parameters())
        local = sum(p.to_local().numel() for p in model.parameters())
    finally:
        dist.destroy_process_group()
    return shapes, local


@pytest.mark.parametrize("pipeline, tensor, data", [(2, 2, 2), (3, 1, 2), (1, 2, 3)])
def test_plan_counts_equal_a_meta_device_build(pipeline, tensor, data):
    cfg = load_config(REPO / "configs" / "trainer" / "tiny.yaml",
                      {"model.num_layers": 5, "model.vocab_size": 260, "model.ffn_hidden_size": 200,
                       "parallel.pipeline": pipeline, "parallel.tensor": tensor})
    world = pipeline * tensor * data
    stages = plan(cfg, world, 64)
    for stage, planned in enumerate(stages):
        shapes, local = meta_build(cfg, rank=stage * data * tensor, world=world)  # dp rank 0, tp rank 0
        assert shapes == sorted(shape for shape, _ in stage_parameter_shapes(cfg, stage)), stage
        assert local == planned.sharded_params, stage  # FSDP's dim-0 shard of the TP shard
        assert planned.memory["optimizer (AdamW, fp32 shard)"] == 8 * local
        assert planned.memory["parameters (fp32 shard)"] == planned.memory["gradients (fp32 shard)"] == 4 * local


def test_the_130b_preset_fits_80gb_gpus_on_glm130b_cluster(capsys):
    cfg = load_config(REPO / "configs" / "trainer" / "130b.yaml")
    assert (cfg.parallel.pipeline, cfg.parallel.tensor) == (8, 4)  # GLM-130B's layout
    stages = plan(cfg, 96 * 8, 2048)
    assert sum(s.params for s in stages) * 4 == pytest.approx(128.7e9 + 150528 * 12288, rel=0.01)  # + the copy
    assert max(s.total for s in stages) < GPUS["h100-80"] * 2 ** 20 - 4 * GIB
    assert plan_main(["--config", str(REPO / "configs/trainer/130b.yaml"), "--gpus", "768", "--gpu", "a100-80"]) == 0
    out = capsys.readouterr().out
    assert "pipeline 8 x tensor 4 x data 24" in out and "fits" in out and "communication sent per GPU" in out


def test_plan_reports_what_does_not_fit(capsys):
    config = str(REPO / "configs/trainer/130b.yaml")
    assert plan_main(["--config", config, "--gpus", "32", "--gpu", "a100-40"]) == 1  # data parallel 1
    assert "does NOT fit" in capsys.readouterr().out
    assert plan_main(["--config", config, "--gpus", "100"]) == 2
    assert "expected a multiple of tensor x pipeline = 32" in capsys.readouterr().err
