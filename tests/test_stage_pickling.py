"""A stage goes to the workers pickled: what it built lazily on one process stays there."""
from __future__ import annotations

import functools
import pickle

import pyarrow as pa
import pytest

from filters.blocklist import HashedNames
from pipeline.schema import DOC_SCHEMA
from pipeline.stages.langid import LangidStage
from pipeline.stages.pii import PiiStage
from pipeline.stages.quality import QualityStage

from conftest import make_run_config

ROW = {"id": "d", "text": "Une phrase écrite à alice@example.com.", "source": "s",
       "source_file": "f", "source_offset": 0, "lang": "fr"}  # fr: no word tokenizer to load


# Quality without UT1's millions of domains (4 of the test's 5 seconds); its blocklists are still built
SMALL_SECTIONS = {"quality": {"url_blocklists": [], "url_lists": []}}


def lazily_built(stage) -> set[str]:
    return {name for name in stage.__dict__ if isinstance(getattr(type(stage), name, None), functools.cached_property)}


@pytest.mark.parametrize("stage_class", [LangidStage, QualityStage, PiiStage], ids=lambda c: c.name)
def test_what_a_stage_built_lazily_is_built_again_in_each_worker(tmp_path, stage_class):
    """Models do not pickle, blocklists hash with their process's salt, and a local copy of a model is a
    path on the driver: a stage that processed a batch before going to the workers leaves all of them
    behind (quality's perplexity models and classifier path went along), and the copy builds its own."""
    stage = stage_class(make_run_config(tmp_path, {stage_class.name: SMALL_SECTIONS.get(stage_class.name, {})}))
    stage.process_batch(pa.RecordBatch.from_pylist([ROW], DOC_SCHEMA))
    assert lazily_built(stage)
    copy = pickle.loads(pickle.dumps(stage))
    assert not lazily_built(copy) and copy.section == stage.section


class PiiWithGivenAnonymizer(PiiStage):
    """A stage of a user's: its anonymizer is given in code, a plain attribute over PiiStage's lazy one."""
    anonymizer = None

    def __init__(self, cfg, anonymizer):
        super().__init__(cfg)
        self.anonymizer = anonymizer


def test_a_value_a_subclass_sets_under_a_lazy_name_travels(tmp_path):
    """The rule reads the attribute the stage's class resolves, not every class it derives from."""
    stage = PiiWithGivenAnonymizer(make_run_config(tmp_path, {"pii": {}}), anonymizer="given")
    assert pickle.loads(pickle.dumps(stage)).anonymizer == "given"


def test_a_blocklist_that_would_travel_fails_loudly():
    """What holds a salted hash and escapes the rule above stops the pickling instead of matching nothing."""
    with pytest.raises(TypeError, match="salted per process"):
        pickle.dumps(HashedNames.from_lines(b"example.com\n"))
