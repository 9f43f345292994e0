"""The one result-folder guard: never replace a result made with other settings.

Every resumable or rerunnable result records the settings it was made from (a checkpoint's digest,
the data, every numerical option): ``sharpness.json`` and ``evaluation.json`` under ``"settings"``,
a run folder's ``config.json`` as a whole, a surface file and ``connect.json`` as a digest of them
(with the settings beside it). Whoever writes one follows the same rules, written here once:

- the output path is a folder, existing or not, never a file (:func:`check_out_folder`);
- settings are compared as canonical JSON (:func:`canonical`): key order, tuples against lists and
  numpy scalars against floats do not count as differences; :func:`settings_differences` names the
  top-level keys that differ;
- the same settings are a rerun or the resume of an interrupted result; other settings are refused,
  naming the file and what differs (:class:`SettingsMismatchError`), unless the caller passes
  ``overwrite=True`` (:func:`check_same_settings`, :func:`check_replaceable`);
- files a command writes beside its result (companions) without that result belong to another one
  and are refused too; companions a replaced result had and the new one has not are removed
  (:func:`remove_stale`), so a folder never holds two results' files.

Messages name Python parameters (``out_dir``, ``overwrite=True``); the command line shows them as its
flags (``-o/--out``, ``--overwrite``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from landscape.errors import ConfigError, ResultFileError
from landscape.io.jsonio import dumps

#: How to get past a refusal of a result made with other settings.
REPLACE_FIX = "use another out_dir, or overwrite=True to replace it"


class SettingsMismatchError(ResultFileError):
    """A result was made with other settings; ``path`` and ``differences`` say where and what."""

    def __init__(self, message: str, *, path: Path, differences: list[str]) -> None:
        super().__init__(message)
        self.path = path
        self.differences = differences


def canonical(obj: Any) -> Any:
    """``obj`` as the JSON a result file stores it: sorted keys, lists for tuples, plain numbers.

    Non-finite floats follow :mod:`landscape.io.jsonio` (NaN -> ``None``, inf -> ``"inf"``), so a
    setting compares equal to itself read back from a file.
    """
    return json.loads(dumps(obj, indent=None, sort_keys=True))


def settings_differences(stored: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """The top-level keys whose values differ between ``stored`` and ``settings`` (sorted).

    A key present in one only differs (unless its value is ``None``, the same as absent).
    """
    old, new = canonical(dict(stored)), canonical(dict(settings))
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def check_out_folder(path: str | Path | None, *, name: str = "out_dir") -> None:
    """Refuse an output path that exists and is not a folder (a missing one is created later).

    Args:
        path: the output folder (``None``: nothing is written).
        name: the parameter that names it, for the message.

    Raises:
        ConfigError: ``path`` is an existing file, or a symbolic link that leads nowhere.
    """
    if path is not None and Path(path).is_symlink() and not Path(path).exists():
        # a dangling link, or one in a loop: creating the folder would fail with a raw FileExistsError
        raise ConfigError(
            f"{name}={str(path)!r} is a symbolic link that leads to no folder (its target is missing, or "
            "the links form a loop); remove the link or name another folder"
        )
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise ConfigError(
            f"{name}={str(path)!r} is an existing file, not a folder (it exists and is not a directory); "
            "name a folder (it is created if needed)"
        )


def read_settings(path: Path, *, fix: str, key: str | None = "settings") -> dict[str, Any]:
    """The settings a stored result records: ``doc[key]``, or the whole document when ``key`` is None.

    Raises:
        ResultFileError: the file cannot be read as JSON, or records no settings; ``fix`` ends the message.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{str(path)!r} is unreadable ({exc}); {fix}") from None
    if key is None:
        if not isinstance(doc, dict):
            raise ResultFileError(f"{str(path)!r} is unreadable (not a JSON object); {fix}")
        return doc
    settings = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(settings, dict):
        raise ResultFileError(f"{str(path)!r} was written without its settings (an older version); {fix}")
    return settings


def check_same_settings(
    path: str | Path,
    stored: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    template: str,
    digests: tuple[str, str] | None = None,
    error: type[SettingsMismatchError] = SettingsMismatchError,
) -> None:
    """Refuse ``settings`` unless they are the ones ``stored`` (a rerun or a resume).

    Args:
        path: the result or folder to name.
        stored: the settings the existing result records.
        settings: the settings of the result about to be written.
        template: the message, with ``{path}`` (quoted) and ``{differences}`` (comma-separated).
        digests: ``(stored, new)`` digests for a result identified by a digest of its settings:
            equal digests are the same result; different ones with equal settings differ in their
            ``format`` (how the digest is made).
        error: the class raised (a subclass that says which kind of result it is).

    Raises:
        SettingsMismatchError: (``error``) the settings differ.
    """
    if digests is not None and digests[0] == digests[1]:
        return
    differences = settings_differences(stored, settings)
    if digests is not None and not differences:
        differences = ["format"]
    if differences:
        message = template.format(path=repr(str(path)), differences=", ".join(differences))
        raise error(message, path=Path(path), differences=differences)


def check_replaceable(
    result: Path,
    settings: Mapping[str, Any],
    *,
    companions: Sequence[str] = (),
    overwrite: bool = False,
    fix: str = REPLACE_FIX,
) -> None:
    """Refuse to write the JSON ``result`` over one made with other ``settings`` unless ``overwrite``.

    Args:
        result: the result JSON about to be written; it records its settings under ``"settings"``.
        settings: what the new result is made from (JSON-able).
        companions: names of files written beside ``result`` by the same command.
        overwrite: replace whatever is there.
        fix: how to get past a refusal (ends every message).

    Raises:
        ResultFileError: companions without ``result``, an unreadable ``result`` or one without settings.
        SettingsMismatchError: ``result`` was made with other settings.
    """
    if overwrite:
        return
    if not result.exists():
        stray = [c for c in companions if (result.parent / c).exists()]
        if stray:
            raise ResultFileError(
                f"{str(result.parent)!r} holds {', '.join(stray)} of another result without its "
                f"{result.name}; {fix}"
            )
        return
    stored = read_settings(result, fix=fix)
    template = "{path} was made with other settings (differs in: {differences}); " + fix
    check_same_settings(result, stored, settings, template=template)


def remove_stale(folder: Path, names: Sequence[str]) -> None:
    """Remove files of a replaced result that the new result does not have."""
    for name in names:
        (folder / name).unlink(missing_ok=True)
