"""What the mix reads from each document stage, so that a stage processes only that.

A mix source reads one stage (`stage`, "decontaminate" by default) and takes the documents of some
`source` values in one language. A document stage's output is read by the mix sources that read it
or a later stage; a document none of them takes is never used, so the stage counts it under
`not_in_mix` and leaves it in the upstream's output (run.skip_not_in_mix: false processes
everything). Languages select only after langid, which sets them; before it, sources select, and
langid skips a page that cannot be in any language its source is read in (no Chinese, Japanese or
Korean letter where only those are read: filters.langid.only_cjk).
In GLM-130B's recipe (configs/glm130b.yaml) the Pile and WuDao go from ingest to the mix, and only
the crawl's Chinese goes on: language ID, quality, PII, dedup and decontamination read the crawl,
and after language ID only its Chinese.
"""
from __future__ import annotations

import logging

from pipeline.config import RunConfig
from pipeline.selection import Selection

log = logging.getLogger(__name__)


def read_after(cfg: RunConfig, stage: str) -> Selection | None:
    """The documents of `stage`'s output that some mix source reads (None: every document)."""
    from pipeline.stages import STAGE_ORDER
    from pipeline.stages.mix import DEFAULT_STAGE

    mix = cfg.sections.get("mix")
    if not cfg.run.skip_not_in_mix or mix is None:
        return None
    position = STAGE_ORDER.index(stage)
    wanted = {(None if s.matches_every_source() else tuple(sorted(s.match_source or [s.name])), s.lang)
              for s in mix.sources if not s.path and STAGE_ORDER.index(s.stage or DEFAULT_STAGE) >= position}
    selection = Selection(tuple(sorted(wanted, key=repr)), langs_decided=position > STAGE_ORDER.index("langid"))
    if not wanted:
        log.warning("%s: no mix source reads %s or a later stage, so every document counts as not_in_mix "
                    "(run.skip_not_in_mix: false processes them anyway)", cfg.path, stage)
    return selection


class ReadsWhatMixUses:
    """Mixin for a document stage: `selection` is what the mix reads from this stage or later."""

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.selection = read_after(cfg, self.name)
