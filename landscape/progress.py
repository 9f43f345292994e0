"""Progress bars: shown on a terminal, silent with ``quiet=True`` or when stderr is not a TTY."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def progress_enabled(quiet: bool = False) -> bool:
    return not quiet and sys.stderr.isatty()


class Progress:
    """A tqdm bar or a no-op with the same ``update``/``set_postfix``/``close`` calls."""

    def __init__(self, total: int | None, desc: str, *, quiet: bool = False, unit: str = "it") -> None:
        self._bar: Any = None
        if progress_enabled(quiet):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix(**kwargs)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], desc: str, *, total: int | None = None, quiet: bool = False) -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, quiet=quiet) as bar:
        for item in items:
            yield item
            bar.update()
