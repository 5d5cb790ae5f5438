"""Data-aware merging: Fisher merging and RegMean for causal LMs.

A "prepare" step (:mod:`mergesmith.datamerge.prepare`) runs each model on its calibration
data, writes per-tensor statistics (diagonal Fisher, or input Gram matrices of linear layers)
to a cache, and adds a per-model `stats` parameter to the recipe; the merge then runs through
the normal planner and executor, where :mod:`mergesmith.datamerge.methods` reads each
tensor's statistics by name.
"""

# The registry imports our methods module; loading it first keeps that import acyclic when
# this package is imported before mergesmith.methods.
import mergesmith.methods  # noqa: F401
