"""The fused graph: its I/O contract (:mod:`~gpedge.graph.contract`, torch-free) and the torch
modules exported as one graph per model (:mod:`~gpedge.graph.fused`, :mod:`~gpedge.graph.mask`).

Importing this package imports nothing heavy; the torch modules need the ``[train]`` extra.
"""
