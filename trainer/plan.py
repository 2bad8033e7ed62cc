"""Per-GPU memory and per-step communication of a preset on a cluster, before renting it.

    glmtrain plan --config configs/trainer/130b.yaml --gpus 768 --gpu h100-80

The layout is the trainer's own (trainer/parallelize.py): pipeline stages of contiguous layers
(the first with the embedding, the last with the final LayerNorm and its copy of the tied
embedding), tensor-parallel shards of the fused projections, FSDP2 over the data-parallel ranks.
Per GPU, for the fullest pipeline stage:

  parameters    fp32 master shard (1/dp), plus the gathered compute copy (bf16 on CUDA): the whole
                stage under pipeline parallelism (kept for the step), two blocks otherwise
  gradients     fp32 shard, plus the unsharded fp32 accumulation of the stage (pipeline: reduced
                once per step; without it, unless reduce_every_micro_batch) or of one block
  optimizer     AdamW moments, fp32 shard (1/dp)
  activations   per micro-batch: with checkpointing, each block's input (bf16 residual stream)
                plus one block's recomputation; without, every block's saved tensors, estimated
                per token as 13h / sp + (12h + 8 ffn) / tp bytes (sp = tp with sequence
                parallelism, else 1; LayerNorm inputs in fp32 under
                autocast, bf16 matmul inputs, fp32 rotary inputs, GeGLU halves; no T^2 term with
                FlexAttention). 1F1B keeps (pipeline - stage) micro-batches in flight on a stage.
  logits        last stage: fp32 logits, their gradient and the softmax, vocab / tp wide, for the
                micro-batch or one train.cross_entropy_chunk of tokens

Parameter, gradient and optimizer bytes are exact (tests/test_trainer_plan.py compares them with
a meta-device build of every stage under a fake process group); activations are an estimate.
Communication counts bytes each GPU sends per optimizer step with ring collectives: an all-reduce
of n bytes over k ranks sends 2n(k-1)/k, a reduce-scatter or all-gather n(k-1)/k.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from trainer.config import Config, ConfigError, load_config
from trainer.parallelize import stage_layers

# Memory per device as nvidia-smi reports it (MiB).
GPUS = {"a100-40": 40960, "a100-80": 81920, "h100-80": 81559, "h200-141": 143771}
RESERVED_GIB = 4.0  # CUDA context, NCCL buffers, allocator fragmentation: kept free in the fit check
GIB = 2 ** 30


@dataclass
class StagePlan:
    stage: int
    layers: int
    params: int  # this GPU's parameters after tensor parallelism, before FSDP sharding
    sharded_params: int  # after FSDP sharding over dp (rank 0's shard, the largest)
    memory: dict  # name -> bytes
    communication: dict  # name -> bytes sent per step

    @property
    def total(self) -> int:
        return sum(self.memory.values())


def stage_parameter_shapes(cfg: Config, stage: int) -> list[tuple[tuple[int, ...], int | None]]:
    """(global shape, tensor-parallel sharded dim or None) of every parameter of pipeline `stage`."""
    m, pp = cfg.model, cfg.parallel.pipeline
    h, f, v = m.hidden_size, m.ffn_size, m.vocab_size
    block = [((h,), None), ((h,), None),                      # input_layernorm
             ((3 * h, h), 0), ((3 * h,), 0),                  # attention.query_key_value
             ((h, h), 1), ((h,), None),                       # attention.dense
             ((h,), None), ((h,), None),                      # post_attention_layernorm
             ((2 * f, h), 0), ((2 * f,), 0),                  # mlp.dense_h_to_4h
             ((h, f), 1), ((h,), None)]                       # mlp.dense_4h_to_h
    shapes = block * len(stage_layers(m.num_layers, pp)[stage])
    if stage == 0:
        shapes.insert(0, ((v, h), 0))  # word_embeddings (also the output projection when pp == 1)
    if stage == pp - 1:
        shapes += [((h,), None), ((h,), None)]  # final_layernorm
        if pp > 1:
            shapes.append(((v, h), 0))  # the last stage's copy of the tied embedding
    return shapes


def _local(shape: tuple[int, ...], tp_dim: int | None, tp: int, dp: int) -> tuple[int, int]:
    """(elements after tensor parallelism, rank 0's elements after FSDP's dim-0 sharding)."""
    shape = list(shape)
    if tp_dim is not None:
        shape[tp_dim] //= tp
    rest = math.prod(shape[1:])
    return shape[0] * rest, math.ceil(shape[0] / dp) * rest


def plan_stage(cfg: Config, gpus: int, seq_len: int, stage: int) -> StagePlan:
    m, p, t = cfg.model, cfg.parallel, cfg.train
    tp, pp = p.tensor, p.pipeline
    dp = gpus // (tp * pp)
    h, f, v, b, s = m.hidden_size, m.ffn_size, m.vocab_size, t.micro_batch_size, seq_len
    sizes = [_local(shape, dim, tp, dp) for shape, dim in stage_parameter_shapes(cfg, stage)]
    params, sharded = sum(a for a, _ in sizes), sum(c for _, c in sizes)
    layers = len(stage_layers(m.num_layers, pp)[stage])
    block_params = params // max(layers, 1) if layers else 0
    compute_bytes = 2 if t.precision == "bf16" else 4
    whole_step = pp > 1  # parameters stay gathered and gradients unsharded for the step
    micro_batches = t.global_batch_size // (b * dp)
    in_flight = min(pp - stage, micro_batches)
    residual = tp if p.sequence_parallel else 1  # the residual stream's share of the sequence
    per_token_layer = 13 * h // residual + (12 * h + 8 * f) // tp  # bytes saved per token by a block (estimate)
    block_input = compute_bytes * h // residual  # bf16 under FSDP2's mixed precision
    if p.activation_checkpointing == "full":
        stored = layers * block_input * b * s * in_flight + per_token_layer * b * s
    elif p.activation_checkpointing == "selective":
        kept = layers - (layers + 1) // 2
        stored = ((layers - kept) * block_input + kept * per_token_layer) * b * s * in_flight + per_token_layer * b * s
    else:
        stored = layers * per_token_layer * b * s * in_flight
    memory = {
        "parameters (fp32 shard)": 4 * sharded,
        "parameters (gathered)": compute_bytes * (params if whole_step else 2 * block_params),
        "gradients (fp32 shard)": 4 * sharded,
        "gradients (unsharded)": 4 * (params if whole_step or not p.reduce_every_micro_batch else block_params),
        "optimizer (AdamW, fp32 shard)": 8 * sharded,
        "activations": stored,
        "logits": 3 * 4 * (t.cross_entropy_chunk or b * s) * v // tp if stage == pp - 1 else 0,
    }
    ring = (lambda k: 2 * (k - 1) / k), (lambda k: (k - 1) / k)  # all-reduce, reduce-scatter / all-gather
    hidden = compute_bytes * b * s * h
    tp_per_layer = (4 + 2 * (p.activation_checkpointing == "full")) * ring[0](tp) * hidden if tp > 1 else 0
    dp_gathers = 1 if whole_step else 2 * micro_batches  # forward and backward re-gather without PP
    dp_reduces = micro_batches if (not whole_step and p.reduce_every_micro_batch) else 1
    communication = {
        "tensor parallel (all-reduces, or gather + scatter)": int(micro_batches * layers * tp_per_layer),
        "pipeline (activations and their gradients)": int(micro_batches * 2 * hidden / residual) if pp > 1 else 0,
        "data parallel (all-gather bf16 params)": int(dp_gathers * ring[1](dp) * compute_bytes * params) if dp > 1 else 0,
        "data parallel (reduce-scatter fp32 grads)": int(dp_reduces * ring[1](dp) * 4 * params) if dp > 1 else 0,
        "tied embedding (all-reduce, first/last stage)":
            int(ring[0](2) * 4 * v * h // (tp * dp)) if pp > 1 and stage in (0, pp - 1) else 0,
    }
    return StagePlan(stage, layers, params, sharded, memory, communication)


def plan(cfg: Config, gpus: int, seq_len: int) -> list[StagePlan]:
    p = cfg.parallel
    if gpus % (p.tensor * p.pipeline):
        raise ConfigError(f"--gpus {gpus}: expected a multiple of tensor x pipeline = {p.tensor * p.pipeline}")
    if cfg.model.vocab_size is None:
        raise ConfigError("model.vocab_size: null in the preset; give --vocab (the shards' padded vocabulary)")
    return [plan_stage(cfg, gpus, seq_len, s) for s in range(p.pipeline)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glmtrain plan", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="trainer preset, e.g. configs/trainer/130b.yaml")
    parser.add_argument("--gpus", type=int, required=True, help="GPUs in the job (e.g. 768 = 96 nodes x 8)")
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h100-80",
                        help="the GPU model, whose memory the plan must fit (default h100-80)")
    parser.add_argument("--seq-len", type=int, default=2048, help="the shards' sequence length")
    parser.add_argument("--vocab", type=int, help="vocabulary when the preset leaves model.vocab_size null")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, {"model.vocab_size": args.vocab} if args.vocab else None)
        stages = plan(cfg, args.gpus, args.seq_len)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    p, t = cfg.parallel, cfg.train
    dp = args.gpus // (p.tensor * p.pipeline)
    micro_batches = t.global_batch_size // (t.micro_batch_size * dp)
    capacity = GPUS[args.gpu] * 2 ** 20
    worst = max(stages, key=lambda s: s.total)
    print(f"{args.config}: {args.gpus} GPUs = pipeline {p.pipeline} x tensor {p.tensor} x data {dp}; "
          f"{micro_batches} micro-batches of {t.micro_batch_size} x {args.seq_len} per data-parallel rank and step")
    if p.pipeline > 1:
        print(f"1F1B bubble: {(p.pipeline - 1) / (micro_batches + p.pipeline - 1):.1%} of the step")
    print(f"fullest stage: {worst.stage} ({worst.layers} layers, {worst.params / 1e9:.2f}B parameters per GPU)")
    for name, value in worst.memory.items():
        print(f"  {name:<34} {value / GIB:8.2f} GiB")
    verdict = "fits" if worst.total + RESERVED_GIB * GIB <= capacity else "does NOT fit"
    print(f"  {'total':<34} {worst.total / GIB:8.2f} GiB of {capacity / GIB:.1f} GiB ({args.gpu}; {verdict} "
          f"with {RESERVED_GIB:.0f} GiB reserved)")
    print("communication sent per GPU per step:")
    for name, value in worst.communication.items():
        print(f"  {name:<46} {value / GIB:8.2f} GiB")
    print(f"  {'total':<46} {sum(worst.communication.values()) / GIB:8.2f} GiB")
    return 0 if verdict == "fits" else 1


if __name__ == "__main__":
    sys.exit(main())
