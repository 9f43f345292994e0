"""Choosing torch's CPU thread count: explicit counts, the load-aware ``auto`` and bad values."""

from __future__ import annotations

import subprocess
import sys

import pytest

from landscape.errors import ConfigError
from landscape.threads import choose_threads


@pytest.mark.parametrize(
    ("cores", "load", "want"),
    [(2, 0.1, 2), (2, 0.6, 1), (2, 3.5, 1), (16, 4.2, 12), (16, 0.0, 16), (1, 0.0, 1)],
)
def test_auto_takes_the_idle_cores(cores: int, load: float, want: int) -> None:
    assert choose_threads("auto", cores=cores, load=load, env_set=False) == want


def test_auto_respects_omp_num_threads_and_counts_are_taken_as_given() -> None:
    assert choose_threads("auto", cores=8, load=0.0, env_set=True) is None
    assert choose_threads(3, cores=2, load=5.0, env_set=True) == 3
    assert choose_threads("4") == 4


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", ""])
def test_bad_counts_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="threads="):
        choose_threads(bad)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys, torch; from landscape.cli.main import main; "
        "torch.set_num_threads(2); sys.argv = ['landscape', *sys.argv[1:]]; "
        "import atexit; atexit.register(lambda: print('threads', torch.get_num_threads())); main()"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_cli_threads_option_sets_torch_and_refuses_bad_values() -> None:
    ok = _run("--threads", "1", "info", "--help")
    assert ok.returncode == 0, ok.stderr
    assert "threads 1" in ok.stdout
    bad = _run("--threads", "zero", "info", "--help")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "--threads" in bad.stderr and "zero" in bad.stderr
