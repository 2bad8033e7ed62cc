"""Batches from the shards for one data-parallel rank, deterministic and resumable.

The run reads one global stream of samples: sample k of the run is sequence `perm_e[k mod n]` of
the dataset, where e = k // n is the epoch and perm_e a permutation seeded by (seed, e). A global
batch takes the next `global_batch_size` samples of the stream; data-parallel rank r takes the r-th
of `dp_size` equal, disjoint, contiguous slices of it, cut into micro-batches. The whole position is
one integer, `consumed_samples`, so resuming (or changing the batch size during ramp-up) is exact.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from trainer.config import ConfigError
from trainer.shard_format import SEQ_COLUMNS, ShardDataset

# Model inputs as the trainer wants them (embedding and cross-entropy index with int64).
TORCH_DTYPES = {"tokens": torch.long, "targets": torch.long, "position_ids": torch.long,
                "segment_ids": torch.int32, "prefix": torch.bool, "langs": torch.long}


class SampleOrder:
    """Run-wide sample index -> dataset index, a fresh seeded permutation every epoch."""

    def __init__(self, num_samples: int, seed: int):
        if num_samples == 0:
            raise ValueError("the shards hold no sequences")
        # numpy takes non-negative seeds only: a negative one as its 64-bit two's complement, like the
        # pipeline's shard_rngs. Non-negative seeds keep their order; the config caps seeds below 2**63,
        # so a mapped negative seed never meets another accepted seed.
        self.num_samples, self.seed = num_samples, seed % 2**64
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def __getitem__(self, k: int) -> int:
        epoch, offset = divmod(k, self.num_samples)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        return int(self._perm[offset])


class RankBatches:
    """This rank's micro-batches of each global batch; `consumed_samples` is the resumable position."""

    def __init__(self, dataset: ShardDataset, seed: int, dp_rank: int, dp_size: int, device: torch.device):
        self.dataset, self.dp_rank, self.dp_size, self.device = dataset, dp_rank, dp_size, device
        self.order = SampleOrder(len(dataset), seed)
        self.consumed_samples = 0

    def rank_indices(self, global_batch_size: int) -> list[int]:
        """Dataset indices of this rank's slice of the next global batch (does not advance)."""
        if global_batch_size % self.dp_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {self.dp_size} data-parallel ranks")
        per_rank = global_batch_size // self.dp_size
        start = self.consumed_samples + self.dp_rank * per_rank
        return [self.order[k] for k in range(start, start + per_rank)]

    def next_global_batch(self, global_batch_size: int, micro_batch_size: int) -> list[dict[str, torch.Tensor]]:
        indices = self.rank_indices(global_batch_size)
        self.consumed_samples += global_batch_size
        return [self.collate(indices[i:i + micro_batch_size]) for i in range(0, len(indices), micro_batch_size)]

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = [self.dataset[i] for i in indices]
        pin = self.device.type == "cuda"
        batch = {}
        for c in SEQ_COLUMNS:
            t = torch.from_numpy(np.stack([r[c] for r in rows])).to(TORCH_DTYPES[c])
            batch[c] = (t.pin_memory() if pin else t).to(self.device, non_blocking=pin)
        return batch

    def state_dict(self) -> dict:
        return {"consumed_samples": self.consumed_samples, "num_samples": len(self.dataset),
                "shards": shards_identity(self.dataset), "seed": self.order.seed}

    def load_state_dict(self, state: dict) -> None:
        """Continue where the checkpoint stopped: only on the same sequences in the same order (checkpoints
        written before `shards` and `seed` were recorded are checked by their count alone)."""
        if state["num_samples"] != len(self.dataset):
            raise ConfigError(f"the checkpoint was trained on {state['num_samples']} sequences, these shards hold "
                              f"{len(self.dataset)}: resuming would not continue the same sample order")
        if state.get("shards", shards_identity(self.dataset)) != shards_identity(self.dataset):
            raise ConfigError(f"the checkpoint was trained on other shards of {len(self.dataset)} sequences (their "
                              f"files' sha256 differ from {self.dataset.shards_dir}'s manifest): resuming would not "
                              "continue the same data; give --data the shards it was trained on, or another --out")
        if state.get("seed", self.order.seed) != self.order.seed:
            raise ConfigError("train.seed differs from the checkpoint's: resuming would not continue the same "
                              "sample order")
        self.consumed_samples = int(state["consumed_samples"])


def shards_identity(dataset: ShardDataset) -> str:
    """The sequences a dataset holds, in order: a hash of its shard files' sha256 as the manifest lists them."""
    return hashlib.sha256(" ".join(e["sha256"] for e in dataset.manifest["shards"]).encode()).hexdigest()[:16]
