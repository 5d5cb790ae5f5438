"""Recipe search: greedy model soups and CMA-ES evolutionary merging (docs/search.md).

Every candidate is a plain mergesmith recipe, merged in memory with
`mergesmith.api.merge_state_dicts` and loaded into one resident model (GUIDE: "Search reuses
the same path"), so the best recipe found is one `mergesmith merge` reproduces.
"""
