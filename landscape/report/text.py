"""Numbers as a report states them: significant digits, intervals, and which way an interval points."""

from __future__ import annotations

import math
from typing import Any


def fmt(v: Any, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits; ``n/a`` for missing or non-finite values."""
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def fmt_interval(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``."""
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def verdict(low: float, high: float) -> str:
    """Which way a 95% interval of a difference points, or that it cannot say."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval (one seed)"
    if low > 0:
        return "positive (the interval excludes 0)"
    if high < 0:
        return "negative (the interval excludes 0)"
    return "not distinguishable from 0 at 95%"
