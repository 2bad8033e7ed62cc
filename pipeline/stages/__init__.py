"""Pipeline stages, in data-flow order. Each module registers its config section on import."""
import importlib

# Order is the data flow; `glmdata run` walks it.
STAGE_ORDER = ["ingest", "langid", "quality", "pii", "dedup", "decontaminate", "mix", "tokenizer", "encode", "shards", "report"]


def load_config(path, overrides=None):
    """A run config (pipeline.config.parse_config) with every stage's section known."""
    from pipeline.config import parse_config

    import_all()
    return parse_config(path, overrides)


def import_all() -> None:
    for name in STAGE_ORDER:
        try:
            importlib.import_module(f"pipeline.stages.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"pipeline.stages.{name}":
                raise
