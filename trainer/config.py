"""Trainer presets: YAML files in configs/trainer/, validated against the dataclasses below.

The trainer runs on GPU machines that have no Spark or Beam, so it does not reuse pipeline.config;
this is a small validator of its own. Errors name the file, the dotted key and the expectation:

    configs/trainer/tiny.yaml: model.hidden_size: expected int, got 'sixty-four'
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names file, key and expectation."""


@dataclass
class ModelConfig:
    num_layers: int
    hidden_size: int
    num_heads: int
    # GeGLU inner size; null = 8/3 * hidden rounded up to a multiple of 128 (32768 for hidden 12288).
    ffn_hidden_size: Optional[int] = None
    # null = the shards' vocabulary padded up to a multiple of 128 * tensor (Megatron's padding).
    vocab_size: Optional[int] = None
    max_position: int = 2048  # longest sequence the rotary tables are built for
    dropout: float = 0.0  # hidden dropout after attention and FFN (GLM-130B: 0.1)
    embedding_grad_shrink: float = 0.1  # GLM-130B alpha: emb*a + emb.detach()*(1-a)
    layernorm_eps: float = 1e-5
    rope_base: float = 10000.0

    @property
    def ffn_size(self) -> int:
        return self.ffn_hidden_size or 128 * math.ceil(self.hidden_size * 8 / 3 / 128)


@dataclass
class ParallelConfig:
    tensor: int = 1  # tensor-parallel degree; data parallel (FSDP2) = world size / (tensor x pipeline)
    pipeline: int = 1  # pipeline stages (1F1B); each rank's micro-batches per step must be >= this
    # none | selective (every other block recomputed) | full (every block)
    activation_checkpointing: Literal["none", "selective", "full"] = "none"
    # Reduce-scatter gradients after every micro-batch instead of the last one only: no unsharded
    # gradient is held between micro-batches (large presets without pipeline parallelism).
    reduce_every_micro_batch: bool = False
    # With tensor > 1: LayerNorms, dropout and the residual stream on 1/tensor of the sequence
    # (Megatron's sequence parallelism): activations outside attention and MLP shrink by tensor.
    sequence_parallel: bool = False
    attention: Literal["auto", "flex", "sdpa", "naive"] = "auto"  # auto: flex on CUDA, naive on CPU
    compile: bool = False  # torch.compile each block (GPU)


@dataclass
class TrainConfig:
    seed: int = 1234
    micro_batch_size: int = 1  # sequences per rank per forward/backward
    global_batch_size: int = 8  # sequences per optimizer step after ramp-up
    rampup_start_batch_size: Optional[int] = None  # null = no ramp-up (GLM-130B: 192 -> 4224)
    rampup_samples: int = 0  # samples over which the batch grows linearly (GLM-130B: first 2.5%)
    max_steps: int = 100
    lr: float = 3e-4
    min_lr: float = 3e-5  # cosine floor (GLM-130B decayed 8e-5 -> 8e-6)
    # The schedule counts samples (Megatron's lr-warmup-samples / lr-decay-samples), so it keeps
    # its shape under the batch ramp-up: linear warmup over warmup_samples, then cosine to min_lr
    # at lr_decay_samples (null = the samples max_steps steps consume, ramp-up included).
    warmup_samples: int = 80
    lr_decay_samples: Optional[int] = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on CUDA; CPU always runs fp32
    # Tokens per chunk of the output projection + cross-entropy (each chunk's fp32 logits recomputed
    # in backward); 0 = the whole micro-batch's logits at once.
    cross_entropy_chunk: int = 0
    # Loss-spike guard: skip the step when loss or grad norm is non-finite, or above
    # spike_factor x its running mean (after spike_warmup_steps steps of history).
    spike_factor: float = 3.0
    spike_warmup_steps: int = 20
    spike_ema: float = 0.98


@dataclass
class CheckpointConfig:
    interval: int = 1000  # steps between checkpoints (also one at the last step); 0 = none
    keep: int = 2  # newest complete checkpoints kept


@dataclass
class LoggingConfig:
    interval: int = 10  # steps between log lines
    tensorboard: bool = True  # when the tensorboard package is installed
    peak_tflops: Optional[float] = None  # per device, for MFU; null = looked up from the device name


@dataclass
class Config:
    model: ModelConfig
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return "null" if tp is type(None) else tp.__name__


def _build(tp: Any, value: Any, key: str, where: str) -> Any:
    """`value` checked against `tp` (dataclass, Literal, Optional, int, float, bool, str)."""
    fail = ConfigError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        def child(name: str) -> str:
            return f"{key}.{name}" if key else name

        for name in value:
            if name not in fields:
                raise ConfigError(f"{where}: {child(name)}: unknown key; expected one of {', '.join(fields)}")
        missing = [n for n, f in fields.items() if n not in value
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{where}: {child(missing[0])}: required key is missing")
        return tp(**{n: _build(hints[n], v, child(n), where) for n, v in value.items()})
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _build(option, value, key, where)
            except ConfigError:
                pass
        raise fail
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise fail
        return value
    if tp is type(None):
        if value is not None:
            raise fail
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise fail
    return value


def _check(cfg: Config, where: str) -> None:
    """Relations between keys that types alone cannot express."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    rules = [
        (m.hidden_size % m.num_heads == 0, "model.num_heads", f"a divisor of hidden_size {m.hidden_size}"),
        ((m.hidden_size // m.num_heads) % 2 == 0, "model.num_heads", "heads with an even size (rotary pairs)"),
        (m.num_heads % p.tensor == 0, "parallel.tensor", f"a divisor of num_heads {m.num_heads}"),
        (m.ffn_size % p.tensor == 0, "parallel.tensor", f"a divisor of the FFN size {m.ffn_size}"),
        (m.vocab_size is None or m.vocab_size % p.tensor == 0, "model.vocab_size", "a multiple of parallel.tensor"),
        (0.0 <= m.dropout < 1.0, "model.dropout", "a probability in [0, 1)"),
        (0.0 < m.embedding_grad_shrink <= 1.0, "model.embedding_grad_shrink", "a value in (0, 1]"),
        (t.global_batch_size % t.micro_batch_size == 0, "train.global_batch_size",
         f"a multiple of micro_batch_size {t.micro_batch_size}"),
        (t.rampup_start_batch_size is None or 0 < t.rampup_start_batch_size <= t.global_batch_size,
         "train.rampup_start_batch_size", "between 1 and global_batch_size"),
        (-2**63 <= t.seed < 2**63, "train.seed", "a 64-bit signed integer"),
        (t.warmup_samples >= 0, "train.warmup_samples", "at least 0"),
        (t.cross_entropy_chunk >= 0, "train.cross_entropy_chunk", "0 (off) or a positive number of tokens"),
        (t.lr_decay_samples is None or t.lr_decay_samples > t.warmup_samples, "train.lr_decay_samples",
         "above warmup_samples"),
        (p.tensor >= 1 and p.pipeline >= 1, "parallel", "tensor and pipeline of at least 1"),
        (p.pipeline <= m.num_layers, "parallel.pipeline", f"at most num_layers {m.num_layers}"),
        (t.min_lr <= t.lr, "train.min_lr", "at most lr"),
        (t.spike_factor > 1.0, "train.spike_factor", "above 1"),
    ]
    for ok, key, expectation in rules:
        if not ok:
            raise ConfigError(f"{where}: {key}: expected {expectation}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a preset; `overrides` maps dotted keys to values (from the command line)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    cfg = _build(Config, data, "", str(path))
    _check(cfg, str(path))
    return cfg
