"""The trainer on a CUDA GPU (skipped without one; bench/gpu_check.sh runs them on a GPU machine):
FlexAttention against a float64 reference in bf16 (forward and q/k/v gradients), and the large
presets' code path (torchrun, meta-device init, FSDP2 with bf16 parameters and fp32 reduction,
FlexAttention, torch.compile per block, full activation checkpointing, dropout, fused AdamW on
DTensors) training, checkpointing and resuming to the same losses."""
from __future__ import annotations

import math

import pytest
import torch

from test_trainer import logged_steps, run_trainer
from test_trainer_pipeline import shards  # noqa: F401 - the fixture

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def random_glm_mask(B: int, T: int, gen: torch.Generator):
    """Packed samples of 16-300 tokens, each a random-length Part A followed by Part B."""
    segment_ids = torch.zeros(B, T, dtype=torch.int32)
    prefix = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        t, s = 0, 1
        while t < T:
            n = int(torch.randint(16, 300, (1,), generator=gen))
            n_a = int(torch.randint(1, n + 1, (1,), generator=gen))
            segment_ids[b, t:t + n], prefix[b, t:t + n_a] = s, True
            t, s = t + n, s + 1
    return segment_ids, prefix


@pytest.mark.parametrize("backend", ["flex", "sdpa"])
def test_attention_kernels_match_the_reference_in_bf16_forward_and_backward(backend):
    from trainer.attention import attend, build_mask, visibility

    gen = torch.Generator().manual_seed(0)
    B, H, T, D = 2, 4, 640, 128  # T not a multiple of FlexAttention's 128-token blocks
    segment_ids, prefix = random_glm_mask(B, T, gen)
    q, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
    grad_out = torch.randn(B, H, T, D, generator=gen)
    ref = [t.double().cuda().requires_grad_() for t in (q, k, v)]
    allowed = visibility(segment_ids, prefix)[:, None].cuda()
    scores = ref[0] @ ref[1].transpose(-1, -2) / math.sqrt(D)
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ ref[2]
    expected.backward(grad_out.double().cuda())
    got_in = [t.to("cuda", torch.bfloat16).requires_grad_() for t in (q, k, v)]
    got = attend(*got_in, build_mask(segment_ids.cuda(), prefix.cuda(), backend))
    got.backward(grad_out.to("cuda", torch.bfloat16))
    for name, a, b in [("out", got, expected)] + [(f"d{n}", g.grad, r.grad) for n, g, r in zip("qkv", got_in, ref)]:
        error = (a.double() - b).abs().max().item() / b.abs().max().item()
        assert error < 3e-2, f"{backend} {name}: relative max error {error:.2e}"


def test_large_preset_code_path_trains_saves_and_resumes(shards, tmp_path):  # noqa: F811
    settings = ("parallel.attention=flex", "parallel.compile=true", "parallel.activation_checkpointing=full",
                "model.dropout=0.1", "model.num_layers=4", "model.hidden_size=256", "model.num_heads=2",
                "train.precision=bf16", "train.micro_batch_size=2", "train.global_batch_size=8",
                "train.rampup_start_batch_size=null", "train.max_steps=12", "train.warmup_samples=16",
                "checkpoint.interval=6", "logging.tensorboard=false")
    out = tmp_path / "run"
    run_trainer(shards, out, *settings, nproc=1, torchrun=True, device="cuda")
    straight = logged_steps(out)
    losses = [straight[s]["loss"] for s in range(1, 13)]
    assert all(math.isfinite(x) for x in losses) and not any(r["skipped"] for r in straight.values())
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.15
    resumed_out = tmp_path / "resumed"
    (resumed_out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "step-00000006").rename(resumed_out / "checkpoints" / "step-00000006")
    resumed = run_trainer(shards, resumed_out, *settings, nproc=1, torchrun=True, device="cuda")
    assert "resumed from" in resumed.stderr
    again = logged_steps(resumed_out)
    for step in range(7, 13):  # GPU kernels are not bitwise deterministic: close, not equal
        assert again[step]["loss"] == pytest.approx(straight[step]["loss"], rel=2e-3), step
