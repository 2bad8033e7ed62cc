"""Train the GLM on blank-infilling shards.

    torchrun --nproc-per-node 8 -m trainer.train --config configs/trainer/1b.yaml --data <shards>
    glmtrain --config configs/trainer/tiny.yaml --data <shards>          (one process)

One optimizer step: take this rank's slice of the next global batch (its size follows the ramp-up),
run its micro-batches forward and backward (one after the other, or through the 1F1B pipeline
schedule when parallel.pipeline > 1) in bf16 (fp32 master weights and AdamW state),
normalize by the loss tokens of the whole global batch (so any split over ranks and micro-batches
gives the same gradient), clip, ask the loss-spike guard, then step or skip. The step reads the
device once (loss, gradient norm and statistics together), never per micro-batch. The run
folder (--out) holds checkpoints/, log.jsonl and tensorboard/; a run restarted with the same --out
resumes from its newest complete checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

from trainer.attention import resolve_backend
from trainer.checkpoint import load_latest_good_checkpoint, save_checkpoint
from trainer.config import Config, ConfigError, load_config
from trainer.data import RankBatches
from trainer.metrics import RunLogger, mfu, peak_tflops
from trainer.model import GLM, flops_per_token
from trainer.parallelize import (build_mesh, clip_grad_norm_, dropout_stream, embedding_group, init_distributed,
                                 parallelize, reduce_tied_embedding_grads, sync_tied_embedding, world)
from trainer.schedule import global_batch_size, learning_rate, run_samples
from trainer.shard_format import IGNORE, ShardDataset, ShardFormatError
from trainer.spike_guard import SpikeGuard

VOCAB_MULTIPLE = 128  # Megatron's make-vocab-size-divisible-by, times the tensor-parallel degree


def resolve_vocab_size(cfg: Config, shards_vocab: int) -> int:
    unit = VOCAB_MULTIPLE * cfg.parallel.tensor
    if cfg.model.vocab_size is None:
        return math.ceil(shards_vocab / unit) * unit
    if cfg.model.vocab_size < shards_vocab:
        raise ConfigError(f"model.vocab_size: expected at least the shards' vocabulary {shards_vocab}, "
                          f"got {cfg.model.vocab_size}")
    return cfg.model.vocab_size


def build_model(cfg: Config, mesh, device: torch.device, on_meta: bool, attention: str = "naive") -> GLM:
    """Without `on_meta` (CPU) the full model is initialized on every rank from the same seed, so
    runs of any layout are exactly comparable; with it (CUDA) the model is built on the meta device,
    parallelized (a pipeline stage keeps only its layers), and each rank then initializes only its
    own shards (models larger than one GPU). Either way the last pipeline stage's copy of the tied
    embedding is then set equal to the first stage's."""
    torch.manual_seed(cfg.train.seed)
    mixed_precision = device.type == "cuda" and cfg.train.precision == "bf16"
    if not on_meta:
        model = parallelize(GLM(cfg.model).to(device), cfg.parallel, mesh, mixed_precision)
    else:
        with torch.device("meta"):
            model = GLM(cfg.model)
        parallelize(model, cfg.parallel, mesh, mixed_precision)
        model.to_empty(device=device)
        if model.word_embeddings is not None and model.output is not None:
            model.output.weight = model.word_embeddings.weight  # to_empty re-creates plain parameters
        model.init_weights()
    model.attention_backend = attention
    model.defer_output = cfg.train.cross_entropy_chunk > 0
    sync_tied_embedding(model, embedding_group(mesh))
    return model


def build_optimizer(model: GLM, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW on the fp32 parameters (the fused kernel on CUDA); weight decay on matrices only (not
    biases, LayerNorms), as Megatron and GLM-130B."""
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": t.weight_decay},
                              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                             lr=t.lr, betas=(t.beta1, t.beta2), eps=t.adam_eps, fused=device.type == "cuda")


def token_losses(logits: torch.Tensor, targets: torch.Tensor, tp_mesh=None) -> torch.Tensor:
    """fp32 cross-entropy per position, [B, T], 0 where targets == -100. Under tensor parallelism
    (`tp_mesh`) the logits are this rank's vocabulary slice and the caller runs inside
    `loss_parallel()`: the softmax is computed across the slices without gathering them."""
    if tp_mesh is not None:
        from torch.distributed.tensor import DTensor, Shard

        logits = DTensor.from_local(logits, tp_mesh, [Shard(-1)])
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE, reduction="none")
    if hasattr(losses, "full_tensor"):
        losses = losses.full_tensor()
    return losses.view(targets.shape)


def chunked_token_losses(hidden: torch.Tensor, output: torch.nn.Module, targets: torch.Tensor, chunk: int,
                         tp_mesh=None) -> torch.Tensor:
    """token_losses of output(hidden), `chunk` tokens at a time: each chunk's fp32 logits (vocabulary-
    sliced under tensor parallelism) are freed after its loss and recomputed in backward, so the
    memory for logits is one chunk's, not the micro-batch's (150k-word vocabularies)."""
    from torch.utils.checkpoint import checkpoint

    def chunk_losses(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return token_losses(output(h).float(), t, tp_mesh)

    flat_hidden, flat_targets = hidden.flatten(0, 1), targets.flatten()
    parts = [checkpoint(chunk_losses, flat_hidden[i:i + chunk], flat_targets[i:i + chunk], use_reentrant=False)
             for i in range(0, flat_targets.numel(), chunk)]
    return torch.cat(parts).view(targets.shape)


class Trainer:
    def __init__(self, cfg: Config, data: str, out: Path, device: torch.device, verify_shards: bool = True):
        self.cfg, self.out, self.device = cfg, out, device
        self.rank, self.world_size = world()
        self.dataset = ShardDataset(data, verify=verify_shards)
        if len(self.dataset) == 0:  # a valid manifest: what the shards stage writes when no document is valid
            raise ShardFormatError(f"{data}: the shards hold no sequences, nothing to train on (did the shards "
                                   f"stage keep no document?)")
        if self.dataset.seq_len > cfg.model.max_position:
            raise ConfigError(f"model.max_position: expected at least the shards' seq_len {self.dataset.seq_len}, "
                              f"got {cfg.model.max_position}")
        cfg.model.vocab_size = resolve_vocab_size(cfg, self.dataset.vocab_size)
        self.attention = resolve_backend(cfg.parallel.attention, device)
        if self.attention == "flex" and device.type != "cuda":
            raise ConfigError("parallel.attention: expected auto, naive or sdpa on CPU (FlexAttention has no CPU "
                              "backward), got 'flex'")
        self.mesh = build_mesh(cfg.parallel, device)
        mesh = self.mesh
        self.tp_mesh = mesh["tp"] if mesh is not None and mesh["tp"].size() > 1 else None
        self.dp_rank = mesh["dp"].get_local_rank() if mesh is not None else 0
        self.dp_size = mesh["dp"].size() if mesh is not None else 1
        self.pp_size = mesh["pp"].size() if mesh is not None else 1
        self.pp_rank = mesh["pp"].get_local_rank() if mesh is not None else 0
        self.pp_group = mesh["pp"].get_group() if self.pp_size > 1 else None
        self.is_last_stage = self.pp_rank == self.pp_size - 1
        min_micro_batches = (cfg.train.rampup_start_batch_size or cfg.train.global_batch_size) // (
            cfg.train.micro_batch_size * self.dp_size)
        if min_micro_batches < self.pp_size:
            raise ConfigError(f"train.micro_batch_size: expected each data-parallel rank to run at least "
                              f"{self.pp_size} micro-batches per step (the pipeline stages), got {min_micro_batches}")
        self.model = build_model(cfg, mesh, device, on_meta=device.type == "cuda", attention=self.attention)
        self.embedding_group = embedding_group(mesh)
        self.optimizer = build_optimizer(self.model, cfg, device)
        self.decay_samples = run_samples(cfg.train, self.dp_size)
        self.schedules: dict = {}  # pipeline schedule per micro-batch count (the ramp-up changes it)
        self.batches = RankBatches(self.dataset, cfg.train.seed, self.dp_rank, self.dp_size, device)
        self.guard = SpikeGuard(cfg.train.spike_factor, cfg.train.spike_warmup_steps, cfg.train.spike_ema)
        self.languages = self.dataset.languages
        self.flops_per_token = flops_per_token(cfg.model, self.dataset.seq_len)
        self.peak_tflops = peak_tflops(device, cfg.logging.peak_tflops)
        # bf16 compute: FSDP2's mixed precision under torchrun (bf16 parameters, so activations and
        # the residual stream are bf16 too), autocast over fp32 parameters in a single process.
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
                                       and cfg.train.precision == "bf16" and mesh is None)
        self.step = 0
        self.dropout_seed = cfg.train.seed + 1 + dropout_stream(mesh, cfg.parallel)
        torch.manual_seed(self.dropout_seed)
        self.logger = RunLogger(out, cfg.train.max_steps, enabled=self.rank == 0, tensorboard=cfg.logging.tensorboard)
        self._resume()

    def _resume(self) -> None:
        loaded = load_latest_good_checkpoint(self.out / "checkpoints", self.model, self.optimizer,
                                             self.dropout_seed, warn=self.logger.message)
        if loaded is None:
            return
        folder, state = loaded
        self.step = state["step"]
        self.batches.load_state_dict(state["data"])
        self.guard.load_state_dict(state["spike_guard"])
        self.logger.message(f"resumed from {folder} (step {self.step}, "
                            f"{self.batches.consumed_samples} samples consumed)")

    def _loss_context(self):
        """Vocabulary-parallel cross-entropy under tensor parallelism (forward and backward)."""
        if self.tp_mesh is None:
            return contextlib.nullcontext()
        from torch.distributed.tensor.parallel import loss_parallel
        return loss_parallel()

    def _token_losses(self, model_output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token losses from the model's logits, or from its final hidden states when the output
        projection is deferred to the chunked cross-entropy."""
        chunk = self.cfg.train.cross_entropy_chunk
        if not chunk:
            return token_losses(model_output.float(), targets, self.tp_mesh)
        with self.autocast:  # the projection in bf16 on CUDA; the softmax and loss in fp32 regardless
            return chunked_token_losses(model_output, self.model.output, targets, chunk, self.tp_mesh)

    def _dp_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.mesh is not None and self.dp_size > 1:
            dist.all_reduce(t, group=self.mesh["dp"].get_group())
        return t

    def _add_loss_stats(self, stats: torch.Tensor, losses: torch.Tensor, targets: torch.Tensor,
                        langs: torch.Tensor) -> None:
        """Loss sum and tokens, overall and per language, without reading the device."""
        with torch.no_grad():
            n_langs = len(self.languages)
            has_loss = targets != IGNORE
            stats[0] += losses.sum()
            stats[1] += has_loss.sum()
            known = (has_loss & (langs >= 0)).flatten()
            index = langs.clamp(min=0).flatten()
            stats[3:3 + n_langs].index_add_(0, index, (losses.flatten() * known).double())
            stats[3 + n_langs:].index_add_(0, index, known.double())

    def _sequential_micro_batches(self, micro_batches: list[dict], scale: torch.Tensor, stats: torch.Tensor) -> None:
        reduce_each = self.cfg.parallel.reduce_every_micro_batch
        for i, mb in enumerate(micro_batches):
            if hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter now or on the last
                self.model.set_requires_gradient_sync(reduce_each or i == len(micro_batches) - 1)
            with self._loss_context():
                with self.autocast:
                    logits = self.model(mb["tokens"], mb["position_ids"], mb["segment_ids"], mb["prefix"])
                losses = self._token_losses(logits, mb["targets"])
                (losses.sum() * scale).backward()
            self._add_loss_stats(stats, losses, mb["targets"], mb["langs"])

    def _pipelined_micro_batches(self, micro_batches: list[dict], scale: torch.Tensor, stats: torch.Tensor) -> None:
        """The 1F1B schedule over this rank's micro-batches; the last stage computes the loss."""
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B

        n = len(micro_batches)
        if n not in self.schedules:
            stage = PipelineStage(self.model, self.pp_rank, self.pp_size, self.device, group=self.pp_group)
            self.schedules[n] = Schedule1F1B(stage, n, loss_fn=self._pipeline_loss, scale_grads=False)
        batch = {k: torch.cat([mb[k] for mb in micro_batches]) for k in micro_batches[0]}
        self._loss_scale, self._loss_calls = scale, []
        inputs = (batch["tokens"],) if self.pp_rank == 0 else ()
        with self._loss_context(), self.autocast:
            self.schedules[n].step(*inputs, target=torch.stack([batch["targets"], batch["langs"]], dim=-1),
                                   position_ids=batch["position_ids"], segment_ids=batch["segment_ids"],
                                   prefix=batch["prefix"])
        # A new schedule first calls the loss once to infer shapes: only the last n calls are the batch.
        for losses, targets, langs in self._loss_calls[len(self._loss_calls) - n:]:
            self._add_loss_stats(stats, losses, targets, langs)
        reduce_tied_embedding_grads(self.model, self.embedding_group)

    def _pipeline_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        targets, langs = target.unbind(dim=-1)
        losses = self._token_losses(logits, targets)
        self._loss_calls.append((losses.detach(), targets, langs))
        return losses.sum() * self._loss_scale

    def train_step(self) -> dict:
        """One optimizer step (or a skipped one); returns the step's record for the logs."""
        batch_size = global_batch_size(self.batches.consumed_samples, self.cfg.train, self.dp_size)
        lr = learning_rate(self.batches.consumed_samples, self.cfg.train, self.decay_samples)
        micro_batches = self.batches.next_global_batch(batch_size, self.cfg.train.micro_batch_size)
        n_langs = len(self.languages)
        # [loss sum, loss tokens, real tokens, per-language loss sums..., per-language loss tokens...]
        stats = torch.zeros(3 + 2 * n_langs, dtype=torch.float64, device=self.device)
        loss_tokens = self._dp_sum(sum((mb["targets"] != IGNORE).sum() for mb in micro_batches).double())
        # FSDP2 averages gradients over "dp"; the loss is already a mean over the whole global batch.
        scale = (self.dp_size / loss_tokens.clamp(min=1)).float()
        if self.pp_size > 1:
            self._pipelined_micro_batches(micro_batches, scale, stats)
        else:
            self._sequential_micro_batches(micro_batches, scale, stats)
        if self.is_last_stage:
            stats[2] += sum((mb["segment_ids"] != 0).sum() for mb in micro_batches)
        grad_norm = clip_grad_norm_(self.model, self.cfg.train.grad_clip, self.pp_group)
        stats = self._dp_sum(stats)
        if self.pp_group is not None:  # the loss lives on the last stage
            dist.all_reduce(stats, group=self.pp_group)
        stats = stats.tolist()
        loss = stats[0] / max(stats[1], 1)
        skipped = self.guard.check(loss, grad_norm)
        if not skipped:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        by_lang = {name: stats[3 + i] / stats[3 + n_langs + i]
                   for i, name in enumerate(self.languages) if stats[3 + n_langs + i] > 0}
        return {"step": self.step, "loss": loss, "loss_by_lang": by_lang, "grad_norm": grad_norm, "lr": lr,
                "batch_size": batch_size, "tokens": int(stats[2]), "consumed_samples": self.batches.consumed_samples,
                "skipped": skipped}

    def save(self) -> None:
        save_checkpoint(self.out / "checkpoints", self.step, self.model, self.optimizer,
                        {"data": self.batches.state_dict(), "spike_guard": self.guard.state_dict()},
                        keep=self.cfg.checkpoint.keep)

    def run(self) -> None:
        t = self.cfg.train
        every = self.cfg.checkpoint.interval
        self.logger.message(
            f"GLM {self.model.num_params() / 1e6:.1f}M parameters on {self.world_size} process(es) "
            f"(pipeline {self.pp_size} x tensor {self.cfg.parallel.tensor} x data {self.dp_size}), "
            f"attention {self.attention}, "
            f"{len(self.dataset)} sequences of {self.dataset.seq_len}, steps {self.step}->{t.max_steps}")
        window_start, window_positions = time.perf_counter(), 0
        while self.step < t.max_steps:
            record = self.train_step()
            window_positions += record["batch_size"] * self.dataset.seq_len
            if record["skipped"] or self.step % self.cfg.logging.interval == 0 or self.step == t.max_steps:
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - window_start
                record["tokens_per_s"] = window_positions / elapsed
                record["mfu"] = mfu(record["tokens_per_s"], self.flops_per_token, self.world_size, self.peak_tflops)
                self.logger.log(record)
                window_start, window_positions = time.perf_counter(), 0
            if every and (self.step % every == 0 or self.step == t.max_steps):
                self.save()
        self.logger.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="glmtrain", description="Train the GLM on blank-infilling shards (one process, or under torchrun).",
        epilog="Example: torchrun --nproc-per-node 8 -m trainer.train --config configs/trainer/1b.yaml "
               "--data work/demo/shards --out runs/1b. Before a launch, `glmtrain plan --config X --gpus N "
               "--gpu h100-80` prints the per-GPU memory and traffic (glmtrain plan --help).")
    parser.add_argument("--config", required=True, help="trainer preset, e.g. configs/trainer/tiny.yaml")
    parser.add_argument("--data", required=True, help="shards folder (manifest.json + shard-*.arrow)")
    parser.add_argument("--out", help="run folder for checkpoints, log.jsonl, tensorboard/ (default runs/<preset>); "
                                      "an existing run there is resumed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.max_steps=20 (repeatable)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto: CUDA when available")
    parser.add_argument("--no-verify-shards", dest="verify_shards", action="store_false",
                        help="skip the sha256 check of each shard (by default every shard is checked against "
                             "the manifest when first opened)")
    return parser.parse_args(argv)


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair}: expected KEY=VALUE, e.g. train.max_steps=20")
        overrides[key] = yaml.safe_load(value)
    return overrides


def pick_device(choice: str) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but this PyTorch sees no CUDA device")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)
    return device


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:
        from trainer.plan import main as plan_main

        return plan_main(argv[1:])
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, parse_overrides(args.set))
        device = pick_device(args.device)
        init_distributed(device)
        out = Path(args.out or Path("runs") / Path(args.config).stem)
        Trainer(cfg, args.data, out, device, verify_shards=args.verify_shards).run()
    except (ConfigError, ShardFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
