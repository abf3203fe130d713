"""Dependency roots close their stores while idle (`daemon.parking`): a project with many
crates kept a Tantivy watcher thread, two shard search threads and descriptors for every
crate, forever. Real daemon, real registry crates, real stores."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from daemon.deps import DEBIAN_REGISTRY
from daemon.lexical import LexicalIndex
from daemon.parking import ParkableVectors
from daemon.root import root_id_for
from daemon.vectors import EdgeStore, VectorPoint
from tests.conftest import (
    FILL_DISK,
    Daemon,
    fill_leaving,
    held_by,
    in_daemon_ns,
    needs_userns,
    private_tmpfs,
    run_on_tmpfs,
    running,
    seed_cache,
    skip_or_fail,
    wait_until,
)

CRATES = [
    ("scopeguard", "1.1.0"),
    ("either", "1.6.1"),
    ("fnv", "1.0.7"),
    ("lazy_static", "1.4.0"),
    ("cfg-if", "1.0.0"),
]
#: Threads the stores of one open root start (Qdrant Edge's search pool, Tantivy's
#: meta.json watcher); the daemon's own threads come and go with its pools.
STORE_THREADS = ("edge-search", "thread-tantivy")


def _project(base: Path) -> Path:
    proj = base / "app"
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n')
    (proj / "src" / "lib.rs").write_text("/// Adds one.\npub fn inc(x: u32) -> u32 { x + 1 }\n")
    src = 'source = "registry+https://github.com/rust-lang/crates.io-index"'
    lock = "version = 3\n" + "".join(
        f'\n[[package]]\nname = "{n}"\nversion = "{v}"\n{src}\n' for n, v in CRATES
    )
    (proj / "Cargo.lock").write_text(lock)
    return proj


def _store_threads(pid: int) -> int:
    names = []
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            names.append(comm.read_text().strip())
        except OSError:  # a thread that ended meanwhile
            continue
    return sum(1 for n in names if n.startswith(STORE_THREADS))


def _held_store_files(pid: int, dirs: list[Path]) -> list[str]:
    """Files of the Tantivy indexes and shards under `dirs` that `pid` holds open or
    mapped (state.db stays open: status and navigation read it)."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held.add(os.readlink(fd))
        except OSError:
            continue
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            held.add(parts[5])
    wanted = [f"{d}/tantivy/" for d in dirs] + [f"{d}/qdrant/" for d in dirs]
    return sorted(h for h in held if h.startswith(tuple(wanted)))


def _needs_crates(proc: bool = True) -> None:
    """Skip (fail under RCMD_TEST_STRICT) without Debian's crate sources, or /proc."""
    missing = [n for n, v in CRATES if not (DEBIAN_REGISTRY / f"{n}-{v}" / "Cargo.toml").is_file()]
    if missing:
        skip_or_fail(f"needs Debian's crate sources ({missing})")
    if proc and not Path("/proc/self/maps").is_file():
        skip_or_fail("needs /proc")


def test_idle_dependency_roots_close_their_stores_and_still_answer(
    tmp_path: Path, warm_cache: Path
) -> None:
    _needs_crates()
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    proj = _project(tmp_path)
    with running(Daemon(home, RCMD_INDEX_DEPENDENCY_IDLE_S="1")) as d:
        assert d.proc is not None
        pid = d.proc.pid
        d.call("index", path=str(proj))
        d.wait(proj)
        alone = _store_threads(pid)
        assert alone >= 1  # the project's own stores: the count below is not vacuous

        reply = d.call("index", path=str(proj), deps=True)
        deps = [Path(r["path"]) for r in reply["deps"]["roots"]]
        assert len(deps) == len(CRATES)
        for dep in deps:
            d.wait(dep)
        dirs = [home / "state" / "roots" / root_id_for(dep) for dep in deps]
        assert all(x.is_dir() for x in dirs)

        def parked() -> bool:
            return _store_threads(pid) == alone and not _held_store_files(pid, dirs)

        wait_until(parked, 60)  # the crates' stores closed once idle
        # Nor state.db: 11 descriptors a crate were held, for good.
        assert [held_by(pid, f"{d}/state.db") for d in dirs] == [[]] * len(dirs)
        # Still registered, indexed and shown as such.
        for dep in deps:
            status = d.root_status(dep)
            assert status["dependency"] and status["chunks"] > 0 and status["idle"]
        # A --deps search opens them again and answers as open stores do.
        first = d.search("scope guard closure drop", "--deps", "--root", str(proj))
        again = d.search("scope guard closure drop", "--deps", "--root", str(proj))
        assert first == again
        assert str(DEBIAN_REGISTRY.resolve() / "scopeguard-1.1.0") in {h["root"] for h in first}
        nav = d.cli("def", "ScopeGuard", "--deps", "--json", cwd=proj).stdout
        assert json.loads(nav)["results"][0]["crate"] == "scopeguard 1.1.0"
        # ... and they close again once idle.
        wait_until(parked, 60)  # the crates' stores closed again after the search
        assert d.search("guard", "--mode", "bm25", "--deps", "--root", str(proj))


def _points(n: int) -> list[VectorPoint]:
    import numpy as np

    rng = np.random.default_rng(1)
    return [
        VectorPoint(f"{i:032x}", f"f{i % 3}.rs", "fn", rng.random(8, dtype=np.float32))
        for i in range(n)
    ]


def test_a_store_in_use_is_not_parked(tmp_path: Path) -> None:
    """A dump (an export) in progress keeps its shard; a writer keeps its index."""
    store = ParkableVectors(lambda _first: EdgeStore(tmp_path / "q", 8))
    store.upsert(_points(30))
    store.flush()
    pages = store.dump()
    next(pages)
    assert not store.park()
    assert len(list(pages)) == 29
    assert store.park() and store.parked
    assert store.count() == 30 and not store.parked  # opened again by the call
    store.close()

    lexical = LexicalIndex(tmp_path / "t")
    lexical.delete_paths(["a.rs"])
    assert not lexical.park()  # pending writes
    lexical.commit()
    lexical.release_writer()
    assert lexical.park() and lexical.parked
    assert lexical.num_docs() == 0 and not lexical.parked
    lexical.close()


@needs_userns
def test_a_parked_root_on_a_nearly_full_disk_still_answers(
    tmp_path: Path, warm_cache: Path
) -> None:
    """Loading a shard writes, so a parked root's is loaded again only with room on the
    state disk: with under 4 MiB free every hybrid `--deps` search failed ("No space
    left on device"), where the open shards had answered. Hybrid ranks such a root by
    BM25, vector mode leaves it out, each saying so; a vector search of that root alone
    fails, saying why; once there is room the shards load again."""
    _needs_crates(proc=False)
    home = tmp_path / "home"
    state = home / "state"
    state.mkdir(parents=True)
    seed_cache(home, warm_cache)
    proj = _project(tmp_path)
    d = Daemon(home, prefix=private_tmpfs(state, "64m"), RCMD_INDEX_DEPENDENCY_IDLE_S="1")
    with running(d):
        assert d.proc is not None
        pid = d.proc.pid
        d.call("index", path=str(proj))
        d.wait(proj)
        reply = d.call("index", path=str(proj), deps=True)
        deps = [Path(r["path"]) for r in reply["deps"]["roots"]]
        for dep in deps:
            d.wait(dep)
        dirs = [state / "roots" / root_id_for(dep) for dep in deps]
        wait_until(
            lambda: not _held_store_files(pid, dirs), 60
        )  # the crates' stores closed once idle
        fill_leaving(pid, state, 2048)
        query = ("scope guard closure drop", "--deps", "--root", str(proj))
        guard = str(DEBIAN_REGISTRY.resolve() / "scopeguard-1.1.0")
        reply, err = _searched(d, query)
        assert guard in {h["root"] for h in reply["results"]}
        assert f"rcmd: {guard} ranked without its vectors" in err
        reply, err = _searched(d, (*query, "--mode", "vector"))
        assert reply["results"] and guard not in {h["root"] for h in reply["results"]}
        assert f"rcmd: {guard} left out (its vectors: " in err
        assert "No space left on device" in err
        refused = d.cli("search", query[0], "--root", guard, "--mode", "vector", check=False)
        assert refused.returncode != 0 and "No space left on device" in refused.stderr
        assert "internal error" not in refused.stderr
        in_daemon_ns(pid, f'rm "{state}/filler"')
        assert guard in {h["root"] for h in d.search(*query, "--mode", "vector")}
        assert d.proc.poll() is None


#: Run in a private tmpfs: a store with deletions not yet flushed, parked on a full disk.
_FULL_PARK_SCRIPT = """
import sys, uuid
from pathlib import Path
from typing import Any
import numpy as np
from daemon.parking import ParkableVectors
from daemon.vectors import EdgeStore, VectorPoint
disk = Path(sys.argv[1])
store = ParkableVectors(lambda _first: EdgeStore(disk / "qdrant", 8))
one = np.ones(8, dtype=np.float32)
store.upsert([VectorPoint(uuid.uuid4().hex, f"f{i % 10}.rs", "fn", one) for i in range(2000)])
store.flush()
store.delete_paths([f"f{i}.rs" for i in range(5)])
{FILL_DISK}try:
    store.park()
except Exception as exc:
    print("park failed:", type(exc).__name__)
print("parked", store.parked)
(disk / "filler").unlink()
print("parked", store.park(), "points", store.count(), "hits", len(store.search(one, 3)))
store.close()
""".replace("{FILL_DISK}", FILL_DISK)


@needs_userns
def test_a_store_that_fails_to_close_stays_open(tmp_path: Path) -> None:
    """Parking flushes the shard: a full disk refused it, and the store was dropped
    while still holding its shard; `parked` said closed, and the next call loaded the
    folder again beside it. It stays open and is parked once the disk has room."""
    proc = run_on_tmpfs(tmp_path / "state", "24m", _FULL_PARK_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines == ["park failed: Exception", "parked False", "parked True points 1000 hits 3"]


def _searched(d: Daemon, query: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """The JSON reply of `rcmd search QUERY --json` and its stderr (it must succeed)."""
    out = d.cli("search", *query, "--json")
    reply: dict[str, Any] = json.loads(out.stdout)
    return reply, out.stderr


def test_a_parked_index_deleted_meanwhile_is_not_made_again_empty(
    tmp_path: Path, warm_cache: Path
) -> None:
    """Tantivy and Edge make new, empty stores where theirs are missing: a parked root
    whose index folders were deleted found nothing, silently, and the new folders hid
    the loss from the next start. A search over several roots answers from the others,
    naming that root (`degraded`, a line on stderr), a search of that root alone says
    why it cannot answer, and a restart rebuilds the stores. Without its shard, a
    hybrid search still ranks the root by BM25 (one root's failing store made every
    `--deps` search an error)."""
    _needs_crates()
    home = tmp_path / "home"
    seed_cache(home, warm_cache)
    proj = _project(tmp_path)
    guard = DEBIAN_REGISTRY.resolve() / "scopeguard-1.1.0"
    stores = home / "state" / "roots" / root_id_for(guard)
    query = ("scope guard closure drop", "--deps", "--root", str(proj))
    gone = "is gone since the root was parked"
    with running(Daemon(home, RCMD_INDEX_DEPENDENCY_IDLE_S="1")) as d:
        assert d.proc is not None
        d.call("index", path=str(proj))
        d.wait(proj)
        d.call("index", path=str(proj), deps=True)
        d.wait(guard)
        wait_until(
            lambda: not _held_store_files(d.proc.pid, [stores]), 60
        )  # the crate's stores closed
        shutil.rmtree(stores / "qdrant")
        reply, err = _searched(d, query)  # hybrid: the crate ranked by BM25 alone
        assert str(guard) in {h["root"] for h in reply["results"]}
        ((degraded,),) = [reply["degraded"]]
        assert degraded["root"] == str(guard) and not degraded["left_out"]
        assert gone in degraded["failed"]["vectors"]
        assert f"rcmd: {guard} ranked without its vectors (its vectors: " in err
        reply, err = _searched(d, (*query, "--mode", "vector"))  # left out, the rest answer
        assert reply["results"] and str(guard) not in {h["root"] for h in reply["results"]}
        assert [x["root"] for x in reply["degraded"] if x["left_out"]] == [str(guard)]
        assert f"rcmd: {guard} left out (its vectors: " in err and gone in err
        wait_until(lambda: not _held_store_files(d.proc.pid, [stores]), 60)  # parked again
        (stores / "tantivy" / "meta.json").unlink()
        for mode in ("bm25", "vector", "hybrid"):
            reply, err = _searched(d, (*query, "--mode", mode))
            assert str(guard) not in {h["root"] for h in reply["results"]}, mode
            assert f"rcmd: {guard} left out (its " in err and gone in err, mode
            alone = d.cli("search", query[0], "--root", str(guard), "--mode", mode, check=False)
            assert alone.returncode != 0 and gone in alone.stderr, (mode, alone.stderr)
            assert "internal error" not in alone.stderr
        assert not (stores / "qdrant").exists() and not (stores / "tantivy" / "meta.json").exists()
        d.stop()
        d.start()
        d.wait(guard)
        assert guard.as_posix() in {h["root"] for h in d.search(*query)}
        assert d.root_status(guard)["repaired"]
