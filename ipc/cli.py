"""The `rcmd` command line: one function per subcommand, heavy modules never imported.

Each `cmd_*` function is declared with `@command` (ipc.commands) right above it; the
arguments of a protocol method come from its request schema (ipc.requests), so the CLI
cannot drift from what the daemon accepts. Every failure is one line on stderr that
names the next command to try; exit codes are 0 ok, 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from shlex import quote
from typing import Any

from ipc import __version__
from ipc.client import (
    STOPPED_WITH_ROOTS,
    WAIT_STEP_S,
    ensure_daemon,
    has_roots,
    is_running,
    request,
    request_starting,
    stop_daemon,
    wait_root,
)
from ipc.commands import COMMANDS, HelpFormatter, argument, command, request_from_args
from ipc.completion import SHELLS
from ipc.errors import BadRequest, ConfigError, DaemonNotRunning, NotFound, RcmdError
from ipc.paths import RuntimePaths, runtime_paths
from ipc.requests import (
    MAX_LIMIT,
    CalleesRequest,
    CallersRequest,
    DefRequest,
    ExportRequest,
    ImplsRequest,
    IndexRequest,
    NavRequest,
    RefsRequest,
    ReindexRequest,
    RemoveRequest,
    SearchRequest,
    StatusRequest,
)

DESCRIPTION = """\
rcmd keeps a hybrid (BM25 + vector) index of Rust project roots up to date as you edit,
and answers searches in milliseconds. A background daemon does the work; this command
talks to it over a Unix socket and starts it when needed.

examples:
  rcmd index ~/src/myproject --wait     add a root and wait until it is indexed
  rcmd search "retry failed http requests"
  rcmd search HashMap::with_capacity --mode bm25 --json
  rcmd status                           roots, progress, cache, memory
"""


class UsageError(RcmdError):
    """A command line that cannot work as given: one line, exit status 2."""


#: Without a terminal there is no progress to show: one `wait` request per this long.
QUIET_WAIT_STEP_S = 60.0
#: How long `index` and `export` may take to answer: adopting a snapshot or seeding a
#: worktree (unpack, hash the tree, write both indexes) happens before the reply.
ADOPT_TIMEOUT_S = 900.0
#: How long `rcmd stop` waits to learn which roots are indexing: only to say so. With
#: every request thread busy (long searches) a status queued behind them, and the
#: stop failed after 60 s without stopping anything.
STOP_STATUS_TIMEOUT_S = 3.0

EPILOG = """\
environment:
  RCMD_HOME=DIR                 keep all state, cache, socket and logs under DIR
  RCMD_<SECTION>_<KEY>=VALUE    override a config key, e.g. RCMD_INDEX_MAX_FILE_BYTES

files:
  config: ~/.config/rcmd/config.toml (or $RCMD_HOME/config.toml)
  state:  ~/.local/state/rcmd, cache ~/.cache/rcmd, socket $XDG_RUNTIME_DIR/rcmd/rcmd.sock

exit status: 0 ok, 1 error (one line on stderr naming what to do next), 2 usage.
"""


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _rate(p: dict[str, Any]) -> str:
    """Rate and ETA, or "starting…" until there is a rate (an ETA from no rate would only
    climb)."""
    if not p.get("chunks_per_s"):
        return "starting…"
    eta = f", ETA {p['eta_s']:.0f}s" if p.get("eta_s") is not None else ""
    return f"{p['chunks_per_s']:.0f} chunks/s{eta}"


def _progress_line(root: dict[str, Any]) -> str:
    p = root["progress"]
    pending = root.get("vectors_pending", 0)
    if pending and p["files_done"] >= p["files_total"]:
        # Lexical-first: every file is searchable with BM25; vectors are filling in. The
        # root's "vectors pending" counts those not written yet, which lags the chunks
        # embedded by a step: printing both here read as a sum that does not add up.
        return (
            f"{_bar(p['chunks_done'], p['chunks_total'])} BM25 ready; embedding "
            f"{p['chunks_done']}/{p['chunks_total']} chunks  {_rate(p)}"
        )
    return (
        f"{_bar(p['files_done'], p['files_total'])} files {p['files_done']}/{p['files_total']}"
        f"  chunks embedded {p['chunks_done']}/{p['chunks_total']}"
        f"  {_rate(p)}  ({root['activity']})"
    )


def _say_indexing_goes_on(root: str) -> None:
    print(
        f"rcmd: stopped waiting; indexing {root} goes on in the background; "
        "follow it with: rcmd status",
        file=sys.stderr,
    )


def _wait_with_progress(paths: RuntimePaths, root: str) -> dict[str, Any]:
    """Wait for `root` to be idle, with a progress line on a terminal. Ctrl-C ends the
    line and says the work goes on in the daemon (KeyboardInterrupt goes on up: exit 130)."""
    shown = False

    def show(info: dict[str, Any]) -> None:
        nonlocal shown
        shown = True
        sys.stderr.write("\r\033[K" + _progress_line(info))
        sys.stderr.flush()

    # `wait` answers once the root is idle; on a terminal, show progress between short steps.
    tty = sys.stderr.isatty()
    step = WAIT_STEP_S if tty else QUIET_WAIT_STEP_S
    try:
        return wait_root(paths, root, step_s=step, progress=show if tty else None)
    except KeyboardInterrupt:
        if shown:
            sys.stderr.write("\n")
            shown = False
        _say_indexing_goes_on(root)
        raise
    finally:
        if shown:
            sys.stderr.write("\n")


def _report_indexed(paths: RuntimePaths, info: dict[str, Any]) -> None:
    skipped = info["skipped"]["count"]
    note = f", {skipped} skipped (see rcmd status)" if skipped else ""
    print(f"indexed {info['path']}: {info['files']} files, {info['chunks']} chunks{note}")
    if info["last_error"]:
        raise RcmdError(f"last batch failed: {info['last_error']}; see {paths.log_file}")


def broad_folder(target: Path) -> str | None:
    """Why indexing `target` needs --yes because of where it lies (None: it does not):
    `/`, a folder right under `/`, the home folder, or a folder beside it."""
    home = Path.home().resolve()
    if target == home:
        return "your home folder"
    if len(target.parts) <= 1:
        return "the whole file system"
    if len(target.parts) == 2:
        return "a top-level folder (directly under /)"
    if target.parent == home.parent:
        return f"beside your home folder {home} (another user's home)"
    return None


def _refuse_broad(target: Path) -> None:
    """Ask for --yes before watching a folder `broad_folder` names (no daemon needed)."""
    why = broad_folder(target)
    if why is not None:
        raise RcmdError(
            f"{target} is {why}: rcmd would watch and index every Rust file below it; "
            f"if you mean it: rcmd index {quote(str(target))} --yes"
        )


def _refuse_nested(paths: RuntimePaths, target: Path) -> None:
    """Ask for --yes before watching a folder that holds or lies inside a root already
    indexed (its files twice)."""
    for root in request(paths, StatusRequest())["roots"]:
        other = Path(root["path"])
        if other != target and (other in target.parents or target in other.parents):
            inside = "inside" if other in target.parents else "around"
            raise RcmdError(
                f"{target} is {inside} the indexed root {other}: its files would be indexed "
                f"twice; if you mean it: rcmd index {quote(str(target))} --yes"
            )


@command(
    "index",
    "add a root (starts the daemon if needed)",
    "Register a Rust project root with the daemon (starting it if none runs) and index\n"
    "it; the root is then watched and kept up to date. With --wait, show progress\n"
    "(files, chunks embedded, rate, ETA) until the root is indexed. With --from FILE\n"
    "(rcmd export), or when the folder is a git worktree or clone of a repository\n"
    "another root indexes, it starts from that index and indexes only what differs.",
    schema=IndexRequest,
)
@argument("--wait", action="store_true", help="show progress until indexed")
@argument(
    "--yes",
    action="store_true",
    help="index it even if it is /, a top-level folder, your home folder or one beside "
    "it, or overlaps a root",
)
def cmd_index(args: argparse.Namespace, paths: RuntimePaths) -> int:
    if not args.path.strip():
        print("rcmd: give the folder to index (an empty path is refused)", file=sys.stderr)
        return 2
    req = request_from_args(IndexRequest, args)
    if not Path(req.path).is_dir():
        raise RcmdError(f"{req.path} is not a directory; give the root of a Rust project")
    if req.snapshot and not Path(req.snapshot).is_file():
        raise RcmdError(f"{req.snapshot} is not a file; make one with: rcmd export ROOT FILE")
    if not args.yes:
        _refuse_broad(Path(req.path))
    ensure_daemon(paths)
    if not args.yes:
        _refuse_nested(paths, Path(req.path))
    try:
        root = request(paths, req, ADOPT_TIMEOUT_S)
    except KeyboardInterrupt:
        # The daemon finishes a request it has read, so the root is added all the same.
        _say_indexing_goes_on(req.path)
        raise
    except BadRequest as exc:
        if not req.snapshot:
            raise
        raise RcmdError(
            f"{exc}; nothing was installed; index it without: rcmd index {quote(req.path)}"
        ) from None
    if root.get("seed"):
        _report_seed(root["seed"])
    if "deps" in root:
        _report_deps(root["deps"])
    if not args.wait:
        print(f"indexing {root['path']} in the background; follow it with: rcmd status")
        return 0
    _report_indexed(paths, _wait_with_progress(paths, root["path"]))
    return 0


def _report_deps(deps: dict[str, Any]) -> None:
    if deps.get("skipped"):
        print(
            f"rcmd: warning: dependencies not indexed (the project is): {deps['skipped']}",
            file=sys.stderr,
        )
        return
    found, missing = deps["roots"], deps["missing"]
    print(f"dependencies: {len(found)} crates indexed as roots of their own (search them: --deps)")
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        print(
            f"  no sources on this machine for {shown}; fetch them with: cargo fetch",
            file=sys.stderr,
        )


def _report_seed(seed: dict[str, Any]) -> None:
    todo = seed["files_changed"] + seed["files_added"]
    print(
        f"seeded from {seed['source']}: {seed['files_same']} files as they were, "
        f"{todo} to index, {seed['files_deleted']} gone"
    )


@command(
    "export",
    "write a root's index to a snapshot file",
    "Write the committed index of an indexed root (file records, Merkle tree, chunks,\n"
    "vectors and their embedding-cache entries) to FILE, one portable file with paths\n"
    "relative to the root. Another machine, a clone or a CI cache starts from it with:\n"
    "rcmd index PATH --from FILE (only files that differ are then indexed).",
    schema=ExportRequest,
)
def cmd_export(args: argparse.Namespace, paths: RuntimePaths) -> int:
    req = request_from_args(ExportRequest, args)
    if Path(req.file).is_dir():
        name = Path(req.file, f"{Path(req.path).name or 'root'}.rcmd.tar.gz")
        raise RcmdError(
            f"{req.file} is a directory; give the snapshot file to write, e.g.: "
            f"rcmd export {quote(args.path)} {quote(str(name))}"
        )
    result = request_starting(paths, req, ADOPT_TIMEOUT_S)
    print(
        f"exported {result['root']} to {result['file']}: {result['files']} files, "
        f"{result['bytes'] / 1e6:.1f} MB; start a root from it with: "
        f"rcmd index PATH --from {quote(result['file'])}"
    )
    return 0


@command(
    "build",
    "index a tree without a daemon and write its snapshot",
    "Index ROOT from scratch in this process (no daemon, nothing registered) and write\n"
    "its snapshot to FILE, as `rcmd export` would. With --cluster ADDRESS (a Ray\n"
    "address; needs rcmd[cluster]) the chunks are embedded on that cluster. Start a\n"
    "root from the file with: rcmd index PATH --from FILE.",
)
@argument("root", help="the tree to index")
@argument("-o", "--output", required=True, metavar="FILE", help="the snapshot file to write")
@argument("--cluster", default="", metavar="ADDRESS", help="a Ray cluster to embed on")
def cmd_build(args: argparse.Namespace, paths: RuntimePaths) -> int:
    from daemon.build import build_snapshot  # heavy: the whole pipeline, only here

    root = Path(args.root).expanduser().resolve()
    out = Path(args.output).expanduser().resolve()
    result = build_snapshot(root, out, args.cluster)
    if args.cluster and result["cluster"]["state"] != "connected":
        reason = result["cluster"].get("reason", "")
        print(f"rcmd build: the cluster was not used ({reason}); embedded locally", file=sys.stderr)
    print(
        f"built {result['root']} into {result['file']}: {result['files']} files, "
        f"{result['chunks']} chunks, {result['bytes'] / 1e6:.1f} MB; start a root from it "
        f"with: rcmd index PATH --from {quote(result['file'])}"
    )
    return 0


@command(
    "search",
    "hybrid search over indexed roots",
    "Search the indexed root holding the current directory (as rg searches the current\n"
    "tree), else every root; --all searches every root, --root one. The default hybrid\n"
    "mode fuses BM25 and embedding results, so both identifiers (HashMap::with_capacity)\n"
    "and questions (where do we retry failed requests) work. Each result shows\n"
    "path:start-end, symbol, kind, score and the matching lines; paths open from the\n"
    "current directory. --symbol NAME looks a symbol up exactly (rcmd search --symbol\n"
    "Vec::push).",
    schema=SearchRequest,
)
@argument("--json", action="store_true", help="print one JSON object for tools")
@argument("--all", action="store_true", help="search every root, wherever you are")
@argument(
    "--color",
    choices=("auto", "always", "never"),
    default="auto",
    help="colour paths and matches (auto: on a terminal, unless NO_COLOR is set)",
)
def cmd_search(args: argparse.Namespace, paths: RuntimePaths) -> int:
    req = request_from_args(SearchRequest, args)
    if not req.query and not req.symbol:
        # A usage error, like argparse's own (exit status 2).
        print("rcmd: give a query, or a symbol to look up with --symbol NAME", file=sys.stderr)
        return 2
    if req.path is not None and _names_a_place(req.path):
        req = _path_in_root(paths, req, search_all=args.all)
    result = _search_here(paths, req, search_all=args.all)
    exact = result.get("exact")
    if exact is not None and not exact["found"]:
        where = "where --path/--kind look" if req.path or req.kind else "in the searched roots"
        print(
            f"rcmd: no symbol named {exact['symbol']} is defined {where}; "
            "showing the closest matches",
            file=sys.stderr,
        )
    if result.get("confidence") == "low" and result["results"]:
        print("rcmd: low confidence: nothing matches the question closely", file=sys.stderr)
    _say_indexing(result, fresh=True)
    _say_degraded(result, paths.log_file)
    if args.json:
        keys = ("results", "cut", "exact", "confidence", "indexing", "degraded")
        _print_json({k: result[k] for k in keys if k in result})
        return 0
    if not result["results"]:
        print("no results", file=sys.stderr)
        return 0
    _print_hits(result["results"], req.query, _use_color(args.color))
    if result.get("cut"):
        print(f"({result['cut']} more results cut by --max-tokens)", file=sys.stderr)
    return 0


def _say_indexing(result: dict[str, Any], *, fresh: bool) -> None:
    """One stderr line when a root answered is still reading its files: its answer may
    lack what it has not read yet (a first index answered "no results" as if final)."""
    wait = "--fresh waits for it; " if fresh else ""
    for root in result.get("indexing", ()):
        print(
            f"rcmd: {root} is still being indexed; results may be incomplete "
            f"({wait}progress: rcmd status)",
            file=sys.stderr,
        )


def _say_degraded(result: dict[str, Any], log_file: Path) -> None:
    """One stderr line per root whose store failed during the search: the answer came
    from the other roots, or ranked that root by the side that still works."""
    for d in result.get("degraded", ()):
        failed = d["failed"]
        why = "; ".join(f"its {store}: {error}" for store, error in failed.items())
        how = "left out" if d["left_out"] else f"ranked without its {' and '.join(failed)}"
        print(f"rcmd: {d['root']} {how} ({why}); see {log_file}", file=sys.stderr)


def _cwd() -> str | None:
    """The working directory, or None when it was deleted."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def _holder(roots: list[str], path: str) -> str | None:
    """The innermost of `roots` holding `path` (the root itself or a path in it)."""
    inside = [r for r in roots if path == r or path.startswith(r.rstrip("/") + "/")]
    return max(inside, key=len, default=None)


def _search_here(paths: RuntimePaths, req: SearchRequest | NavRequest, *, search_all: bool) -> Any:
    """Search the root holding the working directory, if one does, unless --all or
    --root says otherwise; else every root (also when the working directory is gone)."""
    cwd = None if req.root is not None or search_all else _cwd()
    if req.root is None and not search_all and cwd is None:
        print("rcmd: the current directory no longer exists; searching every root", file=sys.stderr)
    if cwd is not None:
        try:
            return request_starting(paths, dataclasses.replace(req, root=cwd))
        except NotFound as exc:
            if "not inside an indexed root" not in str(exc):
                raise
    return request_starting(paths, req)


def _names_a_place(value: str) -> bool:
    """Whether a --path value names a place from the working directory (absolute, ~,
    ./ or with ..), not a glob or a name matched anywhere in a root."""
    if any(c in value for c in "*?["):
        return False
    parts = value.split("/")
    return value.startswith(("/", "~")) or parts[0] == "." or ".." in parts


def _outside(value: str, searched: list[str], in_another: bool) -> str:
    """The error for a --path outside the roots searched, with the way to reach it."""
    where = "it" if len(searched) == 1 else "one of them"
    line = f"--path {quote(value)} is outside the roots searched ({', '.join(searched)}); "
    if in_another:
        return line + f"give a path inside {where}, or search every root with --all"
    if value.startswith("./") and len(value) > 2:
        return (
            line + f"give a path inside {where}, or one relative to it: --path {quote(value[2:])}"
        )
    return line + f"give a path inside {where}"


def _path_in_root(paths: RuntimePaths, req: SearchRequest, *, search_all: bool) -> SearchRequest:
    """--path made relative to the searched root holding it (the search keeps to that
    root); a place outside every searched root is a usage error."""
    assert req.path is not None
    target = str(Path(req.path).expanduser().resolve())
    roots = request_starting(paths, StatusRequest())["roots"]
    every = [r["path"] for r in roots]
    searched = [r["path"] for r in roots if req.deps or not r.get("dependency")]
    anchor = req.root if req.root is not None else None if search_all else _cwd()
    here = _holder(every, anchor) if anchor is not None else None
    if here is not None:
        searched = [here]
    elif req.root is not None or not searched:
        return req  # the daemon says what is wrong with --root, or that no root is indexed
    root = _holder(searched, target)
    if root is None:
        raise UsageError(_outside(req.path, searched, _holder(every, target) is not None))
    rel = os.path.relpath(target, root)
    return dataclasses.replace(req, root=root, path=None if rel == "." else rel)


def _use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


#: What a hit whose file changed on disk after it was indexed is marked with.
STALE_MARK = "  [changed since indexed]"


def _display_path(hit: dict[str, Any], cwd: str) -> str:
    """A path that opens from the current directory: relative to it when the file lies
    below it (as rg prints), else absolute."""
    full = os.path.join(str(hit["root"]), str(hit["path"]))
    if cwd and full.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(full, cwd)
    return full


def _print_hits(hits: list[dict[str, Any]], query: str, color: bool) -> None:
    cwd = _cwd() or ""
    mark = _highlighter(query) if color else None
    path_on, num_on, off = ("\033[35m", "\033[32m", "\033[0m") if color else ("", "", "")
    for hit in hits:
        where = _display_path(hit, cwd)
        # Its file changed after it was indexed: the lines may have moved (`stale`).
        stale = STALE_MARK if hit.get("stale") else ""
        print(
            f"{path_on}{where}{off}:{num_on}{hit['start_line']}-{hit['end_line']}{off}  "
            f"{hit['symbol']} ({hit['kind']})  {hit['score']:.4f}{stale}"
        )
        for line in hit["snippet"].splitlines()[:4]:
            print(f"    {mark(line) if mark else line}")


def _highlighter(query: str) -> Any:
    """A function that paints the query's words (and identifier parts) bold red, as rg
    paints its matches; None when the query has no word to paint."""
    import re  # only when colouring

    words = {w for w in re.findall(r"[A-Za-z0-9_]+", query) if len(w) > 1}
    words |= {p for w in list(words) for p in w.split("_") if len(p) > 2}
    if not words:
        return None
    pattern = re.compile("|".join(sorted(map(re.escape, words), key=len, reverse=True)), re.I)
    return lambda line: pattern.sub(lambda m: f"\033[1;31m{m.group(0)}\033[0m", line)


def _navigate(args: argparse.Namespace, paths: RuntimePaths, schema: type[NavRequest]) -> Any:
    """Ask a navigation method in the root holding the working directory (else every
    root, or --root's); with --json print the results and return None."""
    req = request_from_args(schema, args)
    result = _search_here(paths, req, search_all=False)
    _say_indexing(result, fresh=False)
    if args.json:
        hits = result["results"]
        busy = {"indexing": result["indexing"]} if "indexing" in result else {}
        _print_json({"results": hits, "total": result.get("total", len(hits))} | busy)
        _nav_tail(schema.method, args, result)
    elif not result["results"]:
        nothing = _NOTHING[schema.method].format(name=req.name)
        print(f"rcmd: {nothing}; {_next(paths, req)}", file=sys.stderr)
    return None if args.json or not result["results"] else result


def _next(paths: RuntimePaths, req: NavRequest) -> str:
    """What to try after an empty answer: `--deps` when the project's dependency crates
    answer it (a name from tokio_util, asked in a project using it, was sent to a text
    search that leaves them out too), else a text search."""
    if not req.deps:
        wider = _search_here(paths, dataclasses.replace(req, deps=True), search_all=False)
        if wider["results"]:
            where = ["--root", req.root] if req.root else []
            again = shlex.join(["rcmd", req.method, req.name, "--deps", *where])
            return f"its dependency crates have {wider.get('total', 1)}: {again}"
    return f"look for it as text with: rcmd search {quote(req.name)}"


#: What an empty answer says, by method (`callers X` found X but no caller of it).
_NOTHING = {
    "def": "no definition of {name} found",
    "refs": "no references to {name} found",
    "callers": "no callers of {name} found",
    "callees": "no calls found in {name}",
    "impls": "no impls of or by {name} found",
}


def _flat_answer(
    args: argparse.Namespace,
    paths: RuntimePaths,
    schema: type[NavRequest],
    line: Callable[[dict[str, Any]], str],
) -> int:
    """A navigation answer printed a line per hit (`line(hit)`)."""
    result = _navigate(args, paths, schema)
    if result is None:
        return 0
    for hit in result["results"]:
        print(line(hit))
    return _nav_tail(schema.method, args, result)


def _nav_tail(method: str, args: argparse.Namespace, result: dict[str, Any]) -> int:
    """After a navigation answer's lines: say when it was cut. The exit status."""
    shown = len(result["results"])
    total = result.get("total", shown)
    if total > shown:
        # The same question: `--deps` and `--root` kept (without them it asks another).
        kept = (["--deps"] if args.deps else []) + (["--root", args.root] if args.root else [])
        _say_more(method, args.name, kept, (shown, total))
    return 0


def _say_more(method: str, name: str, options: list[str], counts: tuple[int, int]) -> None:
    """A cut answer says so, and how to see the rest (or narrow it past the cap);
    `options`: those the question was asked with; `counts`: shown and total."""
    shown, total = counts
    if total <= MAX_LIMIT:
        more = f"see them all with: rcmd {method} {shlex.join([name, *options])} --limit {total}"
    else:
        more = f"narrow it with a qualified name (Type::{name.rsplit('::', 1)[-1]}) or --root"
    print(f"rcmd: showing {shown} of {total} answers; {more}", file=sys.stderr)


def _nav_marks(hit: dict[str, Any]) -> str:
    """A navigation hit's marks: `[by name]` unless resolved, the impl whose method a
    trait method's reference resolved to (`[impl foo::Foo]`), and `STALE_MARK`."""
    mark = "" if hit["confidence"] == "resolved" else "  [by name]"
    if hit.get("impl"):
        mark += f"  [impl {hit['impl']}]"
    return mark + (STALE_MARK if hit.get("stale") else "")


def _where(hit: dict[str, Any]) -> str:
    mark = _nav_marks(hit)
    shown = _display_path(hit, _cwd() or "")
    if " " in hit.get("crate", ""):  # a dependency crate (`name version`): where it lies
        mark += f"  [{hit['crate']}]"
        shown = os.path.join(hit["root"], hit["path"])
    return f"{shown}:{hit['line']}{mark}"


_NAV_JSON = (
    "print {results: [{root, path, line, symbol, kind, confidence, crate, stale, impl}], total}"
)
_NAV_NOTE = (
    "NAME may be a path suffix (codec::crc, Vec::push, push), a path from the crate's\n"
    "root (crate::util::helper), or a path as the crate's users write it\n"
    "(tokio::sync::Mutex, through pub use; the crate's name from its Cargo.toml).\n"
    "Answers resolved through use declarations, self/super/crate, Self and a\n"
    "receiver's written type come first; the rest, matched by name only, are marked\n"
    "[by name]. Asked for a trait's method (Trait::method), refs and callers also\n"
    "list the calls resolved to an impl's method of that name, marked [impl TYPE]."
)


@command(
    "def",
    "where a name is defined",
    "Show the definitions of NAME in the indexed root you are in (else every root).\n" + _NAV_NOTE,
    schema=DefRequest,
)
@argument("--json", action="store_true", help=_NAV_JSON)
def cmd_def(args: argparse.Namespace, paths: RuntimePaths) -> int:
    return _flat_answer(
        args,
        paths,
        DefRequest,
        lambda h: f"{_where(h)}  {h['symbol']} ({h['kind']})",
    )


@command(
    "refs",
    "references to a name, by file",
    "Show every reference to NAME (calls, method calls, type uses, trait bounds, use\n"
    "imports, macro invocations), grouped by file, with the item each one is in.\n" + _NAV_NOTE,
    schema=RefsRequest,
)
@argument("--json", action="store_true", help=_NAV_JSON)
def cmd_refs(args: argparse.Namespace, paths: RuntimePaths) -> int:
    result = _navigate(args, paths, RefsRequest)
    if result is None:
        return 0
    last = None
    for hit in result["results"]:
        file = _display_path(hit, _cwd() or "")
        if file != last:
            print(file)
            last = file
        mark = _nav_marks(hit)
        print(f"  {hit['line']}: {hit['symbol']} ({hit['kind']}) in {hit['via']}{mark}")
    return _nav_tail("refs", args, result)


@command(
    "callers",
    "the fns that call a name, by caller",
    "Show the fns and methods that call NAME (or name it as a value), grouped by the\n"
    "calling item, with each call site.\n" + _NAV_NOTE,
    schema=CallersRequest,
)
@argument("--json", action="store_true", help=_NAV_JSON)
def cmd_callers(args: argparse.Namespace, paths: RuntimePaths) -> int:
    result = _navigate(args, paths, CallersRequest)
    if result is None:
        return 0
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for hit in result["results"]:
        groups.setdefault((hit["root"], hit["symbol"], hit["kind"]), []).append(hit)
    for (_root, symbol, kind), hits in groups.items():
        print(f"{symbol} ({kind})")
        for hit in hits:
            print(f"  {_where(hit)}  calls {hit['via']}")
    return _nav_tail("callers", args, result)


@command(
    "callees",
    "what a fn calls",
    "Show the calls made by the fns or methods NAME defines, in line order.\n" + _NAV_NOTE,
    schema=CalleesRequest,
)
@argument("--json", action="store_true", help=_NAV_JSON)
def cmd_callees(args: argparse.Namespace, paths: RuntimePaths) -> int:
    return _flat_answer(
        args,
        paths,
        CalleesRequest,
        lambda h: f"{_where(h)}  {h['symbol']} ({h['kind']}) from {h['via']}",
    )


@command(
    "impls",
    "impls of a trait, or traits of a type",
    "Show the types that implement the trait NAME, or the traits the type NAME\n"
    "implements (impl Trait for Type).\n" + _NAV_NOTE,
    schema=ImplsRequest,
)
@argument("--json", action="store_true", help=_NAV_JSON)
def cmd_impls(args: argparse.Namespace, paths: RuntimePaths) -> int:
    return _flat_answer(
        args,
        paths,
        ImplsRequest,
        lambda h: f"{_where(h)}  {h['symbol']}  (impl with {h['via']})",
    )


def _fmt_bytes(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _embedding_lines(status: dict[str, Any]) -> list[str]:
    """Human status: the model and its cache, where it runs, and the cluster if any."""
    emb = status["embedding"]
    # Chunks sharing a vector miss the cache together and are one text for the model.
    texts = f" ({emb['texts_embedded']} texts)" if "texts_embedded" in emb else ""
    lines = [
        f"embeddings: {emb['model']}  cache hits {emb['cache_hits']}  misses {emb['cache_misses']}"
        f"{texts}  vectors: {status['vector_store']}"
    ]
    device = emb.get("device")  # absent from older daemons
    if device and device.get("used"):
        lines.append(f"  device: {device['used']} ({device['requested']}: {device['reason']})")
    layout = emb.get("layout")  # absent from older daemons
    if layout and "runs" in layout:
        rates = ", ".join(f"{k} {v:.0f}" for k, v in layout.get("tokens_per_s", {}).items())
        lines.append(
            f"  layout: {layout['runs']} runs x {layout['threads']} threads"
            f" ({layout['chosen_by']}{'; tokens/s ' + rates if rates else ''})"
        )
    cluster = status.get("cluster")
    if cluster and cluster["state"] != "off":
        how = (
            f"{cluster['workers']} workers"
            if cluster["state"] == "connected"
            else cluster.get("reason", "")
        )
        lines.append(
            f"  cluster {cluster['address']}: {cluster['state']} ({how}), "
            f"{cluster['chunks_embedded']} chunks embedded there"
        )
    return lines


@command(
    "status",
    "roots, progress, cache, memory",
    "Show the daemon (pid, uptime, memory, embedding cache) and each root: files,\n"
    "chunks, Merkle root, last commit, queue, current activity, skipped files by\n"
    "reason. --verify also checks that disk, state.db, Tantivy and Qdrant agree\n"
    "(exit code 1 if they do not). It never starts a stopped daemon (a search does).",
    schema=StatusRequest,
)
@argument("--json", action="store_true", help="print one JSON object for tools")
def cmd_status(args: argparse.Namespace, paths: RuntimePaths) -> int:
    """Report, never start: after `rcmd stop`, `rcmd status` must not bring it back."""
    try:
        status = request(paths, request_from_args(StatusRequest, args))
    except DaemonNotRunning:
        _check_config()
        if not has_roots(paths):
            raise
        raise DaemonNotRunning(STOPPED_WITH_ROOTS) from None
    if args.json:
        _print_json(status)
        return 1 if args.verify and not status["verify"]["ok"] else 0
    print(
        f"rcmd {status['version']}  pid {status['pid']}  up {status['uptime_s']:.0f}s  "
        f"RSS {_fmt_bytes(status['rss_bytes'])}  socket {status['socket']}"
    )
    print("\n".join(_embedding_lines(status)))
    if not status["roots"] and not status.get("failed_roots"):
        print("no roots; add one with: rcmd index PATH")
    for failed in status.get("failed_roots", []):
        print(f"\n{failed['path']}  [failed to open: {failed['error']}]\n  {failed['next']}")
    for r in status["roots"]:
        state = "idle" if r["idle"] else r["activity"]
        print(f"\n{r['path']}  [{state}]")
        pending = r.get("vectors_pending", 0)
        vec = f"  vectors pending {pending}" if pending else ""
        print(f"  files {r['files']}  chunks {r['chunks']}  queue {r['queue']}{vec}")
        print(f"  merkle root {r['merkle_root'][:16]}  watcher: {r['watcher']}")
        if r.get("seeded_from"):
            print(f"  seeded from {r['seeded_from']}")
        if r.get("dependency"):
            print(f"  dependency crate {r['dependency']} (searched with --deps)")
        if r.get("deps_skipped"):
            print(f"  dependencies not indexed: {r['deps_skipped']}")
        if r["last_commit"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_commit"]))
            print(f"  last commit {when}")
        if not r["idle"]:
            print("  " + _progress_line(r))
        if r["skipped"]["count"]:
            reasons = ", ".join(f"{k} {v}" for k, v in r["skipped"]["by_reason"].items())
            print(f"  skipped {r['skipped']['count']}: {reasons}")
        if r["last_error"]:
            print(f"  last error: {r['last_error']}")
        if r.get("repaired"):
            print(f"  repaired at start: {r['repaired']}")
    if args.verify:
        v = status["verify"]
        for r in v["roots"]:
            if r.get("busy"):
                print(f"\nverify {r['path']}: indexing, not checked; retry when it is idle")
                continue
            verdict = "ok" if r["ok"] else f"{r['problem_count']} problem(s)"
            print(f"\nverify {r['path']}: {verdict}")
            for p in r["problems"]:
                print(f"  {p}")
        return 0 if v["ok"] else 1
    return 0


def _check_config() -> None:
    """With the daemon down, a broken config is what would stop the next search from
    starting it: say that, not "a search starts it". Reading it takes a few ms."""
    from daemon.config import load_config

    try:
        load_config()
    except ConfigError as exc:
        raise ConfigError(f"daemon not running, and it cannot start: {exc}") from None


@command(
    "reindex",
    "rebuild a root's indexes (reuses the embedding cache)",
    "Re-read and re-chunk every file, for one root or all: its Tantivy documents are\n"
    "rewritten, and its state.db rows and vectors checked against its chunks, so what\n"
    "is missing, stray or different is written again or deleted. The embedding cache\n"
    "is reused, so unchanged code is not embedded again. With --wait, show progress\n"
    "until done. To start from nothing instead: rcmd remove ROOT, then rcmd index ROOT.",
    schema=ReindexRequest,
)
@argument("--wait", action="store_true", help="show progress until rebuilt")
def cmd_reindex(args: argparse.Namespace, paths: RuntimePaths) -> int:
    req = request_from_args(ReindexRequest, args)
    if not req.force:
        target = f" {quote(req.path)}" if req.path else ""
        what = "rebuilds that root's index" if req.path else "rebuilds every root's index"
        raise RcmdError(f"reindex {what}; confirm with: rcmd reindex --force{target}")
    result = request_starting(paths, req)
    if not args.wait:
        print(f"rebuilding {', '.join(result['roots'])}; follow it with: rcmd status")
        return 0
    for root in result["roots"]:
        _report_indexed(paths, _wait_with_progress(paths, root))
    return 0


@command(
    "remove",
    "stop watching a root and delete its index",
    "Stop watching a root and delete its index (its chunks, vectors and state; the\n"
    "shared embedding cache is kept). The files in the root are not touched. To index\n"
    "it again: rcmd index PATH.",
    schema=RemoveRequest,
)
def cmd_remove(args: argparse.Namespace, paths: RuntimePaths) -> int:
    result = request_starting(paths, request_from_args(RemoveRequest, args))
    print(f"removed {result['removed']} and its index")
    return 0


@command("stop", "stop the daemon (commits first)", "Commit pending work and stop.")
def cmd_stop(args: argparse.Namespace, paths: RuntimePaths) -> int:
    if not is_running(paths):
        print("daemon not running", file=sys.stderr)
        return 0
    try:
        status = request(paths, StatusRequest(), timeout=STOP_STATUS_TIMEOUT_S)
        busy = [r for r in status["roots"] if not r["idle"]]
    except DaemonNotRunning:
        raise
    except RcmdError:  # every request thread busy: stopped without saying what it does
        busy = []
    for r in busy:
        print(f"stopping: the daemon finishes the current step of {r['path']} first")
        print("  " + _progress_line(r))
    tty = sys.stderr.isatty()

    def waiting(seconds: float) -> None:
        if tty:
            sys.stderr.write(f"\r\033[Kfinishing the current step… {seconds:.0f}s")
            sys.stderr.flush()

    stop_daemon(paths, waiting=waiting if busy else None)  # returns once the lock is free
    if busy and tty:
        sys.stderr.write("\n")
    print("daemon stopped" + ("; indexing resumes when it starts again" if busy else ""))
    return 0


@command(
    "daemon",
    "run the daemon in the foreground (for service managers)",
    "Run the daemon in the foreground; logs go to the log file (and readably to a\n"
    "terminal). Takes a listening socket from systemd (socket activation) and reports\n"
    "readiness via sd_notify when started by systemd.",
)
def cmd_daemon(args: argparse.Namespace, paths: RuntimePaths) -> int:
    from daemon.main import run  # the only heavy import, and only for this command

    return run(foreground=True)


@command(
    "service",
    "install or remove the systemd user units / launchd agent",
    "install: write the systemd user units (Linux) or the launchd agent (macOS) for\n"
    "this rcmd, then print the command that enables it. uninstall: remove them.\n"
    "status: whether they are installed and current. Running it twice is harmless.",
)
@argument("action", choices=("install", "uninstall", "status"))
@argument("--manager", choices=("systemd", "launchd"), help="default: this platform's")
def cmd_service(args: argparse.Namespace, paths: RuntimePaths) -> int:
    from ipc.units import default_manager, service_files

    spec = service_files(args.manager or default_manager(), paths)
    if args.action == "install":
        changed = []
        for path, text in spec.files.items():
            if path.exists() and path.read_text() == text:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
        for path in spec.files:
            print(f"{'wrote' if path in changed else 'up to date'}: {path}")
        print(f"enable it with: {spec.enable}")
    elif args.action == "uninstall":
        removed = [p for p in spec.files if p.exists()]
        if removed:
            print(f"stop it first if it runs: {spec.disable}")
        for path in removed:
            path.unlink()
            print(f"removed: {path}")
        if not removed:
            print(f"no {spec.manager} files installed")
    else:
        for path, text in spec.files.items():
            if not path.exists():
                state = "not installed (rcmd service install)"
            elif path.read_text() == text:
                state = "installed"
            else:
                state = "installed, differs from this rcmd (rcmd service install updates it)"
            print(f"{path}: {state}")
        print(f"daemon: {'running' if is_running(paths) else 'not running'}")
    return 0


@command(
    "completion",
    "print a shell completion script",
    "Print a completion script for bash, zsh or fish; the first lines say where to put it.",
)
@argument("shell", choices=SHELLS)
def cmd_completion(args: argparse.Namespace, paths: RuntimePaths) -> int:
    from ipc.completion import script

    sys.stdout.write(script(args.shell, build_parser()))
    return 0


@command(
    "mcp",
    "run an MCP server on stdio (for agents)",
    "Serve the Model Context Protocol on stdin/stdout with the tools search, status,\n"
    "reindex, read_chunk and similar_code, forwarding to the daemon (started if needed).",
)
def cmd_mcp(args: argparse.Namespace, paths: RuntimePaths) -> int:
    from ipc.mcp_bridge import run

    return run(paths)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole `rcmd` parser, from the commands declared above; with `only`, just that
    command's subparser (each one costs schema introspection at start-up)."""
    parser = argparse.ArgumentParser(
        prog="rcmd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rcmd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        if only is None or cmd.name == only:
            cmd.add_to(sub)
    return parser


def _write_error(exc: OSError) -> bool:
    """Whether `exc` is a failed write with no file named: stdout's (a full disk, /dev/full,
    an I/O error), as coreutils reports it."""
    import errno

    codes = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}
    return exc.filename is None and exc.errno in codes


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError: `<strerror>: <file>`, and what to fix where that is known
    (a deleted working directory, an RCMD_HOME that cannot hold rcmd's files)."""
    if _write_error(exc):
        return f"write error: {exc.strerror}"
    if exc.filename is None and _cwd() is None:
        return "the current directory no longer exists; cd to one that does, or give absolute paths"
    line = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
    home = os.environ.get("RCMD_HOME")
    if not home or not exc.filename:
        return line
    base = Path(os.path.realpath(os.path.join(_cwd() or "/", os.path.expanduser(home))))
    failed = Path(os.fsdecode(exc.filename))
    if base != failed and base not in failed.parents:
        return line
    setting = f"RCMD_HOME={quote(home)}"
    if base.exists() and not base.is_dir():
        return f"{line}; {setting} is not a folder: point it at one (made if missing)"
    return f"{line}; {setting} must be a folder you can write to"


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit has nowhere to fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if sys.stdout is None and args.command != "daemon":  # `rcmd ... >&-`
        print("rcmd: write error: stdout is closed", file=sys.stderr)
        return 1
    try:
        code: int = args.func(args, runtime_paths())
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return code
    except UsageError as exc:
        print(f"rcmd: {exc}", file=sys.stderr)
        return 2
    except RcmdError as exc:
        print(f"rcmd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `rcmd search ... | head -1`: the reader left; stop quietly, as rg and grep do.
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except OSError as exc:
        print(f"rcmd: {_os_error_line(exc)}", file=sys.stderr)
        if _write_error(exc) and sys.stdout is not None:
            _quiet_stdout()
        return 1


if __name__ == "__main__":
    sys.exit(main())
