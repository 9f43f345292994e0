"""A user's dataset factory, ``package.module:factory``, called following the README's contract."""

from __future__ import annotations

import inspect
from typing import Any

from landscape.errors import DataError, NoSplitError
from landscape.io.factories import resolve_factory


def factory_dataset(name: str, split: str, kwargs: dict[str, Any] | None = None) -> Any:
    """The map-style dataset the factory ``name`` provides for ``split``, called with ``kwargs``.

    Raises:
        DataError: the factory cannot be imported or returns no map-style dataset.
        NoSplitError: a factory without a ``split`` parameter is asked for the test split.
    """
    try:
        factory = resolve_factory(name, kind="dataset")
    except Exception as exc:
        raise DataError(str(exc)) from exc
    ds = call_dataset_factory(factory, name, split, kwargs=kwargs)
    if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
        raise DataError(f"dataset factory {name!r} returned {type(ds).__name__}, not a map-style Dataset")
    return ds


def accepts_split(factory: Any) -> bool:
    """Whether ``factory`` takes a ``split`` keyword (a parameter of that name, or ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): assume the plain contract
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "split" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )


def call_dataset_factory(factory: Any, name: str, split: str, *, kwargs: dict[str, Any] | None = None) -> Any:
    """Call a user's dataset factory for ``split`` following the README's contract.

    A factory with a ``split`` parameter (or ``**kwargs``) is called as ``factory(split=split)``.
    One without provides a single dataset, used as the training split; asking it for the test split
    raises :class:`~landscape.errors.NoSplitError` rather than silently returning the training data.
    ``kwargs`` (a data spec's own) are passed too, after a check that the factory takes them. The
    factory's own exceptions propagate unchanged (a TypeError inside it is not a signature issue).

    Raises:
        DataError: the factory does not take one of ``kwargs``.
    """
    kwargs = dict(kwargs or {})
    if kwargs:
        _check_kwargs(factory, name, kwargs)
    if accepts_split(factory):
        return factory(split=split, **kwargs)
    if split != "train":
        raise NoSplitError(
            f"dataset factory {name!r} takes no 'split' parameter, so it provides one dataset only "
            f"(used as the training split) and has no split={split!r}; give the factory a 'split' "
            "parameter to provide one"
        )
    return factory(**kwargs)


def _check_kwargs(factory: Any, name: str, kwargs: dict[str, Any]) -> None:
    try:
        inspect.signature(factory).bind_partial(**kwargs)
    except TypeError as exc:
        raise DataError(f"dataset factory {name!r} does not take the data kwargs {kwargs}: {exc}") from None
    except ValueError:  # no signature: let the call decide
        pass
