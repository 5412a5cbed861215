"""Benchmarks: the multi-model, multi-seed runner and the inference cost benchmark.

* ``python -m recbole_flexcode.benchmark`` (:mod:`.runner`, :mod:`.tables`): trains every
  requested row (a RecBole baseline, a FlexCode variant or a FlexCode token budget) for every
  seed through :func:`recbole_flexcode.quick_start.run`, resumes where it stopped, and writes
  ``<out>/<dataset>/benchmark.md`` / ``benchmark.csv`` (mean ± std over seeds, with quoted
  published numbers in a separate block, :mod:`.published`).
* ``python -m recbole_flexcode.benchmark.selected`` (:mod:`.selected`): the same tables with each
  FlexCode run at the item-head inference setting validation chose among those ``diagnose``
  evaluated (``selected.md`` / ``selected.csv``).
* ``python -m recbole_flexcode.benchmark.cost`` (:mod:`.cost`): trie-constrained beam search vs
  full-sort scoring throughput as the catalogue grows.

Submodules are imported on demand (``python -m`` of a submodule must not find it pre-imported).
"""

__all__ = ["runner", "tables", "selected", "published", "cost"]
