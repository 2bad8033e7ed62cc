"""Parallelism applied to the GLM from outside the model, as torchtitan does.

Device mesh ("dp", "tp"):
- tensor parallel (Megatron's layout, with DTensor's parallelize_module): q, k, v and the GeGLU gate
  and up projections column-parallel (each rank holds a slice of the heads / inner units), attention
  output and FFN down projection row-parallel (one all-reduce after each), the embedding
  vocabulary-parallel, and the tied output projection vocabulary-parallel with its logits left
  sharded for a vocabulary-parallel cross-entropy (`loss_parallel`).
- data parallel on top: FSDP2 (`fully_shard` per block and at the root, sharding parameters,
  gradients and optimizer state over "dp"). It is applied whenever there is more than one process,
  even over a "dp" of one rank: then every parameter is a DTensor on the same mesh, gradient
  clipping and checkpointing see one kind of tensor, and `to_empty` keeps the embedding tie.
- optional activation checkpointing of every block.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from trainer.config import ConfigError, ParallelConfig
from trainer.model import GLM


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def init_distributed(device: torch.device) -> None:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def build_mesh(cfg: ParallelConfig, device: torch.device) -> DeviceMesh | None:
    _, size = world()
    if size == 1:
        return None
    if size % cfg.tensor:
        raise ConfigError(f"parallel.tensor: expected a divisor of the world size {size}, got {cfg.tensor}")
    return init_device_mesh(device.type, (size // cfg.tensor, cfg.tensor), mesh_dim_names=("dp", "tp"))


def apply_tensor_parallel(model: GLM, tp_mesh: DeviceMesh) -> None:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                   parallelize_module)

    parallelize_module(model, tp_mesh, {
        "embedding": RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
        "output": ColwiseParallel(output_layouts=Shard(-1), use_local_output=False),
    })
    # Each style distributed its own copy of the tied weight: keep the embedding's (both Shard(0)).
    model.output.weight = model.embedding.weight
    for block in model.layers:
        parallelize_module(block, tp_mesh, {
            "attention.q": ColwiseParallel(), "attention.k": ColwiseParallel(),
            "attention.v": ColwiseParallel(), "attention.out": RowwiseParallel(),
            "ffn.gate": ColwiseParallel(), "ffn.up": ColwiseParallel(), "ffn.down": RowwiseParallel(),
        })


def apply_activation_checkpointing(model: GLM) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.layers):
        model.layers[i] = checkpoint_wrapper(block, preserve_rng_state=True)


def parallelize(model: GLM, cfg: ParallelConfig, mesh: DeviceMesh | None) -> GLM:
    """Apply TP, activation checkpointing, compilation and FSDP2 in place (torchtitan's order)."""
    if mesh is not None and mesh["tp"].size() > 1:
        apply_tensor_parallel(model, mesh["tp"])
    if cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    if cfg.compile:
        for block in model.layers:
            block.compile()
    if mesh is not None:
        from torch.distributed.fsdp import fully_shard

        for block in model.layers:
            fully_shard(block, mesh=mesh["dp"])
        fully_shard(model, mesh=mesh["dp"])
    return model


@torch.no_grad()
def clip_grad_norm_(model: GLM, max_norm: float) -> float:
    """Clip all gradients to a global L2 norm of `max_norm`; returns the norm before clipping.

    Without sequence parallelism the LayerNorm parameters are DTensors on the "dp" mesh only, the
    sharded matmul weights on ("dp", "tp"): torch's clip_grad_norm_ cannot stack norms of different
    meshes, so the squared norms are summed per mesh and combined here."""
    from torch.nn.utils import get_total_norm

    by_mesh: dict = {}
    for p in model.parameters():
        if p.grad is not None:
            by_mesh.setdefault(getattr(p.grad, "device_mesh", None), []).append(p.grad)
    squares = 0.0
    for grads in by_mesh.values():
        norm = get_total_norm(grads, foreach=True)
        squares += float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm) ** 2
    total = squares ** 0.5
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1.0:
        for grads in by_mesh.values():
            torch._foreach_mul_(grads, coefficient)
    return total
