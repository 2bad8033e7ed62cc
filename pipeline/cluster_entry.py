"""The driver script that spark-submit (Dataproc, EMR, standalone) runs: `glmdata` with the session
spark-submit created, its master and resources left to the cluster manager.

    spark-submit ... pipeline/cluster_entry.py run --config dataproc.yaml
"""
import os
import sys

# Run as a script, Python puts this file's folder (pipeline/) first on sys.path, where
# pipeline/inspect.py would shadow the standard library's inspect: take it off.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def main(argv: list[str]) -> int:
    # SparkEngine then reuses the submitted session instead of setting a master or stopping it.
    os.environ["GLMDATA_SPARK_SUBMITTED"] = "1"
    from pipeline.cli import main as glmdata

    return glmdata(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
