"""The one result-folder guard: canonical settings, what differs, refusals, companions, stale files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from landscape.errors import ConfigError, ResultFileError
from landscape.io.atomic import atomic_write_json
from landscape.io.result_folder import (
    SettingsMismatchError,
    canonical,
    check_out_folder,
    check_replaceable,
    check_same_settings,
    read_settings,
    remove_stale,
    settings_differences,
)

SETTINGS = {"top_k": 5, "which": "LA", "shape": (2, 3), "rtol": np.float64(0.5), "ratio": math.nan}


def test_canonical_is_what_a_file_stores():
    # tuples as lists, numpy scalars as numbers, sorted keys, NaN as null (the jsonio policy)
    assert canonical({"b": (1, 2), "a": np.int64(3), "c": math.nan, "d": math.inf}) == {
        "a": 3,
        "b": [1, 2],
        "c": None,
        "d": "inf",
    }
    assert list(canonical({"b": 1, "a": 2})) == ["a", "b"]


def test_settings_read_back_from_a_file_are_the_same_settings(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"settings": SETTINGS})
    stored = read_settings(tmp_path / "r.json", fix="FIX")
    assert stored != SETTINGS  # lists, floats and null where the dict has a tuple, numpy and NaN
    assert settings_differences(stored, SETTINGS) == []


@pytest.mark.parametrize(
    ("new", "differences"),
    [
        pytest.param({**SETTINGS, "top_k": 6}, ["top_k"], id="value"),
        pytest.param({**SETTINGS, "top_k": 6, "which": "SA"}, ["top_k", "which"], id="sorted"),
        pytest.param({**SETTINGS, "extra": 1}, ["extra"], id="added"),
        pytest.param({**SETTINGS, "extra": None}, [], id="none-is-absent"),
        pytest.param({k: v for k, v in SETTINGS.items() if k != "which"}, ["which"], id="removed"),
    ],
)
def test_settings_differences_name_the_top_level_keys(new, differences):
    assert settings_differences(SETTINGS, new) == differences


def test_out_folder_must_not_be_a_file(tmp_path):
    check_out_folder(None)
    check_out_folder(tmp_path)
    check_out_folder(tmp_path / "new" / "folder")
    (tmp_path / "f").write_text("x")
    with pytest.raises(
        ConfigError, match=r"^out='.*f' is an existing file, not a folder .*created if needed"
    ):
        check_out_folder(tmp_path / "f", name="out")


def test_same_settings_are_a_rerun_and_other_settings_are_refused(tmp_path):
    result = tmp_path / "r.json"
    check_replaceable(result, SETTINGS)  # nothing there yet
    atomic_write_json(result, {"value": 1.0, "settings": SETTINGS})
    check_replaceable(result, SETTINGS)
    check_replaceable(result, {**SETTINGS, "top_k": 6}, overwrite=True)
    with pytest.raises(SettingsMismatchError) as info:
        check_replaceable(result, {**SETTINGS, "top_k": 6, "which": "SA"})
    assert str(info.value) == (
        f"{str(result)!r} was made with other settings (differs in: top_k, which); "
        "use another out_dir, or overwrite=True to replace it"
    )
    assert info.value.path == result and info.value.differences == ["top_k", "which"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param("{not json", r"r\.json' is unreadable \(.*\); FIX$", id="unreadable"),
        pytest.param(
            '{"value": 1.0}', r"r\.json' was written without its settings .*; FIX$", id="no-settings"
        ),
        pytest.param("[1, 2]", r"r\.json' was written without its settings", id="not-an-object"),
    ],
)
def test_a_result_that_cannot_be_compared_is_refused(tmp_path, content, match):
    (tmp_path / "r.json").write_text(content)
    with pytest.raises(ResultFileError, match=match):
        check_replaceable(tmp_path / "r.json", SETTINGS, fix="FIX")
    check_replaceable(tmp_path / "r.json", SETTINGS, fix="FIX", overwrite=True)


def test_a_whole_document_as_settings(tmp_path):
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(ResultFileError, match=r"is unreadable \(not a JSON object\); FIX"):
        read_settings(tmp_path / "config.json", key=None, fix="FIX")
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    assert read_settings(tmp_path / "config.json", key=None, fix="FIX") == {"lr": 0.1}


def test_companions_without_their_result_belong_to_another_result(tmp_path):
    (tmp_path / "density.png").write_text("x")
    with pytest.raises(ResultFileError, match=r"holds density\.png of another result without its r\.json"):
        check_replaceable(tmp_path / "r.json", SETTINGS, companions=("density.png", "density.csv"))
    check_replaceable(tmp_path / "r.json", SETTINGS, companions=("density.csv",))
    remove_stale(tmp_path, ["density.png", "density.csv"])
    assert not (tmp_path / "density.png").exists()


class _KindMismatchError(SettingsMismatchError):
    pass


def test_digests_decide_and_the_settings_name_what_differs(tmp_path):
    template = "{path} differs in: {differences}"
    # equal digests: the same result, whatever the settings say
    check_same_settings(tmp_path, {"a": 1}, {"a": 2}, template=template, digests=("d", "d"))
    with pytest.raises(_KindMismatchError, match="differs in: a$"):
        check_same_settings(
            tmp_path, {"a": 1}, {"a": 2}, template=template, digests=("d", "e"), error=_KindMismatchError
        )
    # other digests of equal settings: the digest is made another way
    with pytest.raises(SettingsMismatchError, match="differs in: format$") as info:
        check_same_settings(tmp_path, {"a": 1}, {"a": 1}, template=template, digests=("d", "e"))
    assert info.value.differences == ["format"] and info.value.path == Path(tmp_path)


def test_every_guard_of_the_library_raises_the_one_mismatch_error():
    from landscape.surface.store import SurfaceMismatchError

    assert issubclass(SurfaceMismatchError, SettingsMismatchError)
    assert issubclass(SettingsMismatchError, ResultFileError)


def test_out_folder_must_not_be_a_dangling_or_looping_link(tmp_path):
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for link in (dangling, loop):
        with pytest.raises(ConfigError, match=r"out_dir=.* is a symbolic link that leads to no folder"):
            check_out_folder(link)
    good = tmp_path / "good"
    good.symlink_to(tmp_path)
    check_out_folder(good)
