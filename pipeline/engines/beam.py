"""Beam adapter: DirectRunner by default, Dataflow/Flink through pipeline options.

Beam's DirectRunner (2.78, what `make setup` installs) first tries Prism, a runner it downloads from
GitHub for every pipeline, and falls back to its in-process FnApiRunner when that fails. Nothing is
downloaded at run time here, and a run must not change runner with the network: DirectRunner runs on
the FnApiRunner directly."""
from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any, Callable

from pipeline import storage
from pipeline.config import RunConfig

# What DirectRunner falls back to once Prism fails; it reads the same --direct_* options.
LOCAL_RUNNER = "FnApiRunner"


class BeamEngine:
    name = "beam"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def pipeline_options(self):
        from apache_beam.options.pipeline_options import PipelineOptions

        opts = self.cfg.run.beam
        local = opts.runner == "DirectRunner"
        args = [f"--runner={LOCAL_RUNNER if local else opts.runner}", *opts.options]
        if local and not any(a.startswith("--direct_num_workers") for a in args):
            args += ["--direct_num_workers=0", "--direct_running_mode=multi_threading"]
        return PipelineOptions(args)

    def pipeline(self):
        import apache_beam as beam

        return beam.Pipeline(options=self.pipeline_options())

    def scratch_dir(self, label: str) -> str:
        """A folder for small side outputs (counts), under the workdir so remote runners reach it."""
        base = storage.join(self.cfg.run.workdir, ".tmp", "beam")
        storage.makedirs(base)
        if "://" in base:
            return storage.join(base, f"{label}-{os.urandom(4).hex()}")
        return tempfile.mkdtemp(prefix=f"{label}-", dir=base)

    def map_units(self, label: str, fn: Callable[[Any], dict], units: list) -> list[dict]:
        import apache_beam as beam

        if not units:
            return []
        out = self.scratch_dir(label)
        with self.pipeline() as p:
            (p
             | f"{label}: units" >> beam.Create(list(enumerate(units)))
             | f"{label}: spread" >> beam.Reshuffle()
             | f"{label}: process" >> beam.Map(functools.partial(_indexed_result, fn))
             | f"{label}: encode counts" >> beam.Map(json.dumps, sort_keys=True)
             | f"{label}: write counts" >> beam.io.WriteToText(storage.join(out, "counts"), file_name_suffix=".jsonl"))
        indexed = []
        for path in storage.expand(out):
            indexed += [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]
        storage.rmtree(out)
        if len(indexed) != len(units):
            raise RuntimeError(f"beam {label}: {len(units)} units ran but {len(indexed)} reported counts")
        # The counts files hold results in the order the shuffle spread them: back to the units' order, as Spark's.
        return [result for _, result in sorted(indexed, key=lambda pair: pair[0])]

    def close(self) -> None:
        pass


def _indexed_result(fn: Callable[[Any], dict], indexed_unit: tuple[int, Any]) -> list:
    index, unit = indexed_unit
    return [index, fn(unit)]
