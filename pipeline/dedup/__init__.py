"""Dedup stage internals: the map passes and the Spark and Beam clustering (see pipeline/stages/dedup.py)."""
