"""Parallelism applied to the GLM from outside the model, as torchtitan does.

Device mesh ("pp", "dp", "tp"), GLM-130B's layout being TP 4 x PP 8 x DP 24:
- pipeline parallel (torch.distributed.pipelining, 1F1B): each "pp" rank keeps a contiguous run of
  layers (`split_pipeline_stage`), the first stage the embedding, the last the final LayerNorm and
  the output projection. The tied embedding lives on both: the last stage holds a copy, set equal
  at the start (`sync_tied_embedding`) and kept equal by summing the two gradients before every
  optimizer step (Megatron's embedding group).
- tensor parallel (Megatron's layout, with DTensor's parallelize_module): the fused
  query_key_value and dense_h_to_4h column-parallel (each rank holds whole heads and whole GeGLU
  units, as the row layouts of trainer/model.py guarantee), attention.dense and dense_4h_to_h
  row-parallel (one all-reduce after each), the embedding vocabulary-parallel, the output
  projection vocabulary-parallel with its logits left sharded for a vocabulary-parallel
  cross-entropy (`loss_parallel`, see trainer/train.py's token_losses).
- data parallel: FSDP2 (`fully_shard` per block and at the root) with bf16 parameters and fp32
  gradient reduction on CUDA (MixedPrecisionPolicy). Under pipeline parallelism the parameters stay
  gathered for the whole step and gradients are reduce-scattered once, after the last micro-batch
  (ZeRO-1's communication: the pipeline stage drives FSDP's no-sync); without it they are
  resharded after each forward, and `reduce_every_micro_batch` reduce-scatters every micro-batch
  so that no unsharded gradient outlives a backward (large presets). FSDP2 is applied whenever there
  is a process group (torchrun), even over a "dp" of one rank, so every parameter is a DTensor.
- activation checkpointing of every block (full), or of every other block (selective: half the
  recomputation for twice the activation memory of the checkpointed half).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from trainer.config import ConfigError, ParallelConfig
from trainer.model import GLM

MESH_DIMS = ("pp", "dp", "tp")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def init_distributed(device: torch.device) -> None:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def build_mesh(cfg: ParallelConfig, device: torch.device) -> DeviceMesh | None:
    """The ("pp", "dp", "tp") mesh under torchrun (even of one process: then FSDP2 and its mixed
    precision run as they do at scale); None for a plain single process."""
    _, size = world()
    if not dist.is_initialized():
        if cfg.tensor * cfg.pipeline > 1:
            raise ConfigError(f"parallel: tensor {cfg.tensor} x pipeline {cfg.pipeline} needs that many processes "
                              f"(torchrun --nproc-per-node), got 1")
        return None
    if size % (cfg.tensor * cfg.pipeline):
        raise ConfigError(f"parallel: expected tensor x pipeline ({cfg.tensor} x {cfg.pipeline}) to divide the "
                          f"world size {size}")
    dp = size // (cfg.tensor * cfg.pipeline)
    return init_device_mesh(device.type, (cfg.pipeline, dp, cfg.tensor), mesh_dim_names=MESH_DIMS)


def dropout_stream(mesh: DeviceMesh | None, cfg: ParallelConfig) -> int:
    """The dropout random stream of this rank. Ranks that drop replicas of the same activations must
    draw the same masks: tensor-parallel ranks without sequence parallelism (otherwise their replicas
    diverge). Every other pair must differ: data-parallel ranks (other samples), pipeline stages (other
    layers called in the same order) and, under sequence parallelism, tensor-parallel ranks (each drops
    its own 1/tp of the sequence: one stream would repeat the same mask along the sequence)."""
    if mesh is None:
        return 0
    tp_rank = mesh["tp"].get_local_rank() if cfg.sequence_parallel else 0
    return (mesh["dp"].get_local_rank() * mesh["pp"].size() + mesh["pp"].get_local_rank()) * mesh["tp"].size() + tp_rank


def stage_layers(num_layers: int, num_stages: int) -> list[range]:
    """Contiguous layer ranges per pipeline stage, as equal as possible (earlier stages one more)."""
    base, extra = divmod(num_layers, num_stages)
    bounds = [0]
    for s in range(num_stages):
        bounds.append(bounds[-1] + base + (s < extra))
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def split_pipeline_stage(model: GLM, stage: int, num_stages: int) -> GLM:
    """Keep only pipeline stage `stage`'s parts of `model`, in place, under the same parameter names."""
    if num_stages == 1:
        return model
    keep = stage_layers(model.cfg.num_layers, num_stages)[stage]
    for key in list(model.layers):
        if int(key) not in keep:
            del model.layers[key]
    if stage == num_stages - 1:  # the output projection keeps its own copy of the tied weight
        model.output.weight = nn.Parameter(model.word_embeddings.weight.detach().clone())
    else:
        model.final_layernorm = model.output = None
    if stage != 0:
        model.word_embeddings = None
    return model


def apply_tensor_parallel(model: GLM, tp_mesh: DeviceMesh, sequence_parallel: bool) -> None:
    """Megatron's layout; with `sequence_parallel` the residual stream between attention and MLP
    (LayerNorms, dropout, the DeepNorm sums) holds 1/tp of the sequence: all-gathered before each
    column-parallel projection, reduce-scattered after each row-parallel one."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                                   RowwiseParallel, SequenceParallel, parallelize_module)

    residual = Shard(1) if sequence_parallel else Replicate()
    plan = {}
    if model.word_embeddings is not None:
        plan["word_embeddings"] = RowwiseParallel(input_layouts=Replicate(), output_layouts=residual)
    if model.output is not None:  # logits stay vocabulary-sharded (this rank's slice, a plain tensor)
        plan["output"] = ColwiseParallel(output_layouts=Shard(-1))
        if sequence_parallel:
            plan["final_layernorm"] = SequenceParallel(use_local_output=True)
    tied = model.output is not None and model.word_embeddings is not None
    parallelize_module(model, tp_mesh, plan)
    if model.output is not None and sequence_parallel:  # the whole sequence enters the (chunked) projection
        parallelize_module(model.final_layernorm, tp_mesh,
                           PrepareModuleOutput(output_layouts=Shard(1), desired_output_layouts=Replicate()))
    if tied:  # each style distributed its own copy of the tied weight: keep the embedding's (both Shard(0))
        model.output.weight = model.word_embeddings.weight
    for block in model.layers.values():
        layout = {"attention.query_key_value": ColwiseParallel(),
                  "attention.dense": RowwiseParallel(output_layouts=residual),
                  "mlp.dense_h_to_4h": ColwiseParallel(), "mlp.dense_4h_to_h": RowwiseParallel(output_layouts=residual)}
        if sequence_parallel:
            def gather(n_inputs):  # the first input (hidden states) from 1/tp of the sequence to all of it
                return PrepareModuleInput(input_layouts=(Shard(1),) + (None,) * (n_inputs - 1),
                                          desired_input_layouts=(Replicate(),) + (None,) * (n_inputs - 1),
                                          use_local_output=True)
            layout.update({"input_layernorm": SequenceParallel(use_local_output=True),
                           "post_attention_layernorm": SequenceParallel(use_local_output=True),
                           "attention": gather(4), "mlp": gather(1)})
        parallelize_module(block, tp_mesh, layout)


def apply_activation_checkpointing(model: GLM, mode: str) -> None:
    """Full: every block recomputes its forward in backward. Selective: every other block."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, (key, block) in enumerate(list(model.layers.items())):
        if mode == "full" or i % 2 == 0:
            model.layers[key] = checkpoint_wrapper(block, preserve_rng_state=True)


def parallelize(model: GLM, cfg: ParallelConfig, mesh: DeviceMesh | None, mixed_precision: bool = False) -> GLM:
    """Apply pipeline split, TP, activation checkpointing, compilation and FSDP2 in place
    (torchtitan's order). `mixed_precision`: bf16 parameters and fp32 reduction under FSDP2."""
    if mesh is not None:
        split_pipeline_stage(model, mesh["pp"].get_local_rank(), mesh["pp"].size())
        if mesh["tp"].size() > 1:
            apply_tensor_parallel(model, mesh["tp"], cfg.sequence_parallel)
    if cfg.activation_checkpointing != "none":
        apply_activation_checkpointing(model, cfg.activation_checkpointing)
    if cfg.compile:
        for block in model.layers.values():
            block.compile()
    if mesh is not None:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if mixed_precision else MixedPrecisionPolicy())
        reshard = mesh["pp"].size() == 1  # a pipeline stage keeps its parameters across micro-batches
        for block in model.layers.values():
            fully_shard(block, mesh=mesh["dp"], mp_policy=policy, reshard_after_forward=reshard)
        fully_shard(model, mesh=mesh["dp"], mp_policy=policy, reshard_after_forward=reshard)
    return model


def embedding_group(mesh: DeviceMesh | None) -> dist.ProcessGroup | None:
    """The two ranks (first and last pipeline stage) holding this rank's shard of the tied
    embedding; None without pipeline parallelism or on a middle stage. Every rank must call this."""
    if mesh is None or mesh["pp"].size() == 1:
        return None
    ranks = mesh.mesh  # [pp, dp, tp] global ranks
    mine = None
    for d in range(ranks.shape[1]):
        for t in range(ranks.shape[2]):
            pair = [int(ranks[0, d, t]), int(ranks[-1, d, t])]
            group = dist.new_group(pair)
            if dist.get_rank() in pair:
                mine = group
    return mine


def _tied_weight(model: GLM) -> torch.Tensor:
    return model.word_embeddings.weight if model.word_embeddings is not None else model.output.weight


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def sync_tied_embedding(model: GLM, group: dist.ProcessGroup | None) -> None:
    """Copy the first stage's embedding into the last stage's output projection."""
    if group is None:
        return
    local = _local(_tied_weight(model))
    if model.word_embeddings is None:
        local.zero_()
    dist.all_reduce(local, group=group)


@torch.no_grad()
def reduce_tied_embedding_grads(model: GLM, group: dist.ProcessGroup | None) -> None:
    """Sum the embedding's gradient (first stage) and the output projection's (last stage)."""
    if group is not None:
        dist.all_reduce(_local(_tied_weight(model).grad), group=group)


@torch.no_grad()
def clip_grad_norm_(model: GLM, max_norm: float, pp_group: dist.ProcessGroup | None = None) -> float:
    """Clip all gradients to a global L2 norm of `max_norm`; returns the norm before clipping
    (reading it is the step's one host sync for the gradients).

    Without sequence parallelism the LayerNorm parameters are DTensors on the "dp" mesh only, the
    sharded matmul weights on ("dp", "tp"): torch's clip_grad_norm_ cannot stack norms of different
    meshes, so the squared norms are summed per mesh, then over pipeline stages (the last stage's
    copy of the tied embedding is not counted twice)."""
    from torch.nn.utils import get_total_norm

    by_mesh: dict = {}
    for name, p in model.named_parameters():
        if p.grad is not None and not (pp_group is not None and name == "output.weight"):
            by_mesh.setdefault(getattr(p.grad, "device_mesh", None), []).append(p.grad)
    squares = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    for grads in by_mesh.values():
        norm = get_total_norm(grads, foreach=True)
        squares += (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).double() ** 2
    if pp_group is not None:
        dist.all_reduce(squares, group=pp_group)
    total = float(squares.sqrt())
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1.0:
        by_mesh = {}
        for p in model.parameters():
            if p.grad is not None:
                by_mesh.setdefault(getattr(p.grad, "device_mesh", None), []).append(p.grad)
        for grads in by_mesh.values():
            torch._foreach_mul_(grads, coefficient)
    return total
