"""Callbacks that add a sparsehalo penalty to other training frameworks' loops.

- :mod:`sparsehalo.integrations.lightning`: ``SparsehaloCallback`` for ``lightning.Trainer``
  (``pip install 'sparsehalo[lightning]'``);
- :mod:`sparsehalo.integrations.hf`: ``SparsehaloCallback`` and ``SparsehaloTrainer`` for
  ``transformers.Trainer`` (``pip install 'sparsehalo[hf]'``).

Importing this package imports neither framework: each lives in its own module, imported on demand.
"""
