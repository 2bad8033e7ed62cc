"""YAML configuration, validated against dataclasses when loaded.

Every stage declares its section as a dataclass (see `register_section`); a run config is one YAML
file with a `run:` section and one section per stage. Validation errors name the file, the dotted
key and what was expected, e.g.

    configs/demo.yaml: quality.en.gopher_min_words: expected int, got 'fifty'
    configs/demo.yaml: shards.seq_len: expected an integer >= 64, got 0

Numeric settings are finite and at least 0 unless their field declares another range with
`bounded(default, low=..., high=...)` (`bounded(default)` alone: any finite number). A key given
twice in one mapping is an error (YAML would silently keep the last one).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import math
import os
import types
import typing
from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NewType, Union

import yaml

# A path or glob that must match at least one file when it is local (remote URIs are checked at read
# time by the engine, since the driver may not have credentials for them).
InputPath = NewType("InputPath", str)
# A path or glob resolved like InputPath but checked when the stage runs (ingest records a pattern that
# matches nothing as an error and goes on with the other inputs).
InputGlob = NewType("InputGlob", str)

REMOTE_SCHEMES = ("gs://", "s3://", "s3a://", "hdfs://", "abfs://", "http://", "https://")
READ_ONLY_SCHEMES = ("http://", "https://")  # no listing, no globs, no writes: rejected where inputs and workdirs are read


class ConfigError(ValueError):
    """A configuration problem; the message names file, key and expectation."""


class UsageError(Exception):
    """The command line, or a file or folder it names, is wrong (no config is at fault): `glmdata` exits 2
    with the message."""


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: `low <= v <= high`, and `v > above` when given."""

    low: float | None = None
    high: float | None = None
    above: float | None = None

    def contains(self, value: float) -> bool:
        return ((self.low is None or value >= self.low) and (self.high is None or value <= self.high)
                and (self.above is None or value > self.above))

    def describe(self, tp: Any) -> str:
        kind = "an integer" if tp is int else "a finite number"
        lower = f">= {self.low}" if self.low is not None else (f"> {self.above}" if self.above is not None else "")
        upper = f"<= {self.high}" if self.high is not None else ""
        return " ".join(p for p in (kind, lower, "and" if lower and upper else "", upper) if p)


NON_NEGATIVE = Range(low=0)  # the range of a numeric field that declares none


def bounded(default: float | None, low: float | None = None, high: float | None = None, above: float | None = None):
    """A numeric dataclass field whose range is checked when the config loads."""
    return field(default=default, metadata={"range": Range(low, high, above)})


# Language shares computed by a program (1/3 written as 0.3333333333333333) miss a sum of 1 by the
# float's own rounding; also the tolerance before rounded decimals were accepted.
SHARE_SUM_FLOOR = Decimal("1e-6")


def normalised_shares(shares: dict[str, float], positive: bool = False) -> dict[str, float]:
    """`shares` (mix and tokenizer `language_shares`) divided by their sum when they are >= 0 (> 0 if
    `positive`) and sum to 1 within the rounding of the decimals they
    are written with, else ValueError. Shares are rounded to a common number of decimal places (the finest
    among them: 0.5 beside 0.45 is 0.50): each one within half a unit of that place of the share meant, so
    n shares within n half units, exclusive (three shares of 0.3333 sum to 0.9999 within 0.00015, three of
    0.33 to 0.99 within 0.015; 0.7 + 0.7 is refused). Integers (0, 1) are exact. The decimals are read from
    each number's shortest form, so the sum is exact, free of float rounding."""
    # NaN passes every comparison below, and has no decimal places
    if not shares or not all(math.isfinite(share) for share in shares.values()):
        raise ValueError(f"language_shares: expected one language or more, each with a finite share, got {shares}")
    if min(shares.values()) < 0 or positive and min(shares.values()) == 0:
        raise ValueError(f"language_shares: expected shares {'> 0' if positive else '>= 0'}, got {shares}")
    written = [Decimal(repr(share)) for share in shares.values()]
    rounded = [d for d in written if d != d.to_integral_value()]
    places = max((-d.as_tuple().exponent for d in rounded), default=0)
    tolerance = max(len(rounded) * Decimal(5).scaleb(-places - 1), SHARE_SUM_FLOOR)
    total = sum(written)
    if not abs(total - 1) < tolerance:
        allowed = (f"shares written to {places} decimal places, each within half a unit of the last"
                   if tolerance > SHARE_SUM_FLOOR else "float rounding")
        raise ValueError(f"language_shares: expected shares that sum to 1 (within {float(tolerance):g}: {allowed}), "
                         f"got {shares}, which sum to {total}")
    return {lang: share / float(total) for lang, share in shares.items()}


def per_key_overrides(*fixed: str):
    """A dataclass field `dict[str, <that dataclass>]`: for each key (an ingest source), changes to the
    section's own values, built on them when the config loads (keys it leaves out keep the section's
    values). The `fixed` keys hold for every key and may not be changed."""
    return field(default_factory=dict, metadata={"overrides": fixed})


def _is_overrides(f: dataclasses.Field) -> bool:
    return "overrides" in f.metadata


def _override_fields(section: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(section) if _is_overrides(f)}


def _numeric(tp: Any) -> bool:
    options = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return any(o in (int, float) for o in options)


def _check_range(value: Any, tp: Any, allowed: Range | None, key: str, where: Where) -> None:
    if not _numeric(tp) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    allowed = allowed or NON_NEGATIVE
    if not math.isfinite(value) or not allowed.contains(value):
        raise ConfigError(f"{where.at(key)}: expected {allowed.describe(int if isinstance(value, int) else float)}, "
                          f"got {value!r}")


@dataclass
class Where:
    """Where a config's values come from, for messages and relative paths: the YAML file, except the
    keys given on the command line with --set, whose relative paths resolve against the current folder
    (as a shell user expects) and whose errors name the --set item."""

    path: str
    base_dir: Path
    set_keys: dict[str, str] = field(default_factory=dict)  # dotted key --set gave or created -> that --set key

    def _set_key(self, key: str) -> str | None:
        given = [k for k in self.set_keys if key == k or key.startswith((k + ".", k + "["))]
        return self.set_keys[max(given, key=len)] if given else None

    def at(self, key: str) -> str:
        """The start of a message about `key`: "file: key", "--set key", or "--set a.b.c: a.b" for a mapping
        that --set created or "--set a: a.b" for a key inside the value --set gave."""
        given = self._set_key(key)
        if given is None:
            return f"{self.path}: {key}"
        return f"--set {given}" if given == key else f"--set {given}: {key}"

    def whole(self, key: str) -> str:
        """`at(key)` for a check of the whole mapping `key`, naming the --set items inside it (it may be about them)."""
        inside = sorted(k for k in self.set_keys.values() if k.startswith(key + "."))
        if not inside or self._set_key(key) is not None:
            return self.at(key)
        return f"{self.path}: {key} (with --set {', --set '.join(inside)})"

    def base_dir_of(self, key: str) -> Path:
        return self.base_dir if self._set_key(key) is None else Path.cwd()

    def resolve(self, key: str, path: str) -> str:
        return path if is_remote(path) or os.path.isabs(path) else str(self.base_dir_of(key) / path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice in one mapping is an error, not a silent override. Merge
    keys (`<<: *anchor`) are not checked: a key written beside them overrides the merged one, as YAML says."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # only SafeLoader's flatten_mapping can construct it
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # SafeLoader's own message names it
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)

# A workdir is deleted and rewritten stage by stage: never inside the system's own folders.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var/lib")


def is_system_folder(path: str) -> bool:
    """Whether a resolved local path is in the system's own folders, which no stage may write."""
    return path == "/" or any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS)


def is_remote(path: str) -> bool:
    return str(path).startswith(REMOTE_SCHEMES)


def _type_name(tp: Any) -> str:
    if tp is InputPath or tp is InputGlob:
        return "path"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        k, v = typing.get_args(tp) or (Any, Any)
        return f"mapping of {_type_name(k)} to {_type_name(v)}"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, where: Where) -> Any:
    """Return `value` converted to `tp`, or raise ConfigError naming where `key` came from."""

    def fail() -> ConfigError:
        return ConfigError(f"{where.at(key)}: expected {_type_name(tp)}, got {value!r}")

    if tp is Any:
        return value
    if tp in (InputPath, InputGlob) and isinstance(value, str) and value.startswith(READ_ONLY_SCHEMES):
        raise ConfigError(f"{where.at(key)}: {value!r}: http(s) URLs cannot be listed, globbed or written; expected a "
                          f"local path or {', '.join(s for s in REMOTE_SCHEMES if s not in READ_ONLY_SCHEMES)} "
                          "(CommonCrawl: s3://commoncrawl/crawl-data/... rather than https://data.commoncrawl.org/...)")
    if tp is InputGlob:
        if not isinstance(value, str):
            raise fail()
        return where.resolve(key, value)
    if tp is InputPath:
        if not isinstance(value, str):
            raise fail()
        path = where.resolve(key, value)
        if not is_remote(path) and not glob.glob(path, recursive=True):
            resolved = "" if path == value else f" (resolved to {path})"
            raise ConfigError(f"{where.at(key)}: expected an existing input path, but {value!r}{resolved} "
                              "matches no file")
        return path
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise fail()
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key, where)
            except ConfigError as e:
                errors.append(e)
        # A single non-null option gives the more precise message (e.g. a missing input path).
        if len(errors) == 1:
            raise errors[0]
        raise fail()
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise fail()
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, kt, key, where): _coerce(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where, prefix=key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail()
        return value
    if not isinstance(value, tp):
        raise fail()
    return value


def _configured_default(f: dataclasses.Field) -> Any:
    """The default of a field whose factory makes a configured dataclass instance (a rule set with the
    project's own thresholds), else None."""
    if f.default_factory is dataclasses.MISSING:
        return None
    value = f.default_factory()
    return value if dataclasses.is_dataclass(value) and not isinstance(value, type) else None


def build_dataclass(cls: type, data: Any, where: Where, prefix: str, base: Any = None) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types. Keys the mapping
    leaves out keep `base`'s values (else the class defaults); a mapping given for a field whose default
    is a configured instance overrides only the keys it names: `c4: {min_num_sentences: 4}` keeps the
    shipped C4 settings, not the class's (datatrove's) defaults for the rest."""
    if not isinstance(data, dict):  # `dedup: off` is YAML's False
        raise ConfigError(f"{where.at(prefix)}: expected {_type_name(cls)}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = prefix + "."
    unknown = sorted(set(data) - set(fields), key=str)  # YAML keys may be numbers
    if unknown:
        raise ConfigError(f"{where.at(dotted + str(unknown[0]))}: unknown key; "
                          f"expected one of: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        if _is_overrides(f):
            continue  # built on the finished object, below
        if name in data:
            default = None
            if isinstance(data[name], dict):
                configured = getattr(base, name) if base is not None else None
                default = configured if dataclasses.is_dataclass(configured) else _configured_default(f)
            if default is not None:
                kwargs[name] = build_dataclass(type(default), data[name], where, dotted + name, default)
            else:
                kwargs[name] = _coerce(data[name], hints[name], dotted + name, where)
            _check_range(kwargs[name], hints[name], f.metadata.get("range"), dotted + name, where)
        elif base is not None:
            kwargs[name] = getattr(base, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where.at(dotted + name)}: missing required key ({_type_name(hints[name])})")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ checks of ranges and relations
        raise ConfigError(f"{where.whole(prefix)}: {e}") from None
    for name, f in fields.items():
        if _is_overrides(f) and name in data:
            setattr(obj, name, _build_overrides(obj, data[name], f.metadata["overrides"], where, dotted + name))
    return obj


def changed_settings(section: Any, changed: Any) -> dict[str, str]:
    """{dotted key: value as JSON} of the settings where `changed` (a per_key_overrides entry of
    `section`) differs from it, for reports."""
    out: dict[str, str] = {}

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict) and a and b:
            for k in sorted({*a, *b}, key=str):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
        elif a != b:
            out[key] = json.dumps(b, sort_keys=True, default=str)

    overrides = _override_fields(section)
    walk(*({k: v for k, v in _plain(s).items() if k not in overrides} for s in (section, changed)), "")
    return out


def _build_overrides(section: Any, data: Any, fixed: tuple[str, ...], where: Where, key: str) -> dict:
    """{name: `section` with `data[name]`'s changes} for a `per_key_overrides` field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.at(key)}: expected a mapping of names to changes of the keys above, got {data!r}")
    fixed = {*fixed, *_override_fields(section)}
    built = {}
    for name, changes in data.items():
        if not isinstance(changes, dict):
            raise ConfigError(f"{where.at(f'{key}.{name}')}: expected a mapping of the keys to change, got {changes!r}")
        clash = sorted(fixed & set(changes))
        if clash:
            raise ConfigError(f"{where.at(f'{key}.{name}.{clash[0]}')}: one setting for every source; "
                              "set it above, not per source")
        built[str(name)] = build_dataclass(type(section), changes, where, f"{key}.{name}", section)
    return built


# ---------------------------------------------------------------------------------------------
# Run configuration: `run:` plus one section per registered stage.

_SECTIONS: dict[str, type] = {}


def register_section(name: str):
    """Class decorator: the dataclass validates the YAML section `name`."""

    def wrap(cls):
        _SECTIONS[name] = cls
        return cls

    return wrap


@dataclass
class SparkOptions:
    master: str = "local[*]"  # "local[N]" on a laptop; left to spark-submit on a cluster ("" = do not set)
    conf: dict[str, str | int | float | bool] = field(default_factory=dict)  # extra spark.* settings

    def __post_init__(self):
        # YAML reads `spark.executor.cores: 4` as a number; Spark takes every setting as a string ("true").
        self.conf = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.conf.items()}


@dataclass
class BeamOptions:
    # DirectRunner: Beam's FnApiRunner in this process (never Prism, which Beam would download);
    # DataflowRunner, FlinkRunner, ... with their options below
    runner: str = "DirectRunner"
    options: list[str] = field(default_factory=list)  # extra pipeline options, e.g. ["--project=x"]


@dataclass
class RunSection:
    workdir: str  # where every stage writes <workdir>/<stage>/...; local, gs://, s3:// or hdfs://
    engine: Literal["spark", "beam"] = "spark"
    seed: int = 1234
    # Document stages (langid .. decontaminate) process only documents some mix source reads from
    # them or a later stage; the rest are counted as dropped `not_in_mix` and stay in the upstream's
    # output. False: every stage processes every document (e.g. to inspect them all).
    skip_not_in_mix: bool = True
    spark: SparkOptions = field(default_factory=SparkOptions)
    beam: BeamOptions = field(default_factory=BeamOptions)


@dataclass
class RunConfig:
    path: str  # the YAML file it came from, for messages
    run: RunSection
    sections: dict[str, Any]  # stage name -> validated dataclass instance
    raw: dict[str, Any]  # the YAML as loaded, for hashing
    where: Where | None = None  # which values came from --set, for messages; None for a config built in code

    def section(self, name: str) -> Any:
        if name not in self.sections:
            raise ConfigError(f"{self.path}: {name}: missing section (this command needs it)")
        return self.sections[name]

    def section_hash(self, name: str) -> str:
        """Stable hash of one section's effective values (defaults included)."""
        value = self.sections.get(name)
        payload = json.dumps(_plain(value), sort_keys=True, default=str)
        return hashlib.sha256(f"{name}:{payload}".encode()).hexdigest()[:16]


def input_path_values(section: Any) -> list[str]:
    """Every InputPath value of a section (nested lists, mappings and dataclasses included), in field order.

    Files named by a section (blocklists, models, word lists) are inputs of the stage: editing one
    must re-run it, so the runner fingerprints them like raw input files."""
    found: list[str] = []

    def walk(value: Any, tp: Any) -> None:
        if value is None:
            return
        if tp is InputPath:
            found.append(value)
            return
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            for option in typing.get_args(tp):
                if option is not type(None):
                    walk(value, option)
        elif origin in (list, tuple) and isinstance(value, list):
            (inner, *_) = typing.get_args(tp) or (Any,)
            for v in value:
                walk(v, inner)
        elif origin is dict and isinstance(value, dict):
            _, inner = typing.get_args(tp) or (Any, Any)
            for v in value.values():
                walk(v, inner)
        elif dataclasses.is_dataclass(tp) and dataclasses.is_dataclass(value):
            hints = typing.get_type_hints(tp)
            for f in dataclasses.fields(tp):
                walk(getattr(value, f.name), hints[f.name])

    if dataclasses.is_dataclass(section):
        walk(section, type(section))
    return found


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: str) -> Any:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        line = e.object.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}, "
                          f"line {line})") from None
    stream = io.StringIO(text)
    stream.name = path  # YAML's messages name the file
    try:
        return yaml.load(stream, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def _apply_overrides(raw: dict, overrides: dict[str, Any], where: Where, command_line: bool) -> None:
    """Set each dotted key of `overrides` in `raw`, creating the mappings on the way; with
    `command_line`, remember which keys came from --set (for messages and relative paths)."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            key = ".".join(parents[:i + 1])
            if node.get(p) is None:  # absent, or an empty section (`dedup:`)
                node[p] = {}
                if command_line:
                    where.set_keys.setdefault(key, dotted)
            node = node[p]
            if isinstance(node, list):
                raise ConfigError(f"--set {dotted}: {key} is a list, which --set cannot reach into; set the whole list "
                                  f"(--set '{key}=[...]') or edit {where.path}")
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {key} is not a mapping but {node!r}")
        node[leaf] = value
        if command_line:  # what an earlier --set gave inside the value it replaces is gone
            where.set_keys = {key: given for key, given in where.set_keys.items() if not key.startswith(dotted + ".")}
            where.set_keys[dotted] = dotted


def parse_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                 command_line: bool = False) -> RunConfig:
    """Load and validate a run config against the sections registered so far (stage modules register
    theirs on import: `pipeline.stages.load_config` imports them all first). Relative paths (inputs,
    workdir) resolve against the YAML's folder. `overrides` ({dotted key: value}) change the YAML;
    `command_line`: they are --set items, whose relative paths resolve against the current folder."""
    path = str(path)
    raw = _read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    where = Where(path, Path(path).resolve().parent)
    _apply_overrides(raw, overrides or {}, where, command_line)
    known = {"run", *_SECTIONS}
    unknown = sorted(set(raw) - known, key=str)  # YAML keys may be numbers
    if unknown:
        raise ConfigError(f"{where.at(f'{unknown[0]}')}: unknown section; expected one of: {', '.join(sorted(known))}")
    if "run" not in raw:
        raise ConfigError(f"{path}: run: missing required section (needs at least run.workdir)")
    run = build_dataclass(RunSection, {} if raw["run"] is None else raw["run"], where, "run")
    at_workdir = where.at("run.workdir")
    if not run.workdir:  # "" would be the config's own folder
        raise ConfigError(f"{at_workdir}: expected a folder, got ''")
    if run.workdir.startswith(READ_ONLY_SCHEMES):
        raise ConfigError(f"{at_workdir}: {run.workdir!r}: stages write their output there; expected a local "
                          "folder, gs://, s3://, s3a://, hdfs:// or abfs://")
    if not is_remote(run.workdir):
        given, run.workdir = run.workdir, str((where.base_dir_of("run.workdir") / run.workdir).resolve())
        if is_system_folder(run.workdir):
            raise ConfigError(f"{at_workdir}: expected a folder of your own, got {given!r}, "
                              f"which resolves to {run.workdir} (a system folder)")
        if os.path.exists(run.workdir) and not os.path.isdir(run.workdir):
            raise ConfigError(f"{at_workdir}: {run.workdir} exists and is not a folder")
    sections = {}
    for name, cls in _SECTIONS.items():
        data = raw.get(name)
        if data is None:
            # A section with no required keys is available with its defaults.
            try:
                sections[name] = cls()
            except TypeError:
                continue
        else:
            sections[name] = build_dataclass(cls, data, where, name)
    return RunConfig(path=path, run=run, sections=sections, raw=raw, where=where)
