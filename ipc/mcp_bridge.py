"""`rcmd mcp`: a stdio MCP server (the official `mcp` SDK) that forwards to the daemon.

Agents get the tools `search`, `status`, `reindex`, `read_chunk`, `similar_code`, and
the navigation tools `definitions`, `references`, `callers`, `callees`, `implementations`.
The daemon is started on first use if none runs; every call is one protocol request, built
through the method's schema (ipc.requests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ipc import __version__
from ipc.client import ensure_daemon, request
from ipc.errors import RcmdError
from ipc.paths import RuntimePaths
from ipc.requests import (
    CalleesRequest,
    CallersRequest,
    DefRequest,
    ImplsRequest,
    MethodRequest,
    ReadRequest,
    RefsRequest,
    ReindexRequest,
    SearchRequest,
    SimilarRequest,
    StatusRequest,
)

if TYPE_CHECKING:
    from mcp.server import MCPServer

INSTRUCTIONS = """\
rcmd searches the Rust code of the project roots it indexes (hybrid BM25 + embeddings,
kept up to date as files change). Use `search` with natural language ("where do we retry
failed requests") or identifiers (`HashMap::with_capacity`); results give root, path,
1-based inclusive line range, symbol, kind and a snippet. Use `read_chunk` to read a
result's lines and `similar_code` to find code like a given range. `definitions`,
`references`, `callers`, `callees` and `implementations` navigate the symbol graph: give
a name or path suffix (`codec::crc`, `Vec::push`); answers say `confidence: resolved`
(through imports and paths) or `name` (matched by name only); asked for a trait's method
(`Trait::method`), references and callers also give the calls resolved to an impl's
method of that name, with `impl` (the impl's symbol)."""


#: MCP tool → the protocol method it forwards to; its parameters are that method's fields
#: (tests/test_requests.py checks they stay so).
TOOL_METHODS = {
    "search": "search",
    "status": "status",
    "reindex": "reindex",
    "read_chunk": "read",
    "similar_code": "similar",
    "definitions": "def",
    "references": "refs",
    "callers": "callers",
    "callees": "callees",
    "implementations": "impls",
}


Forward = Callable[[MethodRequest], Awaitable[dict[str, Any]]]


def build_server(paths: RuntimePaths) -> Any:
    from anyio import to_thread
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("rcmd", version=__version__, instructions=INSTRUCTIONS)

    async def forward(req: MethodRequest) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            ensure_daemon(paths)
            result: dict[str, Any] = request(paths, req)
            return result

        try:
            return await to_thread.run_sync(run)
        except RcmdError as exc:
            # The SDK's way to hand the agent an `isError` result with this one line;
            # any other exception would reach it as a bare "Error executing tool".
            raise ToolError(str(exc)) from None

    _search_tools(server, forward)
    _status_and_code_tools(server, forward)
    _navigation_tools(server, forward)
    return server


def _search_tools(server: MCPServer, forward: Forward) -> None:
    @server.tool()
    async def search(
        query: str = "",
        root: str | None = None,
        limit: int = 10,
        mode: str = "hybrid",
        path: str | None = None,
        kind: str | None = None,
        symbol: str | None = None,
        fresh: bool = False,
        max_tokens: int | None = None,
        deps: bool = False,
    ) -> dict[str, Any]:
        """Search indexed Rust code. mode: hybrid (default), bm25 or vector. path: a glob on
        the root-relative path (e.g. "src/net/*"); kind: fn, method, struct, enum, trait,
        impl, macro, ... ; root: narrow to the root holding this absolute path; symbol: an
        exact symbol lookup (e.g. "Vec::push"), query may then be left out. fresh: true after
        you edited files, to search only once your edits are indexed. A hit with
        `stale: true` changed on disk since it was indexed. max_tokens: a budget for the
        results (about 4 characters a token): snippets are trimmed, later hits cut, and
        `cut` says how many. deps: also search the dependency crates indexed with
        `rcmd index --deps`. A reply with `indexing` names roots still reading their
        files: their answer may be incomplete (fresh: true waits for them); one with
        `degraded` names roots whose index failed during the search, ranked without it
        or (`left_out`) not searched."""
        return await forward(
            SearchRequest(
                query=query,
                root=root,
                limit=limit,
                mode=mode,
                path=path,
                kind=kind,
                symbol=symbol,
                fresh=fresh,
                max_tokens=max_tokens,
                deps=deps,
            )
        )


def _status_and_code_tools(server: MCPServer, forward: Forward) -> None:
    @server.tool()
    async def status() -> dict[str, Any]:
        """Daemon and per-root status: files, chunks, progress, skipped files, memory."""
        return await forward(StatusRequest())

    @server.tool()
    async def reindex(path: str | None = None, force: bool = False) -> dict[str, Any]:
        """Scan a root again (all roots without `path`) and index what changed; `force`:
        rebuild it whole (the embedding cache is reused), as `rcmd reindex --force`."""
        return await forward(ReindexRequest(path=path, force=force))

    @server.tool()
    async def read_chunk(
        path: str, start_line: int = 1, end_line: int | None = None, root: str | None = None
    ) -> dict[str, Any]:
        """Source lines of a file inside an indexed root (e.g. a search result's range).
        `path` is absolute, or relative to `root`."""
        return await forward(
            ReadRequest(path=path, start_line=start_line, end_line=end_line, root=root)
        )

    @server.tool()
    async def similar_code(
        path: str, start_line: int, end_line: int, limit: int = 10, root: str | None = None
    ) -> dict[str, Any]:
        """Chunks most similar (by embedding) to the given lines of a file, the range itself
        excluded."""
        return await forward(
            SimilarRequest(
                path=path, start_line=start_line, end_line=end_line, limit=limit, root=root
            )
        )


def _navigation_tools(server: MCPServer, forward: Forward) -> None:
    @server.tool()
    async def definitions(
        name: str, root: str | None = None, limit: int = 200, deps: bool = False
    ) -> dict[str, Any]:
        """Where a Rust name is defined; `name` may be a path suffix (`codec::crc`).
        deps: also in the dependency crates indexed with `rcmd index --deps`."""
        return await forward(DefRequest(name=name, root=root, limit=limit, deps=deps))

    @server.tool()
    async def references(
        name: str, root: str | None = None, limit: int = 200, deps: bool = False
    ) -> dict[str, Any]:
        """Every reference to a name: calls, method calls, type uses, bounds, imports."""
        return await forward(RefsRequest(name=name, root=root, limit=limit, deps=deps))

    @server.tool()
    async def callers(
        name: str, root: str | None = None, limit: int = 200, deps: bool = False
    ) -> dict[str, Any]:
        """The fns and methods calling a name (`symbol` is the caller, `via` the callee)."""
        return await forward(CallersRequest(name=name, root=root, limit=limit, deps=deps))

    @server.tool()
    async def callees(
        name: str, root: str | None = None, limit: int = 200, deps: bool = False
    ) -> dict[str, Any]:
        """What the fns or methods a name defines call."""
        return await forward(CalleesRequest(name=name, root=root, limit=limit, deps=deps))

    @server.tool()
    async def implementations(
        name: str, root: str | None = None, limit: int = 200, deps: bool = False
    ) -> dict[str, Any]:
        """The types implementing a trait, or the traits a type implements."""
        return await forward(ImplsRequest(name=name, root=root, limit=limit, deps=deps))


def run(paths: RuntimePaths) -> int:
    build_server(paths).run("stdio")
    return 0
