"""Index once, adopt everywhere: `export` writes a root's index as a snapshot file, and a
new root starts from a snapshot (`index --from FILE`) or, when it is a git worktree or
clone of a repository another root indexes, from that root's index — then catches up
by Merkle diff (`daemon.adopt`) instead of reading and embedding everything.

All of it works in a private folder under the state dir and renames the finished state
folder into place, so a failure (or a crash) leaves no half root; leftovers are removed
when the daemon starts.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import Any

import structlog

from daemon.adopt import InstallContext, SeedReport, install
from daemon.chunk_cache import ChunkCache
from daemon.config import Config, root_dir
from daemon.embed_groups import policy_of
from daemon.gitinfo import GitCheckout, checkout_of
from daemon.registry import Registry
from daemon.root import RootIndex, build_layout, root_id_for
from daemon.snapshot import check_export_target, pack, stage_export, unpack
from daemon.snapshot_check import Embed
from daemon.snapshot_format import MANIFEST, Limits
from ipc.errors import BadRequest, Busy, ConfigError, NotFound

log = structlog.get_logger("rcmd.seeding")

#: How long an export (or a seed) waits for a batch running on the source root.
SOURCE_WAIT_S = 30.0


class Adopter:
    """Adds roots from snapshots or sibling checkouts; one adoption at a time."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        model: tuple[str, int],
        chunk_cache: ChunkCache | None,
        embed: Embed,
        limits: Limits | None = None,
    ) -> None:
        self._config = config
        self._embed = embed
        self._registry = registry
        self._model = model
        self._chunk_cache = chunk_cache
        self._limits = limits or Limits()
        self._tmp = config.paths.state_dir / "tmp"
        self._lock = threading.Lock()

    def clean(self) -> None:
        """Remove what an adoption or export cut short by a crash left behind."""
        shutil.rmtree(self._tmp, ignore_errors=True)

    def reopen_due(self) -> None:
        """The registry's failed roots tried again (`Registry.reopen_due`), but not while
        an adoption runs: `index --from` replaces a failed root's state folder, and a try
        meanwhile opened the folder being replaced (the next tick tries)."""
        if self._lock.acquire(blocking=False):
            try:
                self._registry.reopen_due()
            finally:
                self._lock.release()

    @contextlib.contextmanager
    def _workdir(self) -> Iterator[Path]:
        self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, root: RootIndex) -> Iterator[None]:
        """The root's lock, so its committed state stays as it is while it is copied; a
        vector fill in progress stops at its next step for it (the rest is exported as
        pending and filled in by whichever root has it)."""
        root.lock_wanted.set()  # an embedding run gives way; a file batch is waited for
        try:
            acquired = root.lock.acquire(timeout=SOURCE_WAIT_S)
        finally:
            root.lock_wanted.clear()
        if not acquired:
            raise Busy(f"{root.path} is indexing; retry when rcmd status shows it idle")
        try:
            yield
        finally:
            root.lock.release()

    # ---- export ----
    def export(self, raw_root: str, out: Path) -> dict[str, Any]:
        """Write the index of the root holding `raw_root` to the snapshot file `out`."""
        root = self._registry.find(raw_root)
        check_export_target(out)
        checkout = checkout_of(root.path)
        t = time.perf_counter()
        with self._workdir() as stage:
            with self._locked(root):
                manifest = stage_export(
                    root, stage, self._model, self._chunk_cache, checkout.head if checkout else None
                )
            try:
                size = pack(stage, out)
            except OSError as exc:
                raise BadRequest(f"cannot write {out}: {exc.strerror or exc}") from None
        log.info("snapshot_exported", root=str(root.path), file=str(out), bytes=size)
        return {
            "root": str(root.path),
            "file": str(out),
            "bytes": size,
            "files": len(manifest.files),
            "git_commit": manifest.git_commit,
            "seconds": round(time.perf_counter() - t, 3),
        }

    # ---- adoption ----
    def add(self, path: Path, snapshot: Path | None) -> RootIndex:
        """Register `path`: from `snapshot` when given, else seeded from a root holding
        the same git repository when there is one, else cold."""
        with self._lock:
            registered = any(r.path == path for r in self._registry.roots())
            if snapshot is not None:
                if registered:
                    raise BadRequest(
                        f"{path} is indexed already; to replace its index run: rcmd remove "
                        f"{quote(str(path))}, then rcmd index {quote(str(path))} --from "
                        f"{quote(str(snapshot))}"
                    )
                self._from_file(path, snapshot)
            elif not registered and str(path) not in self._registry.failed():
                self._seed(path)
            return self._registry.add(path)

    def _context(self) -> InstallContext:
        model_id, dim = self._model
        return InstallContext(
            build_layout(model_id, dim, policy_of(self._config.embedding)),
            dim,
            self._config.index.max_file_bytes,
            policy_of(self._config.embedding),
            self._embed,
        )

    def _install(
        self, path: Path, snap: Path, found: dict[str, tuple[int, str]], source: str
    ) -> SeedReport:
        build = snap.parent / "build"
        report = install(snap, found, build, path, self._context(), source)
        target = root_dir(self._config.paths, root_id_for(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # the state of a root that failed to open: replaced
            target.rename(snap.parent / "replaced")
        build.rename(target)
        log.info("root_adopted", root=str(path), **report.to_json())
        return report

    def _from_file(self, path: Path, file: Path) -> None:
        if self._config.vector_store.url:
            raise ConfigError(
                "snapshots are installed into the embedded vector store; "
                "index without --from while [vector_store] url is set"
            )
        if not file.is_file():
            raise NotFound(f"{file} is not a file; make one with: rcmd export ROOT FILE")
        with self._workdir() as work:
            snap = work / "snapshot"
            snap.mkdir()
            self._install(path, snap, unpack(file, snap, self._limits), str(file))

    def _seed(self, path: Path) -> None:
        """Seed from a root of the same repository, if any; indexing cold on any failure
        (a seed only saves work, it is never needed)."""
        if self._config.vector_store.url:
            return
        checkout = checkout_of(path)
        source = self._sibling(checkout) if checkout is not None else None
        if source is None:
            return
        try:
            with self._workdir() as work:
                snap = work / "snapshot"
                snap.mkdir()
                with self._locked(source):
                    manifest = stage_export(source, snap, self._model, None, None)
                found = {m.name: (m.size, m.blake3) for m in manifest.members}
                found[MANIFEST] = (0, "")
                self._install(path, snap, found, str(source.path))
        except Exception as exc:  # a seed only saves work: index cold instead
            log.warning("seed_skipped", root=str(path), source=str(source.path), error=str(exc))

    def _sibling(self, checkout: GitCheckout) -> RootIndex | None:
        """A registered root of the same repository: a worktree of it first, then a clone."""
        best: tuple[int, RootIndex] | None = None
        for root in self._registry.roots():
            other = checkout_of(root.path) if root.path.is_dir() else None
            if other is None or not checkout.same_repository(other):
                continue
            rank = 0 if other.common_dir == checkout.common_dir else 1
            if best is None or rank < best[0]:
                best = (rank, root)
        return best[1] if best is not None else None
