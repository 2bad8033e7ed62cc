"""GLM-130B checkpoints <-> this trainer's GLM (trainer/model.py).

GLM-130B's published weights are a SwissArmyTransformer checkpoint split for tensor parallelism
(THUDM/GLM-130B, tools/convert_tp.py and SAT's sat/model/official/glm130B_model.py):

    <folder>/latest                                 the iteration, e.g. 49300
    <folder>/<iteration>/mp_rank_XX_model_states.pt {"module": state dict of partition XX}

with the keys `transformer.word_embeddings.weight`, `transformer.final_layernorm.{weight,bias}`
and per layer `transformer.layers.N.` + input_layernorm, attention.query_key_value,
attention.dense, post_attention_layernorm, mlp.dense_h_to_4h, mlp.dense_4h_to_h (weight and bias
each), and possibly attention.rotary_emb.inv_freq. Partitions split, as convert_tp.py merges them:
- replicated: the LayerNorms, attention.dense.bias, mlp.dense_4h_to_h.bias, inv_freq;
- along dim 1: attention.dense.weight, mlp.dense_4h_to_h.weight (row-parallel);
- along dim 0: word_embeddings, query_key_value (each partition [its heads x (q, k, v) x head
  dim], SAT's view to [np, 3 * hn], so plain concatenation keeps whole heads);
- mlp.dense_h_to_4h ("GLU"): each partition is [value rows; gate rows] of its inner units
  (GEGLU: x1, x2 = chunk(2); x1 * gelu(x2)); merged, all value rows come first, then all gates.

This model uses the same names without `transformer.` and the same layouts, except that
dense_h_to_4h interleaves value and gate per inner unit (any row slice of a tensor-parallel rank
then holds matching halves); the output projection is tied to word_embeddings.

    python -m trainer.convert from-glm130b <glm130b folder> <model.pt>
    python -m trainer.convert to-glm130b <model.pt or trainer checkpoint folder> <folder> --tensor-parallel 8 \
        --num-heads 96

`model.pt` is {"model": state dict of trainer/model.py's GLM}. The files are read with
torch.load(weights_only=True): only tensors and plain containers are unpickled.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

PARTITION = "mp_rank_{:02d}_model_states.pt"
REPLICATED = ("input_layernorm.weight", "input_layernorm.bias", "post_attention_layernorm.weight",
              "post_attention_layernorm.bias", "attention.dense.bias", "mlp.dense_4h_to_h.bias",
              "final_layernorm.weight", "final_layernorm.bias")
ROW_PARALLEL = ("attention.dense.weight", "mlp.dense_4h_to_h.weight")  # split along dim 1
GLU = ("mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias")
INV_FREQ = "attention.rotary_emb.inv_freq"
KEY = re.compile(r"^transformer\.(?:layers\.(\d+)\.)?(.+)$")


class ConversionError(ValueError):
    """A checkpoint that is not in the expected layout (the message names the file and key)."""


def _short_name(key: str) -> str:
    match = KEY.match(key)
    return match.group(2) if match else key


def merge_partitions(partitions: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """GLM-130B's tensor-parallel partitions -> one GLM-130B state dict (convert_tp.py's rules)."""
    merged = {}
    for key in partitions[0]:
        name = _short_name(key)
        parts = [p[key] for p in partitions]
        if name in REPLICATED or name.endswith("inv_freq"):
            merged[key] = parts[0]
        elif name in ROW_PARALLEL:
            merged[key] = torch.cat(parts, dim=1)
        elif name in GLU:
            halves = [p.chunk(2, dim=0) for p in parts]
            merged[key] = torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
        else:
            merged[key] = torch.cat(parts, dim=0)
    return merged


def split_partitions(state: dict[str, torch.Tensor], tensor_parallel: int) -> list[dict[str, torch.Tensor]]:
    """One GLM-130B state dict -> `tensor_parallel` partitions (the inverse of merge_partitions)."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(tensor_parallel)]
    for key, value in state.items():
        name = _short_name(key)
        if name in REPLICATED or name.endswith("inv_freq"):
            parts = [value] * tensor_parallel
        elif name in ROW_PARALLEL:
            parts = value.chunk(tensor_parallel, dim=1)
        elif name in GLU:
            value_rows, gate_rows = value.chunk(2, dim=0)
            parts = [torch.cat([v, g], dim=0) for v, g in zip(value_rows.chunk(tensor_parallel, dim=0),
                                                                gate_rows.chunk(tensor_parallel, dim=0))]
        else:
            parts = value.chunk(tensor_parallel, dim=0)
        for partition, part in zip(out, parts):
            partition[key] = part.clone()
    return out


def glm130b_to_model(state: dict[str, torch.Tensor], rope_base: float = 10000.0) -> dict[str, torch.Tensor]:
    """Merged GLM-130B state dict -> trainer/model.py's state dict (output tied to the embedding)."""
    model = {}
    for key, value in state.items():
        match = KEY.match(key)
        if not match:
            raise ConversionError(f"{key}: not a GLM-130B key (expected transformer.*)")
        layer, name = match.groups()
        if name.endswith("inv_freq"):
            head_dim = 2 * value.numel()
            expected = 1.0 / rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
            if not torch.allclose(value.double(), expected, rtol=1e-3):
                raise ConversionError(f"{key}: rotary frequencies differ from base {rope_base}")
            continue
        if name in GLU:  # [value; gate] -> [(value, gate) per inner unit]
            value = torch.stack(value.chunk(2, dim=0), dim=1).flatten(0, 1)
        model[name if layer is None else f"layers.{layer}.{name}"] = value
    model["output.weight"] = model["word_embeddings.weight"]
    return model


def model_to_glm130b(model: dict[str, torch.Tensor], num_heads: int, rope_base: float = 10000.0
                     ) -> dict[str, torch.Tensor]:
    """trainer/model.py's state dict -> merged GLM-130B state dict (the inverse of glm130b_to_model),
    with each layer's rotary inv_freq as GLM-130B's checkpoints carry it."""
    head_dim = model["word_embeddings.weight"].shape[1] // num_heads
    inv_freq = 1.0 / rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    state = {}
    for key, value in model.items():
        if key == "output.weight":
            continue  # tied to word_embeddings
        layer = re.match(r"^layers\.(\d+)\.(.+)$", key)
        name = layer.group(2) if layer else key
        if name in GLU:
            value = value.unflatten(0, (-1, 2)).transpose(0, 1).flatten(0, 1)
        state[f"transformer.layers.{layer.group(1)}.{name}" if layer else f"transformer.{key}"] = value
        if layer and name == "input_layernorm.weight":
            state[f"transformer.layers.{layer.group(1)}.{INV_FREQ}"] = inv_freq.float()
    return state


def read_glm130b(folder: str | Path) -> dict[str, torch.Tensor]:
    """The partitions of a GLM-130B checkpoint folder, merged."""
    folder = Path(folder)
    try:
        iteration = (folder / "latest").read_text().strip()
    except OSError:
        raise ConversionError(f"{folder / 'latest'}: missing; expected a GLM-130B (SAT) checkpoint folder") from None
    files = sorted((folder / iteration).glob("mp_rank_*_model_states.pt"))
    if not files:
        raise ConversionError(f"{folder / iteration}: no mp_rank_XX_model_states.pt files")
    partitions = []
    for path in files:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if "module" not in checkpoint:
            raise ConversionError(f"{path}: no 'module' entry (not a SAT checkpoint)")
        partitions.append(checkpoint["module"])
    return merge_partitions(partitions)


def write_glm130b(state: dict[str, torch.Tensor], folder: str | Path, tensor_parallel: int,
                  iteration: int = 0) -> None:
    folder = Path(folder)
    (folder / str(iteration)).mkdir(parents=True, exist_ok=True)
    for rank, partition in enumerate(split_partitions(state, tensor_parallel)):
        torch.save({"module": partition}, folder / str(iteration) / PARTITION.format(rank))
    (folder / "latest").write_text(str(iteration))


def _read_model(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():  # a trainer checkpoint (torch.distributed.checkpoint): consolidate it
        import tempfile

        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with tempfile.TemporaryDirectory() as tmp:
            dcp_to_torch_save(path, Path(tmp) / "full.pt")
            return torch.load(Path(tmp) / "full.pt", weights_only=False)["model"]
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.convert", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("from-glm130b", help="GLM-130B (SAT) folder -> model.pt")
    load.add_argument("source", type=Path)
    load.add_argument("target", type=Path)
    save = commands.add_parser("to-glm130b", help="model.pt or a trainer checkpoint folder -> GLM-130B layout")
    save.add_argument("source", type=Path)
    save.add_argument("target", type=Path)
    save.add_argument("--tensor-parallel", type=int, default=8, help="partitions to write (GLM-130B ships 8)")
    save.add_argument("--num-heads", type=int, default=96, help="attention heads (GLM-130B: 96), for inv_freq")
    args = parser.parse_args(argv)
    try:
        if args.command == "from-glm130b":
            torch.save({"model": glm130b_to_model(read_glm130b(args.source))}, args.target)
        else:
            write_glm130b(model_to_glm130b(_read_model(args.source), args.num_heads), args.target,
                          args.tensor_parallel)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
