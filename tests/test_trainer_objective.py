"""The GLM objective as the trainer consumes it, in one process on CPU: packed shard rows through the
whole model leak nothing the attention rule hides, the loss is the token mean over Part B targets of
the whole global batch, and micro-batches accumulate to the gradients of one large batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from test_trainer import TINY
from trainer.config import ModelConfig, load_config
from trainer.data import TORCH_DTYPES
from trainer.model import GLM
from trainer.shard_format import IGNORE, SEQ_COLUMNS, ShardDataset

SEQ_LEN, VOCAB = 64, 500


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The GLM objective's packing of random documents of 5..120 tokens, the stream ending 20 tokens
    short of the plan's last sequence (so that one is partial, with padding)."""
    from pipeline.glm_objective import GLMObjective, build_sequences
    from tokenizer.special_tokens import EOS, NUM_SPECIAL
    from trainer.shard_format import write_manifest, write_shard

    folder = tmp_path_factory.mktemp("objective_shards")
    rng = np.random.default_rng(0)
    stream = np.concatenate([np.append(rng.integers(NUM_SPECIAL, VOCAB, n), EOS) for n in rng.integers(5, 120, 60)])
    plan = GLMObjective(seq_len=SEQ_LEN, mask_sample_len=SEQ_LEN // 4).plan(rng, 40)
    n = min(len(stream), plan.total_tokens() - 20)
    columns, kinds, _ = build_sequences(plan, stream[:n].astype(np.int32), np.zeros(n, dtype=np.int8), rng)
    entry = write_shard(str(folder / "shard-00000.arrow"), columns, kinds)
    write_manifest(str(folder), {"seq_len": SEQ_LEN, "vocab_size": VOCAB, "languages": ["en"], "shards": [entry]})
    return folder


def as_batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {c: torch.from_numpy(np.stack([r[c] for r in rows])).to(TORCH_DTYPES[c]) for c in SEQ_COLUMNS}


def test_each_token_is_influenced_by_exactly_the_tokens_the_rule_lets_it_see(shards):
    """Change one input token at a time and see which logits move: Part A bidirectional, Part B
    causal (no Part B token sees a later one), samples packed in one row isolated, padding unseen."""
    dataset = ShardDataset(str(shards))
    rows = {r["kind"]: r for r in (dataset[i] for i in range(len(dataset) - 1))}
    rows["padded"] = dataset[len(dataset) - 1]
    assert (rows["padded"]["segment_ids"] == 0).any() and rows["MASK"]["segment_ids"].max() > 1
    torch.manual_seed(0)
    model = GLM(ModelConfig(num_layers=2, hidden_size=32, num_heads=4, vocab_size=VOCAB, max_position=SEQ_LEN))
    for name, row in rows.items():
        b = as_batch([row])
        with torch.no_grad():
            base = model(b["tokens"], b["position_ids"], b["segment_ids"], b["prefix"])[0]
            moved = torch.zeros(SEQ_LEN, SEQ_LEN, dtype=torch.bool)  # [i, j]: changing token j moves logits i
            for j in range(SEQ_LEN):
                tokens = b["tokens"].clone()
                tokens[0, j] = (tokens[0, j] + 1) % VOCAB
                out = model(tokens, b["position_ids"], b["segment_ids"], b["prefix"])[0]
                moved[:, j] = (out - base).abs().amax(dim=-1) > 1e-6
        seg, part_a = b["segment_ids"][0], b["prefix"][0]
        i, j = torch.meshgrid(torch.arange(SEQ_LEN), torch.arange(SEQ_LEN), indexing="ij")
        may_see = (seg[i] == seg[j]) & (part_a[j] | (j <= i))
        real = seg != 0
        assert torch.equal(moved[real], may_see[real]), name
        assert not moved[real][:, ~real].any(), name  # no real token sees padding


def tiny_trainer(shards: Path, out: Path, micro_batch_size: int):
    """The tiny preset without dropout or ramp-up (global batches of 8), and its first global batch."""
    from trainer.train import Trainer

    cfg = load_config(TINY, {"train.micro_batch_size": micro_batch_size, "model.dropout": 0.0,
                             "train.rampup_start_batch_size": None, "checkpoint.interval": 0})
    trainer = Trainer(cfg, str(shards), out, torch.device("cpu"))
    return trainer, as_batch([trainer.dataset[i] for i in trainer.batches.rank_indices(8)])


def step_gradients(trainer) -> tuple[dict, dict[str, torch.Tensor]]:
    """One train_step: its record and the gradients the optimizer stepped with."""
    grads = {}
    step = trainer.optimizer.step

    def capture_then_step(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture_then_step
    return trainer.train_step(), grads


def test_loss_is_the_token_mean_over_part_b_targets_of_the_global_batch(shards, tmp_path):
    trainer, batch = tiny_trainer(shards, tmp_path, micro_batch_size=2)
    has_loss = batch["targets"] != IGNORE
    assert torch.equal(has_loss, ~batch["prefix"] & (batch["segment_ids"] != 0))  # Part B, never Part A or padding
    with torch.no_grad():
        logits = trainer.model(batch["tokens"], batch["position_ids"], batch["segment_ids"], batch["prefix"])
    mean = torch.nn.functional.cross_entropy(logits[has_loss].double(), batch["targets"][has_loss])
    # GLM-130B's weighting: every Part B token counts once, however long its sequence's Part B.
    assert trainer.train_step()["loss"] == pytest.approx(mean.item(), rel=1e-6)


def test_gradient_accumulation_gives_the_gradients_of_one_large_batch(shards, tmp_path):
    one, one_grads = step_gradients(tiny_trainer(shards, tmp_path / "one", micro_batch_size=8)[0])
    accumulated, grads = step_gradients(tiny_trainer(shards, tmp_path / "eight", micro_batch_size=1)[0])
    assert accumulated["loss"] == pytest.approx(one["loss"], rel=1e-6)
    assert accumulated["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    for name, grad in one_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-8, msg=name)
