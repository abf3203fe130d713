"""The index under a full disk and damaged store files: the daemon stays up, says what
failed, serves nothing wrong as if healthy, and catches up once the cause is gone. Disks
are tmpfs mounts in the daemon's own user and mount namespaces, never the host's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FILL_DISK,
    OWN_MOUNTNS,
    REPO,
    Daemon,
    fill_leaving,
    in_daemon_ns,
    needs_userns,
    private_tmpfs,
    run_on_tmpfs,
    seed_cache,
    wait_until,
    write_new_code,
)

pytestmark = pytest.mark.slow


@needs_userns
def test_vectors_on_a_full_disk_fail_the_batch_not_the_daemon(
    tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """Qdrant Edge writes through memory maps of sparse files: its vectors filling the
    disk were a SIGBUS that killed the daemon mid-batch (and again at each start). Now
    the write is refused while the disk is nearly full, status says so, search answers,
    and the vectors land once there is room."""
    home = tmp_path / "small"
    state = home / "state"
    state.mkdir(parents=True)
    seed_cache(home, warm_cache)
    d = Daemon(home, prefix=private_tmpfs(state, "64m"), RCMD_INDEX_RETRY_AFTER_S="0.5")
    try:
        d.start()
        assert d.proc is not None
        pid = d.proc.pid
        d.cli("index", str(crate), "--wait")
        fill_leaving(pid, state, 2048)
        # ~1,500 new chunks: their text fits in the 2 MB left, their vectors do not.
        write_new_code(crate / "src" / "gen", "spill", 30, 50)
        error = wait_until(lambda: d.root_status(crate)["last_error"], timeout=120)
        assert "No space left on device" in error, error
        assert d.proc.poll() is None, d.log.read_text()[-2000:]
        assert d.search("fetch_with_retry", "--mode", "bm25")
        in_daemon_ns(pid, f'rm "{state}/filler"')
        wait_until(lambda: not d.root_status(crate)["last_error"], timeout=120)
        status = d.wait_idle(crate, timeout=300)
        assert status["vectors_pending"] == 0 and status["files"] == 7 + 30, status
        assert d.verify()["ok"], d.verify()
        assert d.search("spill_3_7", "--mode", "bm25")[0]["symbol"].endswith("spill_3_7")
    finally:
        d.stop()
        d.kill()


@pytest.fixture
def held_tmpfs(tmp_path: Path) -> Iterator[tuple[list[str], int]]:
    """A 64 MB tmpfs over `tmp_path/small/state` in user and mount namespaces held by a
    process of their own, so daemons started in turn share it: (daemon prefix, holder pid)."""
    state = tmp_path / "small" / "state"
    state.mkdir(parents=True)
    mount = f'mount -t tmpfs -o size=64m tmpfs "{state}" && echo ready && exec sleep 3600'
    holder = subprocess.Popen(
        [*OWN_MOUNTNS, "sh", "-c", mount],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        # Entering a mount namespace moves to its `/`: --wd keeps the checkout's code.
        nsenter = ["nsenter", "--user", "--mount", "--target", str(holder.pid), f"--wd={REPO}"]
        yield [*nsenter, "--preserve-credentials", "--"], holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=30)


@contextmanager
def _failed_at_start(
    held_tmpfs: tuple[list[str], int], home: Path, crate: Path, warm_cache: Path
) -> Iterator[Daemon]:
    """A daemon started with `crate` indexed on a state disk (the held tmpfs) made full
    meanwhile, so the root failed to open; stopped and killed after the block."""
    prefix, holder = held_tmpfs
    seed_cache(home, warm_cache)
    d = Daemon(home, prefix=prefix)
    try:
        d.start()
        d.cli("index", str(crate), "--wait")
        assert d.stop() == 0
        fill_leaving(holder, home / "state", 0)
        d.start()
        yield d
    finally:
        d.stop()
        d.kill()


@needs_userns
def test_a_full_disk_at_start_keeps_every_index(
    held_tmpfs: tuple[list[str], int], tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """A daemon started on a full state disk wrote each root's layout again (no room:
    the root failed to open, its status said to remove it); with that write gone, Edge
    loading its shard was a SIGBUS. Now the root is kept whole and named with the
    disk's error, and `rcmd index` opens it again once there is room: nothing is set
    aside or indexed again."""
    holder = held_tmpfs[1]
    home = tmp_path / "small"
    state = home / "state"
    with _failed_at_start(held_tmpfs, home, crate, warm_cache) as d:
        (failed,) = d.status()["failed_roots"]
        assert "No space left on device" in failed["error"], failed
        assert f"rcmd index {crate}" in failed["next"], failed
        assert d.cli("status").returncode == 0
        in_daemon_ns(holder, f'rm "{state}/filler"')
        d.cli("index", str(crate), "--wait")
        assert d.root_status(crate)["counters"]["files_read"] == 0  # nothing read again
        assert d.verify()["ok"], d.verify()
        assert d.search("fetch_with_retry", "--mode", "bm25")
        # The state disk is the daemon's tmpfs: the host's folder under it is empty.
        held = in_daemon_ns(holder, f'ls "{state}/roots"')
        assert held.strip() and ".broken" not in held, held


@needs_userns
def test_a_root_failed_on_a_full_disk_opens_by_itself_once_there_is_room(
    held_tmpfs: tuple[list[str], int], tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """A root that failed to open at start (its state disk full) stayed failed until
    someone ran `rcmd index`, even once the disk had room again. Now the daemon tries it
    again with a backoff and it opens by itself, whole: nothing read again or set aside."""
    holder = held_tmpfs[1]
    home = tmp_path / "small"
    state = home / "state"
    with _failed_at_start(held_tmpfs, home, crate, warm_cache) as d:
        (failed,) = d.status()["failed_roots"]
        assert failed["attempts"] == 1 and "tried again by itself" in failed["next"], failed
        assert "tried again by itself" in d.cli("status").stdout
        # `rcmd index` tries at once; failing, the root stays failed and counts the try
        # (it was dropped from failed_roots until the next start).
        refused = d.cli("index", str(crate), check=False)
        assert refused.returncode != 0 and "No space left" in refused.stderr, refused.stderr
        assert d.status()["failed_roots"][0]["attempts"] >= 2
        in_daemon_ns(holder, f'rm "{state}/filler"')
        wait_until(lambda: not d.status()["failed_roots"], timeout=60)
        status = d.wait_idle(crate)
        assert status["counters"]["files_read"] == 0, status  # nothing read again
        assert d.search("fetch_with_retry", "--mode", "bm25")
        assert d.verify()["ok"], d.verify()
        assert len(_events(home, "root_reopened")) == 1
        assert ".broken" not in in_daemon_ns(holder, f'ls "{state}/roots"')


def _events(home: Path, event: str) -> list[dict[str, Any]]:
    """The daemon's structured log records (`log/rcmd.log`) of `event`."""
    lines = (home / "log" / "rcmd.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def _tries(home: Path) -> int:
    """The daemon's own failed tries to open a root again."""
    return len(_events(home, "root_reopen_failed"))


@needs_userns
def test_a_root_that_keeps_failing_is_tried_with_a_backoff_until_removed(
    held_tmpfs: tuple[list[str], int], tmp_path: Path, crate: Path, warm_cache: Path
) -> None:
    """The daemon's tries of a root that keeps failing back off (5 s, then 10 s, ...;
    one at every 2 s tick would be a spin that fills the log), and `rcmd remove` of the
    failed root ends them: with room again, the removed root never comes back."""
    holder = held_tmpfs[1]
    home = tmp_path / "small"
    state = home / "state"
    with _failed_at_start(held_tmpfs, home, crate, warm_cache) as d:
        failed = wait_until(
            lambda: (f := d.status()["failed_roots"]) and f[0]["attempts"] >= 2 and f[0],
            timeout=60,
        )
        assert failed["attempts"] == 2 and _tries(home) == 1, failed
        # The next try is due 10 s after the last: none in the next 7 s (a spin: 3).
        window_end = time.monotonic() + 7
        while time.monotonic() < window_end:
            assert d.status()["failed_roots"][0]["attempts"] == 2
            time.sleep(0.5)
        assert _tries(home) == 1
        d.cli("remove", str(crate))
        status = d.status()
        assert status["failed_roots"] == [] and status["roots"] == [], status
        # (the tmpfs is seen in the holder's namespace only)
        assert json.loads(in_daemon_ns(holder, f'cat "{state}/roots.json"'))["roots"] == []
        assert in_daemon_ns(holder, f'ls "{state}/roots"') == ""  # nothing to bring it back
        in_daemon_ns(holder, f'rm "{state}/filler"')
        # Past the time the next try was due, and two ticks more: no try, no root.
        time.sleep(max(0.0, failed["next_retry_at"] + 4 - time.time()))
        assert _tries(home) == 1 and not _events(home, "root_reopened")
        assert d.status()["roots"] == [] and d.status()["failed_roots"] == []


#: Run in a private tmpfs: a cache made with room, then opened on the disk made full.
_FULL_CACHE_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from daemon.embed_cache import EmbedCache, open_cache
path = Path(sys.argv[1]) / "embeddings.db"
cache = EmbedCache(path)
cache.put_many({b"k" * 16: np.ones(4, dtype=np.float32)})
cache.close()
for extra in ("embeddings.db-wal", "embeddings.db-shm"):
    (path.parent / extra).unlink(missing_ok=True)
with open(path.parent / "filler", "wb") as f:
    try:
        while True:
            f.write(bytes(1 << 16))
    except OSError:
        pass
cache = open_cache(path)
cache.put_many({b"j" * 16: np.ones(4, dtype=np.float32)})
print(sorted(p.name for p in path.parent.iterdir()))
"""


@needs_userns
def test_a_cache_on_a_full_disk_is_kept_not_set_aside(tmp_path: Path) -> None:
    """Opening a whole embedding cache on a full disk failed (its WAL index could not be
    made): it was moved aside as broken, the new one could not be made either, and the
    daemon did not start. Now the file stays and an empty cache in memory serves."""
    proc = run_on_tmpfs(tmp_path / "cache", "4m", _FULL_CACHE_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.strip().splitlines()[-1]
    assert "'embeddings.db'" in names and "broken" not in names, proc.stdout
    assert "cache_unusable_kept_in_memory" in proc.stdout


@needs_userns
def test_a_full_cache_disk_fails_no_batch(tmp_path: Path, crate: Path, warm_cache: Path) -> None:
    """The caches on a disk of their own that is full (`~/.cache` on a small tmpfs):
    a cache write failed every batch, which embedded its texts again at each retry and
    never landed. A cache is a speed-up: the entry is lost, the batch lands."""
    home = tmp_path / "home"
    cache = home / "cache"
    cache.mkdir(parents=True)
    staged = tmp_path / "staged"
    seed_cache(staged, warm_cache)
    mount = 'mount -t tmpfs -o size=64m tmpfs "$0" && cp -a "$1"/. "$0"/ && shift && exec "$@"'
    d = Daemon(home, prefix=[*OWN_MOUNTNS, "sh", "-c", mount, str(cache), str(staged / "cache")])
    try:
        d.start()
        assert d.proc is not None
        d.cli("index", str(crate), "--wait")
        wait_until(lambda: d.status()["embedding"]["loaded"], timeout=120)
        fill_leaving(d.proc.pid, cache, 0)
        write_new_code(crate / "src" / "gen", "uncached", 3, 5)
        status = wait_until(
            lambda: (r := d.wait_idle(crate))["files"] == 7 + 3 and r["vectors_pending"] == 0 and r,
            timeout=120,
        )
        assert not status["last_error"], status["last_error"]
        assert d.verify()["ok"], d.verify()
        assert d.search("uncached_1_2", "--mode", "bm25")[0]["symbol"].endswith("uncached_1_2")
    finally:
        d.stop()
        d.kill()


#: Run in a private tmpfs: an Edge store with deleted points, vacuumed on a full disk.
_FULL_VACUUM_SCRIPT = """
import sys, uuid
from pathlib import Path
import numpy as np
from daemon.vectors import EdgeStore, VectorPoint
disk = Path(sys.argv[1])
store = EdgeStore(disk / "qdrant", 8)
points = [
    VectorPoint(uuid.uuid4().hex, f"f{i % 10}.rs", "fn", np.ones(8, dtype=np.float32))
    for i in range(2000)
]
store.upsert(points)
store.flush()
store.delete_paths([f"f{i}.rs" for i in range(5)])
{FILL_DISK}try:
    store.vacuum()
except Exception as exc:
    print("vacuum failed:", type(exc).__name__)
(disk / "filler").unlink()
store.upsert(points[:3])
print("points", store.count(), "hits", len(store.search(np.ones(8, dtype=np.float32), 3)))
store.close()
""".replace("{FILL_DISK}", FILL_DISK)


@needs_userns
def test_a_vacuum_on_a_full_disk_leaves_the_store_open(tmp_path: Path) -> None:
    """A vacuum closed the shard, then flushed it: a full disk refused the flush, and the
    store stayed closed until the daemon restarted (vector searches found nothing, as
    if there were no vectors; every write failed)."""
    proc = run_on_tmpfs(tmp_path / "state", "24m", _FULL_VACUUM_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vacuum failed" in proc.stdout, proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "points 1003 hits 3", proc.stdout


#: Run with a tiny tmpfs mounted over the (empty) store folder itself.
_MOUNTED_STORE_SCRIPT = """
import sys
from pathlib import Path
from daemon.vectors import EdgeStore
try:
    EdgeStore(Path(sys.argv[1]), 8).close()
    print("created")
except OSError as exc:
    print("refused", exc.errno)
"""


@needs_userns
def test_a_new_store_on_a_disk_of_its_own_checks_that_disk(tmp_path: Path) -> None:
    """A new store's room was checked on its parent's disk: an empty store folder that
    is a mount point of another (full) disk was created there, unchecked."""
    proc = run_on_tmpfs(tmp_path / "qdrant", "1m", _MOUNTED_STORE_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "refused 28", proc.stdout


#: Run in a child: a root opened again with fewer and fewer descriptors left, each
#: failure printed with whether it reads as damage.
_OUT_OF_FDS_SCRIPT = """
import os, resource, sys
from pathlib import Path
from daemon.config import load_config
from daemon.root import RootIndex
from daemon.sqlite import is_damage
from ipc.errors import StateError
cfg = load_config({"RCMD_HOME": sys.argv[1]})
crate = Path(sys.argv[2])
RootIndex(crate, cfg, "m", 8).close()
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
for spare in range(0, 64, 2):
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + spare, hard))
    try:
        RootIndex(crate, cfg, "m", 8).close()
        break
    except StateError as exc:
        print("verdict", str(exc).split(": ")[0].rpartition("/")[2], is_damage(exc))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_soft, hard))
"""


def test_a_root_opened_without_file_descriptors_is_no_damage(tmp_path: Path, crate: Path) -> None:
    """Tantivy's and Qdrant's 'Too many open files' (Rust's `Os { code: 24 }` in text)
    read as damage: a daemon out of descriptors at start set healthy indexes aside."""
    proc = subprocess.run(
        [sys.executable, "-c", _OUT_OF_FDS_SCRIPT, str(tmp_path / "home"), str(crate)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdicts = [line.split()[1:] for line in proc.stdout.splitlines() if line[:8] == "verdict "]
    assert {"tantivy", "qdrant"} <= {name for name, _ in verdicts}, proc.stdout
    assert {damage for _, damage in verdicts} == {"False"}, proc.stdout
