"""GLM-130B's model, top to bottom (arXiv 2210.02414, THUDM/GLM-130B).

- Post-LN with DeepNorm: x = LayerNorm(alpha * x + f(x)), alpha = (2N)^0.5, and xavier-normal init
  with gain beta = (2N)^-0.5 on the FFN, value and attention-output projections (N = layers).
- GeGLU feed-forward with an inner size of 8/3 hidden.
- 1-D rotary position embedding over the whole head dimension, driven by the shard's position_ids.
- Tied input and output embeddings; logits and softmax in fp32.
- Embedding gradient shrink: emb * a + emb.detach() * (1 - a) with a = 0.1.

Every projection is its own nn.Linear (q, k, v separate; GeGLU gate and up separate) so that tensor
parallelism can be applied from outside (trainer/parallelize.py) without knowing fused layouts.
Under tensor parallelism the projections return this rank's slice of the heads, hence the `-1`s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.attention import AttentionMask, attend
from trainer.config import ModelConfig


def deepnorm_constants(num_layers: int) -> tuple[float, float]:
    """(alpha, beta) of DeepNorm for a decoder of `num_layers` layers, as in GLM-130B."""
    return (2 * num_layers) ** 0.5, (2 * num_layers) ** -0.5


def rotary_tables(head_dim: int, max_position: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape [max_position, head_dim] (each frequency repeated for both halves)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_position, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, T, H, D]; cos, sin: [B, T, D] gathered at each token's position. Computed in fp32."""
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x32 * cos[:, :, None] + rotated * sin[:, :, None]).type_as(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.q = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        B, T, _ = x.shape
        q = apply_rotary(self.q(x).view(B, T, -1, self.head_dim), cos, sin)
        k = apply_rotary(self.k(x).view(B, T, -1, self.head_dim), cos, sin)
        v = self.v(x).view(B, T, -1, self.head_dim)
        y = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)  # [B, H, T, D]
        return self.out(y.transpose(1, 2).reshape(B, T, -1))


class GeGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.up = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.down = nn.Linear(cfg.ffn_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Post-LN DeepNorm block: x = LN(alpha*x + attn(x)); x = LN(alpha*x + ffn(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.alpha, _ = deepnorm_constants(cfg.num_layers)
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.ffn = GeGLU(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        x = self.attention_norm(self.alpha * x + self.dropout(self.attention(x, cos, sin, mask)))
        return self.ffn_norm(self.alpha * x + self.dropout(self.ffn(x)))


class GLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("ModelConfig.vocab_size must be resolved (from the shards) before building the model")
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.output = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.output.weight = self.embedding.weight  # tied (re-tied after tensor parallelization)
        head_dim = cfg.hidden_size // cfg.num_heads
        self.register_buffer("rope_cos", torch.empty(cfg.max_position, head_dim), persistent=False)
        self.register_buffer("rope_sin", torch.empty(cfg.max_position, head_dim), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Rotary tables and DeepNorm init. Run again after `to_empty` when built on the meta device
        (works on DTensor parameters too, so each rank initializes only its shard)."""
        cos, sin = rotary_tables(self.rope_cos.shape[1], self.cfg.max_position, self.cfg.rope_base)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)
        _, beta = deepnorm_constants(self.cfg.num_layers)
        nn.init.normal_(self.embedding.weight, std=0.02)
        for block in self.layers:
            a, f = block.attention, block.ffn
            for linear, gain in [(a.q, 1.0), (a.k, 1.0), (a.v, beta), (a.out, beta),
                                 (f.gate, beta), (f.up, beta), (f.down, beta)]:
                nn.init.xavier_normal_(linear.weight, gain=gain)
                nn.init.zeros_(linear.bias)
            for norm in (block.attention_norm, block.ffn_norm):
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)

    def forward(self, tokens: torch.Tensor, position_ids: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """tokens, position_ids: [B, T] -> fp32 logits [B, T, vocab]."""
        a = self.cfg.embedding_grad_shrink
        x = self.embedding(tokens)
        x = x * a + x.detach() * (1 - a)  # GLM-130B: shrink the embedding gradient, not the value
        cos, sin = self.rope_cos[position_ids], self.rope_sin[position_ids]
        for block in self.layers:
            x = block(x, cos, sin, mask)
        return self.output(x).float()  # softmax and cross-entropy in fp32, as GLM-130B

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # global sizes, also for sharded DTensors


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Model FLOPs for one trained token (forward + backward), PaLM's convention (arXiv 2204.02311, B):

        6 * N + 12 * L * h * T

    N = weights in matmuls: L * (4h^2 + 3h * ffn) + V * h (the tied output projection; the embedding
    lookup is free); 12 * L * h * T = scores and weighted sum over the T keys of a full (unmasked)
    sequence, forward and backward. Biases, norms, softmax and rotary are not counted.
    """
    h, L = cfg.hidden_size, cfg.num_layers
    n_matmul = L * (4 * h * h + 3 * h * cfg.ffn_size) + cfg.vocab_size * h
    return 6 * n_matmul + 12 * L * h * seq_len

