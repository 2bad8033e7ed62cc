"""Training throughput and MFU of the ~1B GLM preset on one GPU, bf16, sequence 2048.

    .venv/bin/python bench/train_mfu.py                      # needs CUDA; refuses without it

Builds GLM blank-infilling shards of random token ids in a temporary folder (the objective's real
packing: 30% [MASK] sequences of 4 isolated samples, 70% [gMASK]), then times the trainer's own
optimizer step (`Trainer.train_step`: forward, backward, clipping, spike guard, AdamW) after
warm-up steps that absorb torch.compile. Two attention kernels run in this one process:
  project:  FlexAttention with the GLM block mask (blocks outside a segment, and the upper triangle
            of Part B, are skipped)            -- the trainer's default on CUDA
  baseline: scaled_dot_product_attention with the same mask as a dense boolean tensor
and the ratio is printed. MFU = tokens/s x model FLOPs per token / peak bf16 FLOP/s, with FLOPs per
token = 6N + 12 L h T (trainer/model.py: flops_per_token, PaLM's convention; N = matmul weights
including the tied output projection). GLM-130B reported 32.5% MFU on A100s; the target here is 45%.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.glm_objective import GLMObjective, build_sequences  # noqa: E402  (numpy only)
from trainer.config import load_config  # noqa: E402
from trainer.metrics import mfu, peak_tflops  # noqa: E402
from trainer.shard_format import write_manifest, write_shard  # noqa: E402
from trainer.train import Trainer  # noqa: E402


def random_shards(folder: Path, n_sequences: int, seq_len: int, vocab: int, seed: int = 0) -> None:
    objective = GLMObjective(seq_len=seq_len, mask_sample_len=min(512, seq_len // 4))
    rng = np.random.default_rng(seed)
    plan = objective.plan(rng, n_sequences)
    n = plan.total_tokens()
    stream = rng.integers(8, vocab, n, dtype=np.int32)
    stream[rng.random(n) < 1 / 1000] = 2  # <eos>: documents of ~1000 tokens
    columns, kinds, _ = build_sequences(plan, stream, (np.arange(n) // 1000 % 2).astype(np.int8), rng)
    entry = write_shard(str(folder / "shard-00000.arrow"), columns, kinds)
    write_manifest(str(folder), {"seq_len": seq_len, "vocab_size": vocab, "languages": ["en", "zh"], "shards": [entry]})


def measure(args, attention: str, data: Path, device: torch.device) -> dict:
    overrides = {"parallel.attention": attention, "train.micro_batch_size": args.micro_batch,
                 "train.global_batch_size": args.micro_batch * args.accumulation,
                 "train.rampup_start_batch_size": None, "train.max_steps": args.warmup + args.steps,
                 "train.warmup_samples": 1, "checkpoint.interval": 0, "logging.tensorboard": False}
    cfg = load_config(args.config, overrides)
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, str(data), Path(out), device)
        for _ in range(args.warmup):
            trainer.train_step()
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        losses = [trainer.train_step()["loss"] for _ in range(args.steps)]  # .item() inside syncs each step
        elapsed = time.perf_counter() - start
        tokens_per_s = args.steps * cfg.train.global_batch_size * trainer.dataset.seq_len / elapsed
        result = {"attention": attention, "tokens_per_s": tokens_per_s, "last_loss": losses[-1],
                  "params": trainer.model.num_params(), "flops_per_token": trainer.flops_per_token,
                  "mfu": mfu(tokens_per_s, trainer.flops_per_token, 1, peak_tflops(device, args.peak_tflops)),
                  "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0}
        del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "trainer" / "1b.yaml"))
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=150528, help="GLM-130B's vocabulary by default")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--accumulation", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps (torch.compile)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--peak-tflops", type=float, help="override the data-sheet bf16 peak of this GPU")
    parser.add_argument("--attention", nargs="+", default=["flex", "sdpa"], help="project first, then baseline")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to check this script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: bench/train_mfu.py measures GPU training throughput and needs CUDA, which this PyTorch "
              f"({torch.__version__}) does not see. Run it on a GPU machine.", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        n = (args.warmup + args.steps) * args.micro_batch * args.accumulation
        random_shards(data, n, args.seq_len, args.vocab)
        results = [measure(args, attention, data, device) for attention in args.attention]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    first = results[0]
    print(f"device: {name}; preset {Path(args.config).name}: {first['params'] / 1e9:.3f}B parameters, "
          f"seq {args.seq_len}, micro-batch {args.micro_batch} x {args.accumulation}, bf16 autocast, "
          f"{first['flops_per_token'] / 1e9:.2f} GFLOPs/token (6N + 12LhT)")
    for r in results:
        mfu_text = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"  {r['attention']:>5}: {r['tokens_per_s']:,.0f} tokens/s  MFU {mfu_text}  "
              f"peak memory {r['peak_memory_gib']:.1f} GiB  loss {r['last_loss']:.3f}")
    if len(results) > 1:
        print(f"ratio {results[0]['attention']}/{results[1]['attention']}: "
              f"{results[0]['tokens_per_s'] / results[1]['tokens_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
