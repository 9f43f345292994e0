"""A writer killed with kill -9 leaves its temporary behind; the next write of that file removes it
(issue 21, item 14), and leaves alone the temporaries of writers that still run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from landscape.io.atomic import atomic_write_json

# Opens the atomic writer's temporary for TARGET, says so, and waits to be killed inside the write.
_KILLED_WRITER = """
import sys, time
from landscape.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a file")
    print(tmp, flush=True)
    time.sleep(60)
"""


def _temporaries(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and ".tmp" in p.name)


def test_a_killed_writers_temporary_is_removed_when_the_file_is_written_again(tmp_path):
    target = tmp_path / "epoch_002.json"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    left = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert _temporaries(tmp_path, target.name) == [os.path.basename(left)]
    atomic_write_json(target, {"epoch": 2})
    assert _temporaries(tmp_path, target.name) == []
    assert target.read_text().strip().startswith("{")


def test_temporaries_of_live_writers_and_other_files_stay(tmp_path):
    from landscape.io.atomic import _temp_prefix, remove_stale_temporaries

    target = tmp_path / "a.json"
    ours = tmp_path / f"{_temp_prefix(target)}abcd1234.tmp"  # this process: a write may be under way
    parent = tmp_path / f"{_temp_prefix(target).replace(f'.{os.getpid()}.', f'.{os.getppid()}.')}x.tmp"
    other_file = tmp_path / f"{_temp_prefix(tmp_path / 'b.json')}y.tmp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"{_temp_prefix(target).replace(f'.{os.getpid()}.', f'.{dead.pid}.')}z.tmp.npz"
    for p in (ours, parent, other_file, gone):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(target) == [gone]
    assert ours.exists() and parent.exists() and other_file.exists() and not gone.exists()
