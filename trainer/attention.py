"""GLM blank-infilling attention: token i sees token j when both are in the same segment and
(j is in Part A, or j <= i). Part A is bidirectional, Part B causal, packed samples isolated.

Backends (one mask object per batch, built once and shared by every layer):
- flex: FlexAttention with a block mask, so fully masked blocks (other segments, the upper triangle
  of Part B) are skipped; compiled once on first use. The default on CUDA.
- sdpa: scaled_dot_product_attention with a dense boolean mask (memory-efficient kernel on CUDA).
- naive: scores, mask and softmax written out in fp32. The default on CPU, and the reference.
The fused kernels keep the softmax statistics in fp32 themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

BACKENDS = ("flex", "sdpa", "naive")


def visibility(segment_ids: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """[B, T] segment ids and Part-A flags -> [B, T(query), T(key)] bool, True where i may see j."""
    T = segment_ids.shape[-1]
    same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return same_segment & (prefix[:, None, :].bool() | causal)


@dataclass
class AttentionMask:
    backend: str
    dense: Optional[torch.Tensor] = None  # [B, 1, T, T] bool (sdpa, naive)
    block: Any = None  # torch.nn.attention.flex_attention.BlockMask (flex)


def resolve_backend(name: str, device: torch.device) -> str:
    if name == "auto":
        return "flex" if device.type == "cuda" else "naive"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected auto or one of {', '.join(BACKENDS)}")
    return name


def build_mask(segment_ids: torch.Tensor, prefix: torch.Tensor, backend: str) -> AttentionMask:
    if backend != "flex":
        return AttentionMask(backend, dense=visibility(segment_ids, prefix)[:, None])
    from torch.nn.attention.flex_attention import create_block_mask

    segment_ids, part_a = segment_ids.int(), prefix.bool()

    def glm_mask(b, h, q_idx, kv_idx):
        return (segment_ids[b, q_idx] == segment_ids[b, kv_idx]) & (part_a[b, kv_idx] | (kv_idx <= q_idx))

    B, T = segment_ids.shape
    # Compiled on CUDA: the block mask is computed by one fused kernel, not materialised eagerly.
    return AttentionMask(backend, block=create_block_mask(glm_mask, B, None, T, T, device=segment_ids.device,
                                                          _compile=segment_ids.device.type == "cuda"))


_compiled_flex = None


def _flex_attention(q, k, v, block_mask):
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type != "cuda" or torch.compiler.is_compiling():
        # Inside a compiled block Dynamo fuses it anyway; on CPU the unfused eager path (forward
        # only) lets the tests check the mask.
        return flex_attention(q, k, v, block_mask=block_mask)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """q, k, v: [B, H, T, D] -> [B, H, T, D]."""
    if mask.backend == "flex":
        return _flex_attention(q, k, v, mask.block)
    if mask.backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense)
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask.dense, float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).type_as(q)
