"""The Beam engine's local runner: Beam's DirectRunner first tries Prism, a runner it downloads from
GitHub for every pipeline, and falls back to its in-process FnApiRunner when that fails."""
from __future__ import annotations

from pipeline.engines.beam import BeamEngine

from conftest import make_run_config


def _square(unit: int) -> dict:
    return {"unit": unit, "square": unit * unit}


def test_direct_runner_never_tries_prism(tmp_path, monkeypatch):
    """Nothing is downloaded at run time, and a run must not switch runner (and its threading
    options) with the network: with DirectRunner configured, no pipeline is handed to Prism."""
    from apache_beam.runners.portability import prism_runner

    tried = []

    def refuse(runner, pipeline, options):
        tried.append(type(runner).__name__)
        raise RuntimeError("no network")  # what Beam falls back from

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    engine = BeamEngine(make_run_config(tmp_path, engine="beam", beam={"runner": "DirectRunner"}))
    assert engine.map_units("squares", _square, [3, 1, 2]) == [{"unit": u, "square": u * u} for u in (3, 1, 2)]
    assert tried == []
    options = engine.pipeline_options().get_all_options()
    assert (options["direct_running_mode"], options["direct_num_workers"]) == ("multi_threading", 0)
