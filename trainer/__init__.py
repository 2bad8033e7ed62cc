"""The bundled Megatron-style GLM trainer: GLM-130B's model, pipeline + tensor + data parallel, on the shards.

Imports only torch, numpy, pyarrow, sentencepiece and pyyaml (and the special-token table): GPU
machines have no Spark, Beam, fastText or jieba. Modules, one job each:

    config.py       YAML presets (configs/trainer/*.yaml), validated
    model.py        the GLM, top to bottom, in GLM-130B's layout; model FLOPs per token
    convert.py      GLM-130B (SwissArmyTransformer) checkpoints to this model and back
    attention.py    the blank-infilling mask: FlexAttention, SDPA or plain masked attention
    parallelize.py  pipeline (1F1B), tensor parallel (DTensor), FSDP2, activation checkpointing,
                    applied from outside
    plan.py         per-GPU memory and communication of a preset on a cluster (`glmtrain plan`)
    shard_format.py the shard files and their memory-mapped reader (shared with `glmdata shards`)
    data.py         each data-parallel rank's slice of every global batch; resumable position
    schedule.py     warmup + cosine learning rate over samples, batch-size ramp-up
    spike_guard.py  skip steps with non-finite or spiking loss or gradient norm
    checkpoint.py   atomic, sharded checkpoints (torch.distributed.checkpoint), exact resume
    metrics.py      terminal progress line, log.jsonl, TensorBoard; MFU
    train.py        the loop and the entry point (`torchrun -m trainer.train`, `glmtrain`)
"""
