"""`glmdata`: run pipeline stages, inspect their output, train the tokenizer, build shards.

Every stage is a command (`glmdata ingest --config configs/demo.yaml`); stages add their own
actions (`glmdata quality train-classifier`, `glmdata shards verify`) through pipeline.registry.

Exit status: 0 done; 1 the command ran and found problems, or was left nothing to do (`shards verify`,
`inspect` of an unfinished stage, `run` stopped before a stage, `export` with no document left); 2 a config
error (the message names the file, key or --set item) or a command-line error (the argument or folder);
3 something to run, install or point at first (the message says what).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline import registry
from pipeline.config import ConfigError, UsageError
from pipeline.engines import EngineError
from pipeline.engines.java import JavaError
from pipeline.runner import StageNotReady, WorkdirBusy

STAGE_HELP = {
    "ingest": "read WARC/WET/JSONL/Parquet dumps into documents",
    "langid": "identify language and script; keep the configured languages",
    "quality": "English and Chinese quality rules, signals as q_* columns",
    "pii": "replace personal identifiers (emails, phones, ID and card numbers) with placeholders",
    "dedup": "exact and MinHash-LSH near-duplicate removal",
    "decontaminate": "drop or flag documents that share n-grams with benchmark test items",
    "mix": "weighted EN/ZH sample to a token budget",
    "tokenizer": "train and evaluate the shared SentencePiece tokenizer",
    "encode": "tokenize the mix (token ids per document)",
    "shards": "pack GLM blank-infilling shards",
}
GROUP_HELP = {  # command groups that are not stages
    "export": "write the finished corpus in another tool's format: `glmdata export megatron --workdir W --out PREFIX` "
              "writes a Megatron-LM / NeMo indexed dataset (PREFIX.bin + PREFIX.idx)",
}
# Warnings that are harmless for glmdata and shown only with -v: Beam's optional GCP clients.
HARMLESS_LOG_MESSAGES = ("apitools not found", "No module named google.cloud.bigquery_storage_v1")


def _load_modules() -> None:
    from pipeline import stages

    stages.import_all()
    import pipeline.commands  # noqa: F401  (run, report, inspect, submit, ...)


def at_least(minimum: int):
    """An argparse type: an integer >= `minimum`."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def add_config_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.set_defaults(takes_config=True)
    p.add_argument("--config", "-c", required=required, help="run config YAML (see configs/demo.yaml)")
    p.add_argument("--engine", choices=["spark", "beam"], help="override run.engine")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.workdir=/tmp/w (VALUE parsed as YAML; a relative "
                        "path resolves against the current folder)")


def config_from_args(args: argparse.Namespace):
    import yaml

    from pipeline import stages
    from pipeline.config import parse_config

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides.pop(key, None)  # a key given again applies in its last place: after a --set of its mapping
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: {value!r} is not valid YAML ({getattr(e, 'problem', None) or e}); "
                              "quote it to pass a string") from None
    if args.engine:
        overrides["run.engine"] = args.engine
    stages.import_all()  # as load_config does, which cannot mark the overrides as --set items
    return parse_config(args.config, overrides, command_line=True)


def run_stage_command(args: argparse.Namespace) -> int:
    from pipeline.engines import make_engine
    from pipeline.report_terminal import print_stage_summary
    from pipeline.runner import run_stage

    if args.config is None:  # optional in argparse only so that the stage's actions need no config
        raise UsageError("--config is required to run the stage")
    cfg = config_from_args(args)
    stage = registry.STAGES[args.group](cfg)
    engine = make_engine(cfg)
    try:
        summary = run_stage(stage, engine, force=args.force)
    finally:
        engine.close()
    print_stage_summary(summary, cfg.run.workdir)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("glmdata")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    _load_modules()
    parser = argparse.ArgumentParser(prog="glmdata", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbose = dict(action="store_true",
                   help="everything: debug logging, the engines' own INFO logs, full per-stage tables")
    parser.add_argument("-v", "--verbose", **verbose)
    parser.add_argument("--version", action="version", version=f"glmdata {_version()}")
    # -v after the command too; SUPPRESS: a command's own default must not undo `glmdata -v COMMAND`.
    after_command = argparse.ArgumentParser(add_help=False)
    after_command.add_argument("-v", "--verbose", default=argparse.SUPPRESS, **verbose)
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    group_parsers: dict[str, argparse.ArgumentParser] = {}
    action_subparsers: dict[str, argparse._SubParsersAction] = {}

    def group_parser(name: str, help: str) -> argparse.ArgumentParser:
        if name not in group_parsers:
            group_parsers[name] = groups.add_parser(name, help=help, description=help, parents=[after_command])
        return group_parsers[name]

    for name in registry.STAGES:
        p = group_parser(name, STAGE_HELP.get(name, f"run the {name} stage"))
        add_config_arguments(p, required=not any(c.group == name and c.action for c in registry.COMMANDS))
        p.add_argument("--force", action="store_true", help="re-run even if _SUCCESS matches")
        p.set_defaults(func=run_stage_command)
    for cmd in registry.COMMANDS:
        if cmd.action is None:
            p = group_parser(cmd.group, cmd.help)
            cmd.add_arguments(p)
            p.set_defaults(func=cmd.run)
    for cmd in registry.COMMANDS:
        if cmd.action is not None:
            gp = group_parser(cmd.group, STAGE_HELP.get(cmd.group) or GROUP_HELP.get(cmd.group, cmd.group))
            if cmd.group not in action_subparsers:
                action_subparsers[cmd.group] = gp.add_subparsers(
                    dest="action", metavar="ACTION", required=cmd.group not in registry.STAGES,
                    help="without an action, runs the stage" if cmd.group in registry.STAGES else None)
            p = action_subparsers[cmd.group].add_parser(cmd.action, help=cmd.help, description=cmd.help,
                                                        parents=[after_command])
            p.set_defaults(takes_config=False)  # add_config_arguments sets it for actions that run the stage
            cmd.add_arguments(p)
            p.set_defaults(func=cmd.run)
    return parser


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(m in record.getMessage() for m in HARMLESS_LOG_MESSAGES)


def configure_logging(verbose: bool) -> None:
    """Quiet by default: glmdata's own INFO lines, other libraries' warnings less the known harmless
    ones; with -v everything at DEBUG."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    for ours in ("pipeline", "filters", "tokenizer", "trainer"):
        logging.getLogger(ours).setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropHarmless())


def check_stage_options(args: argparse.Namespace) -> None:
    """`glmdata quality --config C train-classifier ...`: the options that run a stage, given before an
    action that takes none of them, are refused rather than ignored."""
    if args.group not in registry.STAGES or not getattr(args, "action", None) or args.takes_config:
        return
    given = [flag for flag, value in (("--config", args.config), ("--engine", args.engine), ("--set", args.set),
                                      ("--force", args.force)) if value]
    if given:
        raise UsageError(f"{', '.join(given)}: options of the {args.group} stage itself, which `glmdata {args.group} "
                         f"{args.action}` does not take (see glmdata {args.group} {args.action} --help)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        check_stage_options(args)
        return int(args.func(args) or 0)
    except UsageError as e:
        command = " ".join(filter(None, (args.group, getattr(args, "action", None))))
        print(f"glmdata {command}: error: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (StageNotReady, WorkdirBusy, OSError, EngineError, JavaError) as e:
        # Something to run, install or point at first (an OSError: a path, or a bucket unreachable without
        # credentials or network): the message says what; a traceback would bury it.
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
