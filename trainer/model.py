"""GLM-130B's model, top to bottom (arXiv 2210.02414; THUDM/GLM-130B runs it through
SwissArmyTransformer's `GLM130B`, sat/model/official/glm130B_model.py).

- DeepNorm with GLM-130B's LayerNorm placement: every layer normalises its input (layer 0 too, so
  the embedding output is normalised), then

      a = input_layernorm(x);  h = alpha * a + attention(a)
      m = post_attention_layernorm(h);  out = alpha * m + mlp(m)

  and a final LayerNorm before the output projection: 2N + 1 LayerNorms, alpha = (2N)^0.5.
- Init: xavier-normal with gain beta = (2N)^-0.5 on the value, attention-output and FFN
  projections (gain 1 on query and key); the embedding normal with std sqrt(1 / (3h)) (0.0052 at
  h = 12288).
- Fused projections with GLM-130B's parameter names and layouts, so its checkpoints load
  (trainer/convert.py): `attention.query_key_value` is [heads x (q, k, v) x head_dim] rows, as
  SAT's view to [np, 3 * hn]; `mlp.dense_h_to_4h` holds both GeGLU halves, here interleaved per
  inner unit ([ffn x (value, gate)] rows) so that any tensor-parallel slice of rows holds matching
  halves (the converter reorders GLM-130B's [value; gate] halves). out = value * gelu(gate).
- 1-D rotary position embedding over the whole head dimension (rotate-half), driven by the shard's
  position_ids; tied input and output embeddings; logits and softmax in fp32.
- Embedding gradient shrink: emb * a + emb.detach() * (1 - a) with a = 0.1.

`layers` is a ModuleDict keyed by layer index, and `word_embeddings`, `final_layernorm` and `output`
may be None: a pipeline stage (trainer/parallelize.py) keeps only its own layers, under the same
parameter names as the whole model. Under tensor parallelism the projections return this rank's
slice of the heads and inner units, hence the `-1`s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.attention import AttentionMask, attend, build_mask
from trainer.config import ModelConfig


def deepnorm_constants(num_layers: int) -> tuple[float, float]:
    """(alpha, beta) of DeepNorm for a decoder of `num_layers` layers, as in GLM-130B."""
    return (2 * num_layers) ** 0.5, (2 * num_layers) ** -0.5


def embedding_init_std(hidden_size: int) -> float:
    """GLM-130B's embedding init: std sqrt(1 / (3h)) (0.0052 at h = 12288)."""
    return (1.0 / (3 * hidden_size)) ** 0.5


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
        self.query_key_value = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.query_key_value(x).view(B, T, -1, 3, self.head_dim).unbind(dim=3)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)  # [B, H, T, D]
        return self.dense(y.transpose(1, 2).reshape(B, T, -1))


class GeGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg.hidden_size, 2 * cfg.ffn_size)
        self.dense_4h_to_h = nn.Linear(cfg.ffn_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.dense_h_to_4h(x).unflatten(-1, (-1, 2)).unbind(dim=-1)
        return self.dense_4h_to_h(value * F.gelu(gate))


class Block(nn.Module):
    """GLM-130B's DeepNorm layer: normalise the input, then two scaled residual branches."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.alpha, _ = deepnorm_constants(cfg.num_layers)
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.attention = SelfAttention(cfg)
        self.post_attention_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.mlp = GeGLU(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        a = self.input_layernorm(x)
        m = self.post_attention_layernorm(self.alpha * a + self.dropout(self.attention(a, cos, sin, mask)))
        return self.alpha * m + self.dropout(self.mlp(m))


class GLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("ModelConfig.vocab_size must be resolved (from the shards) before building the model")
        self.cfg = cfg
        self.attention_backend = "naive"  # trainer.attention.BACKENDS; the trainer picks per device
        # True: the last stage returns the final LayerNorm's output and the trainer applies `output`
        # chunk by chunk inside its cross-entropy (trainer/train.py), never holding all the logits.
        self.defer_output = False
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.num_layers)})
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.output = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.output.weight = self.word_embeddings.weight  # tied (re-tied after tensor parallelization)
        head_dim = cfg.hidden_size // cfg.num_heads
        self.register_buffer("rope_cos", torch.empty(cfg.max_position, head_dim), persistent=False)
        self.register_buffer("rope_sin", torch.empty(cfg.max_position, head_dim), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Rotary tables, DeepNorm init and GLM-130B's embedding init. Run again after `to_empty`
        when built on the meta device (works on DTensor parameters too, so each rank initializes
        only its shard; a pipeline stage initializes the parts it holds)."""
        h = self.cfg.hidden_size
        cos, sin = rotary_tables(self.rope_cos.shape[1], self.cfg.max_position, self.cfg.rope_base)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)
        _, beta = deepnorm_constants(self.cfg.num_layers)
        if self.word_embeddings is not None:
            nn.init.normal_(self.word_embeddings.weight, std=embedding_init_std(h))
        elif self.output is not None:  # the last pipeline stage's copy of the tied embedding
            nn.init.normal_(self.output.weight, std=embedding_init_std(h))
        for block in self.layers.values():
            qkv, mlp = block.attention.query_key_value, block.mlp
            # xavier-normal of each h x h projection; the fused rows are [head, (q, k, v), head_dim].
            std = 2 ** 0.5 / (2 * h) ** 0.5
            gains = torch.tensor([1.0, 1.0, beta]).repeat_interleave(self.rope_cos.shape[1])
            nn.init.normal_(qkv.weight)
            _scale_rows_(qkv.weight, (std * gains).repeat(self.cfg.num_heads))
            for linear in (block.attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h):
                fan_out = linear.weight.shape[0] // (2 if linear is mlp.dense_h_to_4h else 1)
                nn.init.normal_(linear.weight, std=beta * (2 / (linear.weight.shape[1] + fan_out)) ** 0.5)
            for linear in (qkv, block.attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h):
                nn.init.zeros_(linear.bias)
            for norm in (block.input_layernorm, block.post_attention_layernorm):
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)
        if self.final_layernorm is not None:
            nn.init.ones_(self.final_layernorm.weight)
            nn.init.zeros_(self.final_layernorm.bias)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, segment_ids: torch.Tensor,
                prefix: torch.Tensor) -> torch.Tensor:
        """x: tokens [B, T] (or the previous pipeline stage's hidden states [B, T, h]); position_ids,
        segment_ids, prefix [B, T] -> fp32 logits [B, T, vocab] (or this stage's hidden states).
        The attention mask is built once here and shared by every layer."""
        mask = build_mask(segment_ids, prefix, self.attention_backend)
        if self.word_embeddings is not None:
            a = self.cfg.embedding_grad_shrink
            x = self.word_embeddings(x)
            x = x * a + x.detach() * (1 - a)  # GLM-130B: shrink the embedding gradient, not the value
        cos, sin = self.rope_cos[position_ids], self.rope_sin[position_ids]
        for block in self.layers.values():
            x = block(x, cos, sin, mask)
        if self.output is None:
            return x
        x = self.final_layernorm(x)
        return x if self.defer_output else self.output(x).float()  # softmax and cross-entropy in fp32, as GLM-130B

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # global sizes, also for sharded DTensors


def _scale_rows_(weight: torch.Tensor, row_scale: torch.Tensor) -> None:
    """Multiply row i of `weight` by row_scale[i]; on a DTensor sharded along rows (tensor and
    data parallel), each rank scales its own rows."""
    if not hasattr(weight, "to_local"):
        weight.mul_(row_scale[:, None].to(weight))
        return
    from torch.distributed.tensor import distribute_tensor

    local = distribute_tensor(row_scale[:, None].to(weight.device), weight.device_mesh, weight.placements,
                              src_data_rank=None).to_local()
    weight.to_local().mul_(local.to(weight.dtype))


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
