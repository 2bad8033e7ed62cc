"""Java is checked only where glmdata starts the JVM itself, against the installed Spark's floor:
Java 11 for Spark 3.5 (Dataproc 2.2/2.3 run it on 11), 17 for Spark 4."""
from __future__ import annotations

import pytest

from pipeline.engines.java import JavaError, oldest_java, require_java


@pytest.mark.parametrize("spark,java", [("3.5.1", 11), ("3.5.9", 11), ("4.0.0", 17), ("4.3.0", 17)])
def test_oldest_java_per_spark_release(spark, java):
    assert oldest_java(spark) == java


def _fake_java(tmp_path, monkeypatch, version: str) -> None:
    java = tmp_path / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2024-01-16\' >&2\n')
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.parametrize("version", ["11.0.22", "17.0.15", "21.0.2"])
def test_java_11_to_21_run_spark_35(tmp_path, monkeypatch, version):
    _fake_java(tmp_path, monkeypatch, version)
    require_java(oldest_java("3.5.9"), "3.5.9")


def test_java_11_is_too_old_for_spark_4_and_the_error_says_so(tmp_path, monkeypatch):
    _fake_java(tmp_path, monkeypatch, "11.0.22")
    with pytest.raises(JavaError, match=r"Spark 4\.0\.0 needs Java 17 or newer; `java -version` says 11\.0\.22"):
        require_java(oldest_java("4.0.0"), "4.0.0")


def test_no_java_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaError, match="no `java` is on PATH"):
        require_java(11, "3.5.9")


@pytest.mark.parametrize("submitted", [True, False])
def test_java_is_checked_only_where_this_process_starts_the_jvm(tmp_path, monkeypatch, submitted):
    """Under spark-submit (PYSPARK_GATEWAY_PORT set) the platform's JVM already runs: an old `java`
    on PATH must not stop the driver. In local mode the installed Spark's floor is checked."""
    import sys

    import pyspark

    from conftest import make_run_config
    from pipeline.engines import spark as spark_engine

    engine = spark_engine.SparkEngine(make_run_config(tmp_path))
    for var in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        monkeypatch.setenv(var, sys.executable)
    if submitted:
        monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    else:
        monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    checked = []
    monkeypatch.setattr(spark_engine, "require_java", lambda *a: checked.append(a))
    monkeypatch.setattr("pyspark.sql.SparkSession.builder", _NoSession())
    with pytest.raises(_Reached):
        engine.spark
    assert checked == ([] if submitted else [(oldest_java(pyspark.__version__), pyspark.__version__)])


class _Reached(Exception):
    pass


class _NoSession:
    """Stands in for SparkSession.builder: the test stops where the session would start."""

    def appName(self, _):
        raise _Reached


def test_the_cli_says_java_is_missing_without_a_traceback(tmp_path, monkeypatch, capsys):
    from conftest import make_run_config
    from pipeline.cli import main

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "A document."}\n')
    cfg = make_run_config(tmp_path, {"ingest": {"sources": [{"name": "notes", "format": "jsonl",
                                                             "paths": [str(docs)]}]}})
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["ingest", "--config", cfg.path]) == 3
    err = capsys.readouterr().err
    assert "needs Java" in err and "no `java` is on PATH" in err and "Traceback" not in err
