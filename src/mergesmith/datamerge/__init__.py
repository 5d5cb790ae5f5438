"""Data-aware merging: the calibration statistics of Fisher merging and RegMean.

The methods themselves are `fisher` and `regmean` in mergesmith.methods.data_aware; each
declares the statistic it reads. Before such a merge the api runs each model on its
calibration data (:mod:`mergesmith.datamerge.calibration`), writes per-tensor statistics
(diagonal Fisher, or input Gram matrices of linear layers) to a cache, and hands the planner
a recipe with a per-model `stats` file (:mod:`mergesmith.datamerge.prepare`).
"""
