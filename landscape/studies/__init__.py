"""Studies: a plan of runs plus a report template, built on :mod:`landscape.training` (sweeps),
:mod:`landscape.runs` (grouping, statistics) and :mod:`landscape.report`.

* ``demo``: the empirical SAM study (direction vs magnitude) in small, ``landscape demo``.
"""
