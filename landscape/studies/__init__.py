"""Studies: a plan of runs plus a report template, built on :mod:`landscape.training` (sweeps),
:mod:`landscape.analysis` (each run's ``sharpness.json``), :mod:`landscape.runs` (reading, grouping,
statistics, as ``landscape compare`` does) and :mod:`landscape.report`.

* ``demo_plan``: the empirical SAM study (direction vs magnitude) in small: settings, runs, pairs;
* ``demo``: runs the plan (``landscape demo``), each stage skipping what is on disk;
* ``demo_report``: the report template that states its finding.
"""
