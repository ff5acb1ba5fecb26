"""IBSI chapter 1 feature families: each module has ``compute(roi, settings) -> {IBSI tag: value}``.

Shared by the families: ``common`` (:class:`~.common.Undefined`, the per-feature registry and runner,
the 1D :class:`~.common.Sample`, texture feature descriptions, matrices given by their cells and their
avg / comb aggregation), ``directions`` (neighbour offsets) and ``zones`` (the count matrix and the
per-dimension aggregation of GLSZM, GLDZM, NGTDM and NGLDM).
"""
