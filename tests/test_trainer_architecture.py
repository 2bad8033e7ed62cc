"""The trainer's GLM against GLM-130B, point by point, and the GLM-130B checkpoint converter.

The reference forward below is written from SwissArmyTransformer's GLM130B (the code GLM-130B runs:
sat/model/official/glm130B_model.py) on GLM-130B-layout tensors split into tensor-parallel
partitions, so it shares no layout logic with trainer/model.py or trainer/convert.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.config import ModelConfig
from trainer.convert import glm130b_to_model, main as convert_main, merge_partitions, model_to_glm130b, read_glm130b
from trainer.model import GLM, deepnorm_constants, embedding_init_std

CFG = ModelConfig(num_layers=3, hidden_size=48, num_heads=4, ffn_hidden_size=64, vocab_size=96, max_position=32)


def batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, CFG.vocab_size, (2, 20), generator=gen)
    positions = torch.arange(20).expand(2, 20)
    segments = torch.tensor([[1] * 20, [1] * 12 + [2] * 8], dtype=torch.int32)
    prefix = torch.zeros(2, 20, dtype=torch.bool)
    prefix[:, :6] = True
    prefix[1, 12:15] = True
    return tokens, positions, segments, prefix


def test_every_layer_normalises_its_input_and_a_final_layernorm_follows():
    """2N + 1 LayerNorms, layer 0's applied to the embedding output."""
    model = GLM(CFG)
    norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * CFG.num_layers + 1
    assert norms[0] == "layers.0.input_layernorm" and norms[-1] == "final_layernorm"
    seen = {}
    model.layers["0"].input_layernorm.register_forward_hook(lambda m, args, out: seen.setdefault("in", args[0]))
    tokens, positions, segments, prefix = batch()
    model(tokens, positions, segments, prefix)
    a = CFG.embedding_grad_shrink
    embedded = model.word_embeddings(tokens)
    torch.testing.assert_close(seen["in"], embedded * a + embedded.detach() * (1 - a))


def test_embedding_init_std_is_glm130b_sqrt_one_over_3h():
    assert embedding_init_std(12288) == pytest.approx(0.0052, abs=1e-4)
    torch.manual_seed(0)
    model = GLM(ModelConfig(num_layers=1, hidden_size=192, num_heads=4, vocab_size=4096))
    assert model.word_embeddings.weight.std().item() == pytest.approx(math.sqrt(1 / (3 * 192)), rel=0.02)


def test_fused_projections_carry_glm130b_names_and_shapes():
    shapes = {n: tuple(p.shape) for n, p in GLM(CFG).named_parameters()}
    h, f = CFG.hidden_size, CFG.ffn_size
    assert shapes["layers.0.attention.query_key_value.weight"] == (3 * h, h)
    assert shapes["layers.0.mlp.dense_h_to_4h.weight"] == (2 * f, h)
    assert shapes["layers.0.mlp.dense_4h_to_h.weight"] == (h, f)
    assert shapes["layers.0.attention.dense.weight"] == (h, h)
    assert {"word_embeddings.weight", "final_layernorm.weight", "final_layernorm.bias"} <= shapes.keys()
    assert not any(n.startswith("layers.0.attention.q.") for n in shapes)  # no separate q, k, v


# --------------------------------------------------------------------------------------------
# A tiny GLM-130B checkpoint in the published layout, and SAT's forward on its partitions


def random_glm130b_partitions(tp: int, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    """What GLM-130B's mp_rank_XX files hold for a model of shape CFG, random values."""
    gen = torch.Generator().manual_seed(seed)
    h, f, v, hd = CFG.hidden_size, CFG.ffn_size, CFG.vocab_size, CFG.hidden_size // CFG.num_heads

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=gen) * scale

    shared = {"transformer.final_layernorm.weight": 1 + rand(h), "transformer.final_layernorm.bias": rand(h)}
    for i in range(CFG.num_layers):
        p = f"transformer.layers.{i}."
        shared.update({p + "input_layernorm.weight": 1 + rand(h), p + "input_layernorm.bias": rand(h),
                       p + "post_attention_layernorm.weight": 1 + rand(h), p + "post_attention_layernorm.bias": rand(h),
                       p + "attention.dense.bias": rand(h), p + "mlp.dense_4h_to_h.bias": rand(h),
                       p + "attention.rotary_emb.inv_freq": 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)})
    parts = []
    for _ in range(tp):
        part = dict(shared)
        part["transformer.word_embeddings.weight"] = rand(v // tp, h)
        for i in range(CFG.num_layers):
            p = f"transformer.layers.{i}."
            part.update({p + "attention.query_key_value.weight": rand(3 * h // tp, h),
                         p + "attention.query_key_value.bias": rand(3 * h // tp),
                         p + "attention.dense.weight": rand(h, h // tp),
                         p + "mlp.dense_h_to_4h.weight": rand(2 * f // tp, h), p + "mlp.dense_h_to_4h.bias": rand(2 * f // tp),
                         p + "mlp.dense_4h_to_h.weight": rand(h, f // tp)})
        parts.append(part)
    return parts


def rotate(x, positions, hd):
    inv_freq = 1.0 / 10000 ** (torch.arange(0, hd, 2).double() / hd)
    angles = positions[..., None].double() * inv_freq
    cos, sin = torch.cat([angles.cos()] * 2, -1)[:, :, None].float(), torch.cat([angles.sin()] * 2, -1)[:, :, None].float()
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def sat_reference_logits(parts, tokens, positions, segments, prefix) -> torch.Tensor:
    """GLM-130B's forward (SAT's DeepNormWithGLUMixin, RotaryEmbeddingMixin, GEGLU, FinalForwardMixin)
    on tensor-parallel partitions: column-parallel outputs per partition, row-parallel outputs summed."""
    tp, L = len(parts), CFG.num_layers
    h, heads = CFG.hidden_size, CFG.num_heads
    hd, np_ = h // heads, heads // tp
    alpha = (2 * L) ** 0.5
    emb = torch.cat([p["transformer.word_embeddings.weight"] for p in parts])
    x = F.embedding(tokens, emb)
    T = tokens.shape[1]
    allowed = (segments[:, :, None] == segments[:, None, :]) & (prefix[:, None, :] | torch.ones(T, T).tril().bool())

    def ln(x, key):
        return F.layer_norm(x, (h,), parts[0][key + ".weight"], parts[0][key + ".bias"], CFG.layernorm_eps)

    for i in range(L):
        pre = f"transformer.layers.{i}."
        a = ln(x, pre + "input_layernorm")
        attn = parts[0][pre + "attention.dense.bias"]
        for p in parts:
            mixed = F.linear(a, p[pre + "attention.query_key_value.weight"], p[pre + "attention.query_key_value.bias"])
            q, k, v = mixed.view(*mixed.shape[:2], np_, 3 * hd).split(hd, dim=-1)  # SAT: [np, 3 * hn]
            q, k = rotate(q, positions, hd), rotate(k, positions, hd)
            scores = torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(hd)
            probs = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
            context = torch.einsum("bnqk,bknd->bqnd", probs, v).flatten(2)
            attn = attn + F.linear(context, p[pre + "attention.dense.weight"])
        m = ln(a * alpha + attn, pre + "post_attention_layernorm")
        mlp = parts[0][pre + "mlp.dense_4h_to_h.bias"]
        for p in parts:
            x1, x2 = F.linear(m, p[pre + "mlp.dense_h_to_4h.weight"], p[pre + "mlp.dense_h_to_4h.bias"]).chunk(2, -1)
            mlp = mlp + F.linear(x1 * F.gelu(x2), p[pre + "mlp.dense_4h_to_h.weight"])
        x = m * alpha + mlp
    return F.linear(ln(x, "transformer.final_layernorm"), emb)


@pytest.fixture(scope="module")
def glm130b_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glm130b")
    parts = random_glm130b_partitions(tp=2)
    (folder / "49300").mkdir()
    for rank, part in enumerate(parts):
        torch.save({"module": part}, folder / "49300" / f"mp_rank_{rank:02d}_model_states.pt")
    (folder / "latest").write_text("49300")
    return folder, parts


def test_glm130b_checkpoint_loads_and_computes_glm130b_logits(glm130b_folder):
    folder, parts = glm130b_folder
    model = GLM(CFG)
    missing, unexpected = model.load_state_dict(glm130b_to_model(read_glm130b(folder)), strict=True)
    assert not missing and not unexpected
    assert model.output.weight is model.word_embeddings.weight
    with torch.no_grad():
        got = model(*batch())
    torch.testing.assert_close(got, sat_reference_logits(parts, *batch()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tensor_parallel", [1, 2, 4])
def test_converter_round_trip(glm130b_folder, tmp_path, tensor_parallel):
    """GLM-130B (TP 2) -> model -> GLM-130B at TP 1, 2, 4: merged tensors identical, and TP 2 gives back
    the original partition files key for key."""
    folder, parts = glm130b_folder
    assert convert_main(["from-glm130b", str(folder), str(tmp_path / "model.pt")]) == 0
    assert convert_main(["to-glm130b", str(tmp_path / "model.pt"), str(tmp_path / "back"),
                         "--tensor-parallel", str(tensor_parallel), "--num-heads", str(CFG.num_heads)]) == 0
    back = read_glm130b(tmp_path / "back")
    original = merge_partitions(parts)
    assert back.keys() == original.keys()
    def same(key, a, b):  # inv_freq is recomputed from the rotary base: equal up to float rounding
        return torch.allclose(a, b, rtol=1e-6) if key.endswith("inv_freq") else torch.equal(a, b)

    assert all(same(key, back[key], original[key]) for key in original)
    if tensor_parallel == 2:
        for rank, part in enumerate(parts):
            written = torch.load(tmp_path / "back" / "0" / f"mp_rank_{rank:02d}_model_states.pt")["module"]
            assert all(same(k, written[k], part[k]) for k in part)


def test_trained_model_exports_to_glm130b_and_back():
    torch.manual_seed(3)
    model = GLM(CFG)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    again = glm130b_to_model(model_to_glm130b(state, CFG.num_heads))
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)


def test_converter_errors_name_the_file(tmp_path, capsys):
    assert convert_main(["from-glm130b", str(tmp_path), str(tmp_path / "model.pt")]) == 2
    assert f"{tmp_path / 'latest'}: missing" in capsys.readouterr().err


def test_deepnorm_alpha_scales_both_residuals():
    """out = alpha * m + mlp(m) with m = LN(alpha * a + attn(a)): with the branches zeroed the block is
    alpha * LN(alpha * LN(x)) (LayerNorms of unit weight and zero bias)."""
    model = GLM(CFG)
    block = model.layers["1"]
    with torch.no_grad():
        for linear in (block.attention.dense, block.mlp.dense_4h_to_h):
            linear.weight.zero_()
            linear.bias.zero_()
    x = torch.randn(2, 20, CFG.hidden_size)
    alpha, _ = deepnorm_constants(CFG.num_layers)
    cos, sin = model.rope_cos[batch()[1]], model.rope_sin[batch()[1]]
    from trainer.attention import build_mask

    out = block(x, cos, sin, build_mask(*batch()[2:], "naive"))
    ln = torch.nn.functional.layer_norm
    torch.testing.assert_close(out, alpha * ln(alpha * ln(x, (48,)), (48,)))


def test_chunked_cross_entropy_equals_the_whole_logits():
    """Chunks of 7 tokens (not dividing the 40) give the same per-token losses and gradients as the
    micro-batch's whole logits."""
    from trainer.train import chunked_token_losses, token_losses

    tokens, positions, segments, prefix = batch()
    targets = torch.randint(0, CFG.vocab_size, tokens.shape, generator=torch.Generator().manual_seed(5))
    targets[:, :6] = -100
    results = []
    for chunk in (0, 7):
        torch.manual_seed(0)
        model = GLM(CFG)
        model.defer_output = chunk > 0
        out = model(tokens, positions, segments, prefix)
        losses = chunked_token_losses(out, model.output, targets, chunk) if chunk else token_losses(out, targets)
        losses.sum().backward()
        results.append((losses.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (whole, whole_grads), (chunked, chunked_grads) = results
    assert whole[:, :6].abs().max() == 0
    torch.testing.assert_close(chunked, whole)
    for name, grad in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, msg=name)
