"""Where a root's Tantivy writes go: a writer in this process, or, for a big batch, one in
a worker process on another CPU.

Turning a chunk into its Tantivy document (the lexical terms of four fields, then
Tantivy's own indexing) was a third of a forced rebuild's time, all of it on the one
thread the GIL lets the pipeline use while the second CPU idled. A worker process that
owns the index's writer for the batch does that work beside the pipeline: the pipeline
only pickles each step's documents (~1 ms per thousand chunks) and waits for the worker
at each commit, so the consistency order (Tantivy, then vectors, then `state.db`) is
the same. Searches in the daemon read the committed index as before.

Only one writer may hold an index: the daemon lets its own go before the worker takes
one, and the worker gives it back when the batch ends. A worker that dies fails the
batch: its writes were not committed, so the files stay in flight and are redone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

import structlog
import tantivy

from daemon.graph_pool import exit_with_parent
from daemon.tokenize import as_field_text, index_terms
from ipc.errors import StateError

log = structlog.get_logger("rcmd.lexical_writes")

#: How long a commit may take in the worker before the batch gives up on it.
COMMIT_TIMEOUT_S = 600.0
#: How long the worker may take to start and open the index's writer.
START_TIMEOUT_S = 60.0
#: How often a wait for the worker checks that it is still alive.
_ALIVE_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class LexicalDoc:
    chunk_id: str
    path: str
    kind: str
    symbol: str
    signature: str
    text: str
    start_line: int
    end_line: int


#: A doc comment line (`///`, `//!`) or a `#[doc = "..."]` attribute: the prose of a
#: chunk's text.
_DOC = re.compile(r'^[ \t]*(?://[/!]([^\n]*)|#!?\[doc\s*=\s*"([^\n]*)"\s*\])', re.M)


def doc_prose(text: str) -> str:
    """The doc comments written in `text`, markers removed: the words a question in words
    meets best, searched as a field of their own (`doc_t`)."""
    return "\n".join(a or b for a, b in _DOC.findall(text))


def document(d: LexicalDoc) -> tantivy.Document:
    """The Tantivy document of a chunk: its stored fields and the lexical terms of the
    searched ones."""
    return tantivy.Document(
        chunk_id=d.chunk_id,
        path=d.path,
        kind=d.kind,
        start_line=d.start_line,
        end_line=d.end_line,
        symbol_t=as_field_text(index_terms(d.symbol.replace("::", " "))),
        signature_t=as_field_text(index_terms(d.signature)),
        path_t=as_field_text(index_terms(d.path.replace("/", " "))),
        content_t=as_field_text(index_terms(d.text)),
        doc_t=as_field_text(index_terms(doc_prose(d.text))),
    )


class Writes(Protocol):
    """The write side of one root's Tantivy index."""

    def add(self, docs: list[LexicalDoc]) -> None: ...
    def delete(self, field: str, values: list[str]) -> None: ...
    def delete_all(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


class LocalWrites:
    """A Tantivy writer in this process."""

    def __init__(self, index: tantivy.Index, heap_bytes: int, threads: int) -> None:
        self._w = index.writer(heap_bytes, threads)

    def add(self, docs: list[LexicalDoc]) -> None:
        for d in docs:
            self._w.add_document(document(d))

    def delete(self, field: str, values: list[str]) -> None:
        for v in values:
            self._w.delete_documents_by_term(field, v)

    def delete_all(self) -> None:
        self._w.delete_all_documents()

    def commit(self) -> None:
        self._w.commit()

    def rollback(self) -> None:
        """Drop uncommitted writes. A dead writer (its commit failed, on a full disk say)
        refuses even this; dropping it is what releases the index lock."""
        with contextlib.suppress(Exception):
            self._w.rollback()

    def close(self) -> None:
        """Let the writer go (its merge threads finish first), releasing the lock."""
        self._w.wait_merging_threads()


def serve(conn: Connection, path: str, heap_bytes: int, threads: int, parent: int) -> None:
    """The worker: open the index's writer at `path` (answering whether it could), then
    apply the writes it is sent, in order. Only a commit, a rollback and the close are
    answered; an earlier write that failed makes the next commit fail with its error."""
    from daemon.lexical import schema

    exit_with_parent(parent)
    try:
        writes = LocalWrites(tantivy.Index(schema(), path, reuse=True), heap_bytes, threads)
    except Exception as exc:  # the lock is busy, the index unreadable: the daemon writes
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("")
    failed = ""
    while True:
        try:
            op, arg = conn.recv()
        except EOFError:  # the daemon let go of the pipe: nothing more will come
            return
        try:
            if failed and op == "commit":
                raise StateError(failed)
            getattr(writes, op)(*arg)
        except Exception as exc:
            failed = failed or f"{type(exc).__name__}: {exc}"
        if op in ("commit", "rollback", "close"):
            conn.send(failed if op == "commit" else "")
            if op != "commit":
                return


class WorkerWrites:
    """A Tantivy writer in a worker process (`serve`), for one batch."""

    def __init__(self, path: str, heap_bytes: int, threads: int) -> None:
        # Spawned, not forked: the daemon runs threads (server, watcher, model).
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._proc = context.Process(
            target=serve,
            args=(theirs, path, heap_bytes, threads, os.getpid()),
            name="rcmd-lexical",
            daemon=True,
        )
        try:
            self._proc.start()
        finally:
            theirs.close()
        try:
            failed = self._reply(START_TIMEOUT_S)
        except StateError:
            self._conn.close()
            raise
        if failed:
            self._end("close")
            raise StateError(f"the lexical worker could not open the index: {failed}")

    def _send(self, op: str, *arg: Any) -> None:
        try:
            self._conn.send((op, arg))
        except OSError as exc:
            raise StateError(f"the lexical worker is gone ({exc})") from exc

    def _reply(self, timeout: float) -> str:
        """The worker's next answer. One that does not come in time is killed, so no late
        answer can be taken for the one to a later request."""
        waited = 0.0
        while not self._conn.poll(_ALIVE_POLL_S):
            waited += _ALIVE_POLL_S
            if not self._proc.is_alive() or waited >= timeout:
                self._proc.kill()
                raise StateError(f"the lexical worker did not answer (exit {self._proc.exitcode})")
        try:
            return str(self._conn.recv())
        except (EOFError, OSError) as exc:
            raise StateError(f"the lexical worker is gone ({exc})") from exc

    def add(self, docs: list[LexicalDoc]) -> None:
        self._send("add", docs)

    def delete(self, field: str, values: list[str]) -> None:
        self._send("delete", field, values)

    def delete_all(self) -> None:
        self._send("delete_all")

    def commit(self) -> None:
        self._send("commit")
        failed = self._reply(COMMIT_TIMEOUT_S)
        if failed:
            raise StateError(f"the lexical worker could not commit: {failed}")

    def rollback(self) -> None:
        self._end("rollback")

    def close(self) -> None:
        self._end("close")

    def _end(self, op: str) -> None:
        """Ask the worker to let the writer go and exit; a worker that does not is
        killed (its writes were not committed, and its death releases the lock)."""
        with contextlib.suppress(StateError):
            self._send(op)
            self._reply(COMMIT_TIMEOUT_S)
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


def start_worker(path: str, heap_bytes: int, threads: int) -> Writes | None:
    """A worker's writes, or None when no worker could start or open the writer (the
    batch then writes in process)."""
    try:
        return WorkerWrites(path, heap_bytes, threads)
    except Exception as exc:
        log.warning("lexical_worker_not_started", path=path, error=str(exc))
        return None
