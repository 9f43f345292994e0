"""JSON with one policy for floats that are not finite.

Standard JSON (RFC 8259) has no NaN or infinity, and Python's ``json`` writes bare ``NaN`` and
``Infinity`` tokens that ``jq``, JavaScript and many JSON libraries refuse. Every file the toolkit
writes follows one policy instead:

- NaN (an undefined or missing value: a diverged loss, a statistic of fewer than two seeds) -> ``null``;
- +inf / -inf (a meaningful bound: an unbounded barrier, a ratio over zero) -> the strings ``"inf"``
  and ``"-inf"``, which ``float()`` reads back.

:func:`encode` applies the policy (and turns numpy scalars and arrays, tuples and paths into plain
JSON values); :func:`dumps` refuses anything left non-standard. Reading back, :func:`decode_float`
turns a stored number, ``null``, ``"inf"`` or ``"-inf"`` into a float (``null`` -> NaN) and
:func:`decode_floats` restores the infinities anywhere in a loaded document (``null`` stays ``None``:
only the field's meaning says whether it was a NaN).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

INF = "inf"
NEG_INF = "-inf"


def encode_float(x: float) -> float | str | None:
    """A float under the policy: finite as is, NaN -> ``None``, +/-inf -> ``"inf"``/``"-inf"``."""
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return None
    return INF if x > 0 else NEG_INF


def encode(obj: Any) -> Any:
    """``obj`` as plain JSON values: dicts, lists, str, int, finite float, bool, None."""
    if isinstance(obj, dict):
        return {_key(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [encode(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return encode(obj.item())
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _key(k: Any) -> Any:
    """A dict key as ``json`` writes it (str, int, float, bool, None as they are; numpy scalars as
    their Python value; anything else as ``str``)."""
    if isinstance(k, np.generic):
        k = k.item()
    return k if k is None or isinstance(k, (str, int, float, bool)) else str(k)


def dumps(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """JSON text of ``obj`` under the policy; a value JSON cannot hold raises ``TypeError``."""
    return json.dumps(encode(obj), indent=indent, sort_keys=sort_keys, allow_nan=False, default=json_default)


def decode_float(value: Any) -> float:
    """A float written under the policy: a number, ``None`` (NaN), ``"inf"``, ``"-inf"`` (or ``"nan"``).

    Raises:
        ValueError: ``value`` is none of these.
    """
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in (INF, NEG_INF, "+inf", "nan"):
        return float(value)
    raise ValueError(f"expected a number, null, 'inf' or '-inf', got {value!r}")


def decode_floats(obj: Any) -> Any:
    """``obj`` (a loaded document) with every ``"inf"``/``"-inf"`` string back as a float."""
    if isinstance(obj, dict):
        return {k: decode_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_floats(v) for v in obj]
    if obj == INF:
        return math.inf
    if obj == NEG_INF:
        return -math.inf
    return obj


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths (values are not re-encoded)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot encode {type(o).__name__} as JSON")
