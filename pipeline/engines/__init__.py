"""Thin adapters over real engines. Both run a stage's work units as tasks on their workers and
return only the per-unit counts; stages with a shuffle use the engine's own API (`.spark`, Beam
transforms) directly. The engines import nothing from here: this module picks one, lazily, so
that a run on one never imports the other."""
from __future__ import annotations

from typing import Any, Callable, Protocol

from pipeline.config import RunConfig


class EngineError(RuntimeError):
    pass


class Engine(Protocol):
    name: str

    # fn(unit) for every unit, in parallel; the results in the units' order, whatever finishes first
    def map_units(self, label: str, fn: Callable[[Any], dict], units: list) -> list[dict]: ...

    def close(self) -> None: ...


def make_engine(cfg: RunConfig, name: str | None = None) -> Engine:
    name = name or cfg.run.engine
    if name == "spark":
        from pipeline.engines.spark import SparkEngine

        return SparkEngine(cfg)
    if name == "beam":
        from pipeline.engines.beam import BeamEngine

        return BeamEngine(cfg)
    raise EngineError(f"unknown engine {name!r}; expected 'spark' or 'beam'")
