"""Training logs: a progress line on the terminal, JSON lines, and TensorBoard when installed.

MFU (model FLOPs utilisation) = achieved model FLOPs / peak FLOPs, with model FLOPs per token from
`trainer.model.flops_per_token` (6N + 12 L h T, PaLM's convention) and every position of every
sequence counted (padding included: the hardware computes it).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peak per device, TFLOP/s (vendor data sheets, without sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A800": 312.0, "H800": 989.0,
                    "L40S": 362.0, "A10G": 70.0}
PCIE_H100_TFLOPS = 756.0


def peak_tflops(device: torch.device, configured: float | None) -> float | None:
    """The configured peak, else the data-sheet figure for this GPU, else None (MFU not reported)."""
    if configured is not None or device.type != "cuda":
        return configured
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return PCIE_H100_TFLOPS
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)


def mfu(tokens_per_s: float, flops_per_token: float, num_devices: int, peak: float | None) -> float | None:
    return None if peak is None else tokens_per_s * flops_per_token / (num_devices * peak * 1e12)


class RunLogger:
    """Rank 0 writes; other ranks hold a logger that does nothing."""

    def __init__(self, out_dir: Path, max_steps: int, enabled: bool, tensorboard: bool):
        self.max_steps, self.enabled = max_steps, enabled
        self.tty = sys.stderr.isatty()
        self.started, self.start_step = time.monotonic(), None  # for the ETA
        self.jsonl = self.board = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out_dir / "log.jsonl", "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.message("tensorboard is not installed: logging to the terminal and log.jsonl only")
            else:
                self.board = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        """One step: JSON line, TensorBoard scalars, and the terminal progress line."""
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.jsonl.flush()
        step = record["step"]
        if self.board is not None:
            for key, value in _flatten(record).items():
                if isinstance(value, (int, float)) and key != "step":
                    self.board.add_scalar(key, value, step)
        self._terminal(record)

    def message(self, text: str) -> None:
        if self.enabled:
            print(("\n" if self.tty else "") + text, file=sys.stderr, flush=True)

    def _terminal(self, r: dict) -> None:
        width = 24
        done = int(width * r["step"] / self.max_steps)
        by_lang = " ".join(f"{k} {v:.3f}" for k, v in r["loss_by_lang"].items())
        parts = [f"step {r['step']}/{self.max_steps} [{'#' * done}{'.' * (width - done)}]",
                 f"loss {r['loss']:.4f}" + (f" ({by_lang})" if by_lang else ""),
                 f"gnorm {r['grad_norm']:.3g}", f"lr {r['lr']:.3g}", f"batch {r['batch_size']}",
                 f"{r['tokens_per_s']:.0f} tok/s"]
        if r.get("mfu") is not None:
            parts.append(f"MFU {100 * r['mfu']:.1f}%")
        if self.start_step is None:
            self.start_step, self.started = r["step"], time.monotonic()
        elif r["step"] > self.start_step:
            per_step = (time.monotonic() - self.started) / (r["step"] - self.start_step)
            parts.append(f"ETA {_duration(per_step * (self.max_steps - r['step']))}")
        if r.get("skipped"):
            parts.append(f"SKIPPED: {r['skipped']}")
        line = "  ".join(parts)
        if self.tty and not r.get("skipped"):
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(("\n" if self.tty else "") + line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            if self.tty:
                print(file=sys.stderr)
            self.jsonl.close()
            if self.board is not None:
                self.board.close()


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = value
    return flat
