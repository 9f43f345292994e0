"""Reports built from results: Markdown and a self-contained HTML page of sections, tables and figures.

* :mod:`landscape.report.document`: :class:`Report`, its blocks and the two renderings;
* :mod:`landscape.report.text`: numbers, intervals and verdicts as sentences state them.

Generic: a study (:mod:`landscape.studies`) decides what the sections say.
"""

from landscape.report.document import Report
from landscape.report.text import fmt, fmt_interval, verdict

__all__ = ["Report", "fmt", "fmt_interval", "verdict"]
