"""Dedup clustering on Spark DataFrames: signatures in, per-part assignment table out.

Candidate edges:
* exact text and same URL: every member of a key group links to the group's smallest node;
* near duplicates: exact representatives only (an exact copy adds nothing), one row per
  (band, bucket key); every member of a bucket links to the bucket's smallest node, so a bucket of
  100,000 copies becomes a star of 100,000 edges, never a clique of 5 billion pairs;
  optionally kept only when the exact Jaccard of the two shingle sets reaches the threshold.
Connected components by alternating large-star and small-star (Kiveris et al., "Connected
Components in MapReduce and Beyond", SoCC 2014) until the edges form stars around each
component's smallest node, checkpointed every round so the lineage stays one round long.
Signatures, checkpoints and assignments go through pipeline.storage, like the documents
(pipeline/engines/spark_storage.py says why), so dedup works on every scheme the stages do.
Against a dedup index: the indexed documents that share a key with a new document
(`neighbour_files`, found by `pipeline.dedup.index.find_neighbours`) join the graph as nodes that
always win their cluster ("old wins"): new documents clustered with one are dropped as
dup_*_existing, naming it and its run; indexed documents are never rewritten. Those a new document
replaces (itself in an earlier run of this snapshot) stay out of the graph, and a run that retires
them from its own index writes them out for it.
Cross-document paragraph dedup (`paragraph_removals`) counts line keys over the survivors with
one groupBy, as CCNet counts paragraph hashes, and joins the counts back to the documents.
Nothing is collected to the driver except counts.
"""
from __future__ import annotations

import contextlib
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import BooleanType, StructType

from pipeline import storage
from pipeline.dedup.index import Retiring, replaced_dir, shingle_sets
from pipeline.dedup.passes import (EXISTING, PARAGRAPH_SCHEMA, REASON_EXACT, REASON_NEAR, REASON_URL, SIGNATURE_SCHEMA,
                                   assignment_dir, parquet_files)
from pipeline.engines.spark_storage import read_parquet, write_groups, write_partitions


def with_root(df: DataFrame, keys: list[str], root: str) -> DataFrame:
    """`df` with the smallest node of each row's key group as `root` (one shuffle, no join back)."""
    return df.withColumn(root, F.min("node").over(Window.partitionBy(*keys)))


def star_edges(df: DataFrame, keys: list[str]) -> DataFrame:
    """(u, v): every node of a key group -> the group's smallest node (v < u)."""
    return with_root(df, keys, "v").where(F.col("node") != F.col("v")).select(F.col("node").alias("u"), "v")


def _similar(threshold: float):
    """Arrow UDF body: whether each pair of shingle sets reaches the threshold (a null set: never)."""
    def similar(su: pa.Array, sv: pa.Array) -> pa.Array:
        from filters.minhash import jaccard_at_least

        return pc.and_(pa.array(jaccard_at_least(*shingle_sets(su), *shingle_sets(sv), threshold)),
                       pc.and_(su.is_valid(), sv.is_valid()))
    return similar


def _similar_row(threshold: float):
    """`_similar` for one pair, as a pickled Python UDF (Spark before 4.1 has no Arrow UDF without pandas)."""
    arrow = _similar(threshold)

    def similar(su, sv):
        return arrow(pa.array([su], pa.binary()), pa.array([sv], pa.binary()))[0].as_py()
    return similar


def similarity_udf(threshold: float):
    """The verification's UDF: Arrow batches where Spark has `arrow_udf` (4.1+), pickled rows before."""
    try:
        from pyspark.sql.functions import arrow_udf
    except ImportError:
        return F.udf(_similar_row(threshold), BooleanType())
    return arrow_udf(_similar(threshold), BooleanType())


def verified(near: DataFrame, sets: DataFrame, threshold: float) -> DataFrame:
    """The pairs (u, v) whose shingle sets (`sets`: node, shingles as bytes; sorted, distinct) have a
    Jaccard similarity >= threshold. The JVM moves each set as one binary value and a Python worker
    merges the two (filters.minhash.jaccard_at_least): Spark's array_except over the same sets,
    compiled by C1 in local mode, cost ~100 ns per value, ten times the joins around it."""
    pairs = (near.join(sets.select(F.col("node").alias("u"), F.col("shingles").alias("su")), "u")
             .join(sets.select(F.col("node").alias("v"), F.col("shingles").alias("sv")), "v"))
    return pairs.where(similarity_udf(threshold)("su", "sv")).select("u", "v")


def candidate_edges(sig: DataFrame, p, threshold: float) -> DataFrame:
    """Distinct (u, v), v < u: exact-text and same-URL stars, and verified LSH bucket stars."""
    edges = []
    by_text = with_root(sig.select("node", "text_key", "n_shingles", "bands"), ["text_key"], "text_root")
    if p.exact:
        edges.append(by_text.where(F.col("node") != F.col("text_root"))
                     .select(F.col("node").alias("u"), F.col("text_root").alias("v")))
    if p.url:
        edges.append(star_edges(sig.select("node", "url_key").where(F.col("url_key").isNotNull()), ["url_key"]))
    if p.near:
        reps = by_text.where(F.col("n_shingles") > 0)
        if p.exact:  # exact copies already link to their representative
            reps = reps.where(F.col("node") == F.col("text_root"))
        buckets = reps.select("node", F.posexplode("bands").alias("band", "key"))
        near = star_edges(buckets, ["band", "key"]).distinct()
        if p.verify:
            near = verified(near, sig.select("node", "shingles"), threshold)
        edges.append(near)
    if not edges:
        return sig.sparkSession.createDataFrame([], "u long, v long")
    out = edges[0]
    for e in edges[1:]:
        out = out.unionByName(e)
    return out.distinct()


def _large_star(e: DataFrame) -> DataFrame:
    """Each node's larger neighbours link to the smallest node of its closed neighbourhood."""
    sym = e.select(F.col("u").alias("x"), F.col("v").alias("y")).unionByName(
        e.select(F.col("v").alias("x"), F.col("u").alias("y")))
    m = sym.groupBy("x").agg(F.least(F.min("y"), F.col("x")).alias("m"))
    return sym.where(F.col("y") > F.col("x")).join(m, "x").select(F.col("y").alias("u"), F.col("m").alias("v"))


def _small_star(e: DataFrame) -> DataFrame:
    """Each node and its smaller neighbours link to the smallest of them."""
    m = e.groupBy("u").agg(F.min("v").alias("m"))
    joined = e.join(m, "u")
    out = joined.where(F.col("v") != F.col("m")).select(F.col("v").alias("u"), F.col("m").alias("v")).unionByName(
        m.select("u", F.col("m").alias("v")))
    return out.distinct()


def _is_star_forest(e: DataFrame) -> bool:
    """Every node points at one node at most, and a node pointed at points nowhere: each
    component is a star around its smallest node. One aggregation, one job."""
    ends = e.select(F.col("u").alias("n"), F.lit(1).alias("out"), F.lit(0).alias("in")).unionByName(
        e.select(F.col("v").alias("n"), F.lit(0).alias("out"), F.lit(1).alias("in")))
    degrees = ends.groupBy("n").agg(F.sum("out").alias("out"), F.sum("in").alias("in"))
    return degrees.where((F.col("out") > 1) | ((F.col("out") > 0) & (F.col("in") > 0))).limit(1).count() == 0


def connected_components(edges: DataFrame, max_rounds: int, checkpoint_dir: str) -> tuple[DataFrame, int]:
    """(node, root) for every node with an edge; root = the component's smallest node.
    `edges`: distinct (u, v) with v < u, checkpointed; each round is checkpointed under `checkpoint_dir`."""
    e = edges
    rounds = 0
    while not _is_star_forest(e):
        if rounds == max_rounds:
            raise RuntimeError(f"dedup: connected components did not converge in {max_rounds} rounds")
        e, _ = checkpoint(_small_star(_large_star(e)), storage.join(checkpoint_dir, f"round-{rounds + 1}"))
        rounds += 1
    roots = e.select(F.col("v").alias("node")).distinct().withColumn("root", F.col("node"))
    return e.select(F.col("u").alias("node"), F.col("v").alias("root")).unionByName(roots), rounds


def survivor_key(order: list[str]) -> list:
    """Sort key (smallest first) of the survivor rule: indexed documents first ("old wins"), then
    `order` (higher quality step, less copy noise, earlier crawl date, longer, smaller id)."""
    by = {"q_score": F.negative("q_rank"), "noise": F.col("noise"), "crawl_date": F.col("date_key"),
          "length": F.negative("length"), "id": F.col("id")}
    return [F.col("origin").alias("_origin")] + [by[k].alias(k) for k in order] + [F.col("node").alias("_node")]


_GRAPH_COLUMNS = ["node", "text_key", "url_key", "n_shingles", "bands", "shingles"]
_RULE_COLUMNS = {"part": "int", "row": "long", "id": "string", "length": "long", "q_rank": "long", "noise": "long",
                 "date_key": "string"}


def with_replaced(neighbours: DataFrame, sig: DataFrame) -> DataFrame:
    """The indexed `neighbours` with `replaced`: whether a new document replaces it. An indexed document
    with the id and URL (text, when either has no URL) of a new one is that document in an earlier run
    of this input (re-run after an upstream or config change): the new one replaces it, never its
    duplicate. The id alone is not enough: another dump laid out as this one (same source name, paths
    and offsets) gives other documents the same ids. One outer join serves the graph and the retiring:
    a row no new document replaces comes out once; one that several replace (an id repeated in the
    run) once per match, all marked replaced, which only the retiring reads (it takes each node once)."""
    again = sig.select(F.col("id").alias("_id"), F.col("url_key").alias("_url"), F.col("text_key").alias("_text"))
    same_document = (F.col("id") == F.col("_id")) & F.when(
        F.col("url_key").isNotNull() & F.col("_url").isNotNull(), F.col("url_key") == F.col("_url")
    ).otherwise(F.col("text_key") == F.col("_text"))
    return neighbours.join(again, same_document, "left_outer").select(
        *neighbours.columns, F.col("_id").isNotNull().alias("replaced"))


def retired_rows(marked: DataFrame, retiring: Retiring) -> DataFrame:
    """(file, node) of the neighbours `with_replaced` marked replaced that lie in the parts `retiring`
    retires; a node once per new document replacing it (`RetireTask` takes each once)."""
    return marked.where(F.col("replaced") & F.col("file").isin(sorted(retiring.files))).select("file", "node")


def with_indexed_neighbours(sig: DataFrame, neighbours: DataFrame | None) -> DataFrame:
    """`sig` (origin 1) plus the indexed documents (origin 0) that share a key it clusters by with it
    but those it replaces (`neighbours`: `with_replaced`'s), each with the survivor a member of its
    cluster reports (an indexed document's own survivor) and that one's run."""
    new = sig.select(*_GRAPH_COLUMNS, *_RULE_COLUMNS, F.lit(1).alias("origin"), F.col("id").alias("survivor"),
                     F.lit(None).cast("string").alias("run"))
    if neighbours is None:
        return new
    neighbours = neighbours.where(F.col("in_graph") & ~F.col("replaced"))
    rule_defaults = [F.lit(None).cast(kind).alias(name) for name, kind in _RULE_COLUMNS.items() if name != "id"]
    return new.unionByName(neighbours.select(*_GRAPH_COLUMNS, "id", *rule_defaults, F.lit(0).alias("origin"),
                                             "survivor", F.col("survivor_run").alias("run")))


def _hadoop_reads(spark: SparkSession, path: str) -> bool:
    """Whether Spark's own readers reach `path`: Hadoop has a filesystem for its scheme (file, hdfs,
    gs:// on Dataproc, s3:// on EMR) and no S3-compatible endpoint is configured for pyarrow only."""
    scheme = path.split("://", 1)[0] if "://" in path else "file"
    if scheme in ("s3", "s3a") and (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")):
        return False
    try:
        spark._jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, spark._jsc.hadoopConfiguration())
    except Py4JJavaError:  # "No FileSystem for scheme"
        return False
    return True


def _spark_uri(path: str) -> str:
    return path if "://" in path else "file://" + os.path.abspath(path)


def read_columnar(spark: SparkSession, files: list[str], schema: StructType | None = None) -> DataFrame:
    """The Parquet `files` (those the tasks that wrote them returned), of `schema` when given (no job
    infers it), read by Spark's own reader where it reaches them: columnar, in the JVM. `read_parquet`
    sends every value through a Python worker and converts it again in the JVM, the largest cost of
    clustering when the rows carry shingle sets."""
    if not files or not _hadoop_reads(spark, files[0]):
        return read_parquet(spark, files, schema)
    reader = spark.read.option("recursiveFileLookup", "true")  # no partition columns from part=N/
    if schema is not None:
        reader = reader.schema(schema)
    return reader.parquet(*[_spark_uri(f) for f in files])


def checkpoint(df: DataFrame, folder: str) -> tuple[DataFrame, int]:
    """`df` computed once into `folder` and read back by `read_columnar`, cut from its lineage; with its
    row count. Not localCheckpoint(): its blocks live on the executors, and losing one (a preempted node,
    the executor test_cluster kills) would lose rows that can no longer be recomputed. Written by Spark's
    own writer where it reaches `folder`: no Python worker takes the rows, so the verification's UDF
    finds the map passes' idle workers instead of starting its own; the count is read from the
    files' footers."""
    spark = df.sparkSession
    if not _hadoop_reads(spark, folder):
        rows, files = write_partitions(df, folder)
        return read_columnar(spark, files, df.schema), rows
    storage.rmtree(folder)  # rows of an earlier, interrupted attempt at this step
    df.write.parquet(_spark_uri(folder))
    files = parquet_files(folder)
    rows = sum(pq.read_metadata(storage.open_input(f)).num_rows for f in files)
    return read_columnar(spark, files, df.schema), rows


@contextlib.contextmanager
def map_pass_workers(spark: SparkSession):
    """Python UDFs (the verification's) run in the Python workers the map passes started, which
    have numba and the stage's modules loaded, only when their environment is the same: Spark's
    simplified UDF tracebacks add a variable to it, which gives UDFs a daemon and workers of their own
    (~1.5 CPU s each to import and load compiled code again). Tracebacks are unchanged otherwise."""
    key = "spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "false")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def assignments(spark: SparkSession, sig_files: list[str], assign_root: str, checkpoint_dir: str, p,
                threshold: float, survivor_order: list[str], max_rounds: int, neighbour_files: list[str],
                retiring: Retiring | None) -> dict:
    """Write the per-part assignment table under `assign_root/part=N/` and, when `retiring`, the rows
    of its indexed parts that the run replaces under its root's file=N/; return small counts.
    `sig_files`: the signature pass's files."""
    sig = read_columnar(spark, sig_files, from_arrow_schema(SIGNATURE_SCHEMA)).where(F.col("error").isNull())
    neighbours = None
    if neighbour_files:  # the indexed rows come through Python (read_parquet) and join `sig` once, not once per use
        neighbours = with_replaced(read_parquet(spark, neighbour_files), sig)
        if retiring is not None:  # read by the replaced rows' write and by the graph; else by the graph alone
            neighbours = neighbours.persist(StorageLevel.MEMORY_AND_DISK)
    graph = with_indexed_neighbours(sig, neighbours)
    if neighbours is not None:
        graph = graph.persist(StorageLevel.MEMORY_AND_DISK)
    if retiring is not None:
        storage.rmtree(retiring.root)  # an interrupted attempt's files
    try:
        if neighbours is not None and retiring is not None:
            write_groups(retired_rows(neighbours, retiring).repartition("file").sortWithinPartitions("file", "node"),
                         "file", retiring.root, lambda file: replaced_dir(retiring.root, file))
        with map_pass_workers(spark):
            return _assign(graph, assign_root, checkpoint_dir, p, threshold, survivor_order, max_rounds)
    finally:
        graph.unpersist()
        if neighbours is not None:
            neighbours.unpersist()


def _assign(graph: DataFrame, assign_root: str, checkpoint_dir: str, p, threshold: float, survivor_order: list[str],
            max_rounds: int) -> dict:
    """`assignments` on the graph rows (persisted by the caller)."""
    edges, n_edges = checkpoint(candidate_edges(graph, p, threshold), storage.join(checkpoint_dir, "edges"))
    comps, rounds = connected_components(edges, max_rounds, checkpoint_dir)
    members = comps.join(graph.select("node", "origin", "survivor", "run", *_RULE_COLUMNS, "text_key", "url_key"),
                         "node")
    best = members.groupBy("root").agg(
        F.min(F.struct(*survivor_key(survivor_order), F.col("text_key").alias("_text_key"),
                       F.col("url_key").alias("_url_key"), F.col("survivor").alias("_id"),
                       F.col("run").alias("_run"))).alias("best"),
        F.count("*").alias("cluster_size"))
    existing = F.when(F.col("best._origin") == 0, F.lit(EXISTING)).otherwise(F.lit(""))
    out = members.where(F.col("origin") == 1).join(best, "root").select(
        "part", "row", F.col("best._id").alias("cluster_id"), "cluster_size",
        F.when(F.col("node") == F.col("best._node"), F.lit(None))
         .when(F.col("text_key") == F.col("best._text_key"), F.concat(F.lit(REASON_EXACT), existing))
         .when(F.col("url_key") == F.col("best._url_key"), F.concat(F.lit(REASON_URL), existing))
         .otherwise(F.concat(F.lit(REASON_NEAR), existing)).alias("reason"),
        F.col("best._run").alias("survivor_run"))
    storage.rmtree(assign_root)  # an interrupted attempt's files
    write_groups(out.repartition("part").sortWithinPartitions("part", "row"), "part", assign_root,
                 lambda part: assignment_dir(assign_root, part))
    return {"candidate_edges": n_edges, "cc_rounds": rounds}


def _limit_by_lang(table: dict[str, int]):
    """A column expression: `table`'s value for the row's lang (Chinese variants as zh), else `*`'s."""
    lang = F.when(F.col("lang").startswith("zh") | F.col("lang").startswith("cmn"), F.lit("zh")).otherwise(F.col("lang"))
    expr = F.lit(table["*"])
    for name, value in table.items():
        if name != "*":
            expr = F.when(lang == F.lit(name), F.lit(value)).otherwise(expr)
    return expr


def paragraph_removals(spark: SparkSession, para_files: list[str], assign_root: str, removal_root: str,
                       max_docs: dict) -> dict:
    """Count each line key over the surviving documents (a shuffle by key); write, per part, the
    (row, key, docs) of lines found in more documents than their language allows. `para_files`: the
    signature pass's paragraph files."""
    paras = read_columnar(spark, para_files, from_arrow_schema(PARAGRAPH_SCHEMA))
    survivors = paras
    assigned = [f for files in storage.listed_files(assign_root).values() for f in files]
    if assigned:
        dups = read_columnar(spark, assigned).where(F.col("reason").isNotNull()).select("part", "row")
        survivors = paras.join(dups, ["part", "row"], "left_anti")
    counts = survivors.groupBy("key").agg(F.count("*").alias("docs"))
    remove = survivors.join(counts, "key").where(F.col("docs") > _limit_by_lang(max_docs))
    remove = remove.select("part", "row", "key", "docs")
    storage.rmtree(removal_root)  # an interrupted attempt's files
    files = write_groups(remove.repartition("part").sortWithinPartitions("part", "row", "key"), "part", removal_root,
                         lambda part: assignment_dir(removal_root, part))
    written = read_columnar(spark, files, remove.schema)  # the files, not the joins again
    return {"paragraph_keys_removed": written.select("key").distinct().count()}
