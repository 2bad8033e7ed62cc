"""Spark's own logging, quiet for a local run: the driver JVM at WARN with the warnings that are
harmless on a laptop (no native Hadoop library, the cluster manager's local dirs) turned off, and
no progress bars written into a file or pipe. `glmdata -v` keeps Spark's defaults."""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile

LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
logger.hadoop_native.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop_native.level = error
logger.spark_conf.name = org.apache.spark.SparkConf
logger.spark_conf.level = error
logger.spark_utils.name = org.apache.spark.util.Utils
logger.spark_utils.level = error
"""


def quiet() -> bool:
    return not logging.getLogger().isEnabledFor(logging.DEBUG)


def log4j_java_option() -> str:
    """-Dlog4j2.configurationFile=<a file holding LOG4J2>, written once per content."""
    path = os.path.join(tempfile.gettempdir(), f"glmdata-log4j2-{hashlib.sha1(LOG4J2.encode()).hexdigest()[:10]}.properties")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(LOG4J2)
        os.replace(tmp, path)
    return f"-Dlog4j2.configurationFile=file:{path}"


def quiet_conf(conf: dict, local: bool) -> dict:
    """`conf` with the quiet settings added (the user's own settings win; Java options are appended)."""
    out = dict(conf)
    out.setdefault("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
    if local and quiet():
        key = "spark.driver.extraJavaOptions"
        out[key] = " ".join(x for x in (out.get(key), log4j_java_option()) if x)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no "hostname resolves to a loopback address"
    return out
