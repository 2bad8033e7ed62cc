"""CCNet-style perplexity (filters/perplexity.py): training is deterministic, prose like the
training text scores better than word salad, and the stage adds q_perplexity when a model is set."""
from __future__ import annotations

import random

import pyarrow as pa

from filters.perplexity import CharNgramLM, normalize, train
from pipeline.schema import DOC_SCHEMA
from pipeline.stages.quality import QualityStage

from conftest import make_run_config

PROSE = [f"{who} {verb} on {day} to discuss the {what} for the coming year."
         for who in ("The committee", "The council", "Members of the board", "The mayor")
         for verb in ("met", "gathered", "spoke")
         for day, what in (("Tuesday", "budget"), ("Friday", "new library"), ("Monday", "roads and schools"))]


def _salad(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("qxzjkvwy0123 ") for _ in range(80))


def test_training_is_deterministic_and_round_trips(tmp_path):
    a, b = train(PROSE), train(list(PROSE))
    assert (a.counts == b.counts).all() and (a.quantiles == b.quantiles).all()
    a.save(str(tmp_path / "lm.npz"))
    loaded = CharNgramLM.load(str(tmp_path / "lm.npz"))
    assert loaded.log_perplexity(PROSE[0]) == a.log_perplexity(PROSE[0])


def test_prose_scores_above_word_salad():
    model = train(PROSE)
    unseen = "The board met on Thursday to discuss the schools for the coming year."
    assert model.perplexity(unseen) < min(model.perplexity(_salad(s)) for s in range(5))
    assert model.score(PROSE[0]) > max(model.score(_salad(s)) for s in range(5)) == 0.0
    assert normalize("  Year 2024\n\nENDS ") == "year 0000 ends"


def test_stage_adds_q_perplexity_for_configured_languages(tmp_path):
    path = tmp_path / "en.npz"
    train(PROSE).save(str(path))
    stage = QualityStage(make_run_config(tmp_path, {"quality": {"perplexity_models": {"en": str(path)}}}))
    text = ("The river rises in the northern hills and flows south to the sea. Farmers along its banks grow "
            "wheat, barley and beans in the summer. In winter the water freezes near the source and travellers "
            "cross on foot. A stone bridge was built there by the monks of the abbey in 1302. Most of the old "
            "mills have closed, but one still grinds flour for the bakers of the town. Fishermen say that the "
            "trout are larger upstream, where the current is faster and the water is cold.")
    rows = [{"id": "a", "text": text, "url": None, "source": "t", "lang": "en"},
            {"id": "b", "text": "短文本。" * 80, "url": None, "source": "t", "lang": "zh"}]
    result = stage.process_batch(pa.RecordBatch.from_pylist(rows, DOC_SCHEMA))
    values = result.rows.column("q_perplexity").to_pylist()
    assert values[0] is not None and values[0] > 1.0 and values[1] is None
