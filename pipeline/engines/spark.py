"""Spark adapter: local mode on a laptop, the same code through spark-submit on a cluster."""
from __future__ import annotations

import functools
import gc
import os
import sys
from typing import Any, Callable

from pipeline.config import RunConfig
from pipeline.engines.java import oldest_java, require_java
from pipeline.engines.spark_logging import quiet_conf


# Local mode's one JVM compiles with C1 only: C2's compilation costs more CPU than its faster code saves in
# a local run (JVM start, encode and dedup measured in docs/benchmarks.md, encode section). A cluster's
# executors keep the JVM's default; run.spark.conf's own spark.driver.extraJavaOptions replaces this.
LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"
# Local mode's Python workers: Arrow's allocator (mimalloc) hands memory it frees back with MADV_FREE, not
# MADV_DONTNEED, so the next batch reuses those pages without a page fault and zeroing; the kernel still
# takes them back under memory pressure. Encode 32 MB: 3,400-6,300 page faults per run -> under 300, the
# workers' system CPU 0.03-0.07 -> 0.01 s (docs/benchmarks.md, encode section). Not on a cluster: YARN's
# memory check counts such pages as resident.
LOCAL_WORKER_ENV = {"spark.executorEnv.MIMALLOC_PURGE_DECOMMITS": "0"}


class SparkEngine:
    name = "spark"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self._spark = None

    @property
    def spark(self):
        """The SparkSession, started on first use (an existing one under spark-submit is reused)."""
        if self._spark is None:
            import pyspark
            from pyspark.sql import SparkSession

            if "PYSPARK_GATEWAY_PORT" not in os.environ:  # set by spark-submit, whose JVM (the platform's Java) runs
                require_java(oldest_java(pyspark.__version__), pyspark.__version__)

            # Executors must run the same Python as the driver in local mode.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            opts = self.cfg.run.spark
            builder = SparkSession.builder.appName("glmdata")
            master = "" if os.environ.get("GLMDATA_SPARK_SUBMITTED") else opts.master  # spark-submit's own
            if master:
                builder = builder.master(master)
            local = master.startswith("local")
            conf = {
                "spark.sql.execution.arrow.pyspark.enabled": "true",
                "spark.python.worker.reuse": "true",  # models load once per worker process
                "spark.sql.shuffle.partitions": "8",
                "spark.driver.memory": "2g",
                "spark.local.dir": os.environ.get("SPARK_LOCAL_DIRS", "/tmp"),
            }
            if local:
                conf["spark.driver.extraJavaOptions"] = LOCAL_JAVA_OPTIONS
                conf.update(LOCAL_WORKER_ENV)
            conf.update(opts.conf)
            conf = quiet_conf(conf, local=local)
            for k, v in conf.items():
                builder = builder.config(k, v)
            self._spark = builder.getOrCreate()
            self._spark.sparkContext.setLogLevel("WARN")
        return self._spark

    def map_units(self, label: str, fn: Callable[[Any], dict], units: list) -> list[dict]:
        if not units:
            return []
        sc = self.spark.sparkContext
        sc.setJobDescription(f"glmdata {label}: {len(units)} units")
        # One partition per unit: a unit is a file or slice the task streams through.
        return sc.parallelize(units, numSlices=len(units)).map(functools.partial(run_unit, fn)).collect()

    def close(self) -> None:
        if self._spark is not None and not os.environ.get("GLMDATA_SPARK_SUBMITTED"):
            self._spark.stop()
            self._spark = None


def run_unit(fn: Callable[[Any], dict], unit: Any) -> dict:
    """fn(unit) in a Spark Python worker; after its first unit the worker's surviving objects (imports,
    models: what its next tasks reuse) are frozen out of Python's cyclic garbage collector. PySpark's
    daemon runs a full gc.collect() after every task of a reused worker, and it walked all of them each
    time: ~100k objects, ~0.04 CPU s per task (bench/encode.py --profile). Objects made later are still
    collected; frozen ones are still freed when no longer referenced."""
    result = fn(unit)
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    return result
