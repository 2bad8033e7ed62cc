"""The Java a Spark release needs, checked before this process starts a JVM itself."""
from __future__ import annotations

import shutil
import subprocess


class JavaError(RuntimeError):
    pass


def oldest_java(spark_version: str) -> int:
    """The oldest Java the Spark release supports among those this project runs on: Spark 4 needs 17
    (17, 21); Spark 3.5 runs on 11, 17 and 21 (Dataproc 2.2/2.3 ship 11)."""
    return 17 if int(spark_version.split(".")[0]) >= 4 else 11


def require_java(min_major: int, spark_version: str = "") -> None:
    """Say plainly that Java is missing or too old, instead of a py4j stack trace. Only for a JVM this
    process starts itself: under spark-submit the platform's JVM is already running."""
    spark = f"Spark {spark_version}" if spark_version else "Spark"
    java = shutil.which("java")
    if java is None:
        raise JavaError(f"{spark} needs Java {min_major} or newer, and no `java` is on PATH. "
                        "Install it (Debian: apt-get install openjdk-17-jre-headless) or use --engine beam.")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        version = out.split('"')[1]
        major = int(version.split(".")[0] if not version.startswith("1.") else version.split(".")[1])
    except (IndexError, ValueError):
        return
    if major < min_major:
        raise JavaError(f"{spark} needs Java {min_major} or newer; `java -version` says {version}.")
