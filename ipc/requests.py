"""One request schema per protocol method, shared by the daemon and every client.

Each method's parameters are declared once, as a frozen dataclass: the daemon parses with
`XRequest.from_params(params)` (raising `BadRequest` with a message a client author can
act on), clients build with `XRequest(...).to_params()`. Field metadata (`spec`) carries
the help text, the CLI flag and the allowed values, so the `rcmd` CLI derives its flags
from here and a test checks the MCP tools against the same fields: adding a parameter is
one edit here, not four lists that drift apart.

Stdlib only (editors may vendor `ipc`).
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

from ipc.errors import BadRequest
from ipc.protocol import KINDS, MODES

#: Most results one search or similar request returns.
MAX_LIMIT = 1000
#: Largest line number a request may name.
MAX_LINE = 1 << 31
#: Largest `max_tokens` budget a search takes.
MAX_TOKENS = 1 << 24
#: Longest one `wait` request blocks; wait again for longer.
MAX_WAIT_S = 3600.0


#: Longest string any field takes (a path: Linux's PATH_MAX is 4096 bytes).
MAX_STRING_CHARS = 4096
#: Longest query or symbol: past a few hundred characters a query finds nothing more,
#: and a 540 KB one cost ~20 s of CPU.
MAX_QUERY_CHARS = 1000


def spec(
    help: str,
    *,
    cli: str | None = None,
    cli_help: str | None = None,
    choices: tuple[str, ...] | None = None,
    bounds: tuple[float, float] | None = None,
    metavar: str | None = None,
    resolve: bool = False,
    absolute: bool = False,
    max_chars: int = MAX_STRING_CHARS,
) -> dict[str, Any]:
    """Metadata of one request field.

    `cli`: the `rcmd` flag (`--kind`) or positional name (`query`) this field is exposed
    as; `cli_help` overrides `help` there. `choices`: allowed values. `bounds`: inclusive
    range of a number. `resolve`: the CLI makes the value an absolute path first.
    `absolute`: the value names a file system location, so it must be an absolute path
    (or start with `~`): the daemon cannot know the client's working directory, and
    must not guess with its own. `resolve` implies it. `max_chars`: the longest string
    accepted (every string is also refused with a NUL).
    """
    return {
        "help": help,
        "cli": cli,
        "cli_help": cli_help,
        "choices": choices,
        "bounds": bounds,
        "metavar": metavar,
        "resolve": resolve,
        "absolute": absolute or resolve,
        "max_chars": max_chars,
    }


@dataclass(frozen=True, slots=True)
class MethodRequest:
    """Base of the request schemas: parsing and encoding driven by the fields."""

    #: The protocol method this schema is for (set by `@protocol_method`).
    method: ClassVar[str]
    #: The call may block for long (`wait`): the server runs it on a thread of its own.
    long: ClassVar[bool] = False
    #: The call may take seconds of work (`verify`, `read`, `similar`, opening a root):
    #: the server runs it on a small pool of its own, so cheap calls never queue behind it.
    heavy: ClassVar[bool] = False
    #: The call does no work (`hello`, `stop`): the server answers it on its event loop,
    #: so it never queues behind busy threads (`rcmd stop` timed out on its `hello`
    #: behind eight long searches).
    instant: ClassVar[bool] = False

    @classmethod
    def is_heavy(cls, params: Mapping[str, Any]) -> bool:
        """Whether this call, with these params, is heavy (see `heavy`)."""
        return cls.heavy

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Validate a request's `params`; unknown keys are ignored, as they always were."""
        hints = field_types(cls)
        values = {f.name: _read(f, hints[f.name], params) for f in fields(cls)}
        request = cls(**values)
        request.check()
        return request

    def to_params(self) -> dict[str, Any]:
        """The `params` object to send: every field that is not None."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}

    def check(self) -> None:
        """Rules that span fields; overridden where a method has some."""


R = TypeVar("R", bound=MethodRequest)

#: Method name → its request schema.
REQUESTS: dict[str, type[MethodRequest]] = {}


def protocol_method(
    name: str, *, long: bool = False, heavy: bool = False, instant: bool = False
) -> Callable[[type[R]], type[R]]:
    """Register a schema as the request of method `name`."""

    def register(cls: type[R]) -> type[R]:
        cls.method = name
        cls.long = long
        cls.heavy = heavy
        cls.instant = instant
        REQUESTS[name] = cls
        return cls

    return register


_HINTS: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a schema's fields (cached)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def base_type(hint: Any) -> tuple[type, bool]:
    """(str/int/float/bool, whether None is allowed) of a field's annotation."""
    if isinstance(hint, types.UnionType):
        args = [a for a in hint.__args__ if a is not type(None)]
        return args[0], len(args) < len(hint.__args__)
    return hint, False


def _read(f: Field[Any], hint: Any, params: Mapping[str, Any]) -> Any:
    kind, nullable = base_type(hint)
    if f.name not in params and f.default is not MISSING:
        return f.default
    value: Any = params.get(f.name)
    if value is None and nullable:
        return None
    meta = f.metadata
    lo, hi = meta.get("bounds") or (-math.inf, math.inf)
    if kind is str:
        ok = isinstance(value, str)
        want = "a string or null" if nullable else "a string"
    elif kind is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif kind is int:
        ok = type(value) is int and lo <= value <= hi
        want = f"an integer from {lo:.0f} to {hi:.0f}" if meta.get("bounds") else "an integer"
    else:
        ok = type(value) in (int, float) and math.isfinite(value) and lo <= value <= hi
        want = f"a number from {lo:g} to {hi:g}"
    if not ok:
        raise BadRequest(f"'{f.name}' must be {want}")
    if kind is str:
        _check_text(f.name, value, meta.get("max_chars", MAX_STRING_CHARS))
        if meta.get("absolute"):
            check_absolute(f.name, value)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise BadRequest(f"'{f.name}' must be one of {', '.join(choices)}")
    return float(value) if kind is float else value


def _check_text(name: str, value: str, max_chars: int) -> None:
    if len(value) > max_chars:
        raise BadRequest(f"'{name}' is {len(value)} characters long; at most {max_chars}")
    if "\0" in value:
        raise BadRequest(f"'{name}' must not contain a NUL character")


#: Most characters of a refused path quoted back in the error.
_SHOWN_PATH_CHARS = 200


def is_absolute(value: str) -> bool:
    """Whether a location is absolute (`~` counts: the daemon user's home, the same for
    every client). A relative one would resolve against the daemon's working directory:
    `""` once registered the folder the daemon was started from."""
    return os.path.isabs(os.path.expanduser(value))


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_PATH_CHARS else value[:_SHOWN_PATH_CHARS] + "...")


def check_absolute(name: str, value: str) -> None:
    """Refuse a location that is not absolute (see `is_absolute`)."""
    if not is_absolute(value):
        raise BadRequest(
            f"'{name}' must be absolute: {_shown(value)} (the daemon cannot know the "
            "client's working directory)"
        )


# ---- the methods ----


@protocol_method("hello", instant=True)
@dataclass(frozen=True, slots=True)
class HelloRequest(MethodRequest):
    """Protocol version, package version and pid of the daemon."""


@protocol_method("stop", instant=True)
@dataclass(frozen=True, slots=True)
class StopRequest(MethodRequest):
    """Commit and exit."""


@protocol_method("status")
@dataclass(frozen=True, slots=True)
class StatusRequest(MethodRequest):
    verify: bool = field(
        default=False, metadata=spec("check disk, state and both indexes agree", cli="--verify")
    )

    @classmethod
    def is_heavy(cls, params: Mapping[str, Any]) -> bool:
        return params.get("verify") is True  # a plain status is cheap; a verify is not


def unclosed_class(glob: str) -> int | None:
    """Where `glob` opens a character class it never closes (`[` with no `]` after it,
    a `]` right after `[` or `[!` being part of the class), else None. fnmatch would
    take that `[` literally; ripgrep and git refuse such a glob, and so does search."""
    i = glob.find("[")
    while i >= 0:
        j = i + 1
        j += glob.startswith("!", j)
        j += glob.startswith("]", j)
        close = glob.find("]", j)
        if close < 0:
            return i
        i = glob.find("[", close + 1)
    return None


@protocol_method("search")
@dataclass(frozen=True, slots=True)
class SearchRequest(MethodRequest):
    query: str = field(
        default="",
        metadata=spec(
            "words, an identifier or a path like HashMap::insert",
            cli="query",
            max_chars=MAX_QUERY_CHARS,
        ),
    )
    root: str | None = field(
        default=None,
        metadata=spec("search only the root holding this path", cli="--root", resolve=True),
    )
    limit: int = field(
        default=10,
        metadata=spec("results to show (default 10)", cli="--limit", bounds=(1, MAX_LIMIT)),
    )
    mode: str = field(
        default="hybrid", metadata=spec("default: hybrid", cli="--mode", choices=MODES)
    )
    path: str | None = field(
        default=None,
        metadata=spec(
            "only paths matching GLOB, e.g. 'src/net/*'",
            cli="--path",
            cli_help="only paths matching GLOB ('src/net/*'), in a folder of that name (net), "
            "or under a path from the current directory (../net, /abs/src)",
            metavar="GLOB",
        ),
    )
    kind: str | None = field(
        default=None, metadata=spec("only chunks of this kind", cli="--kind", choices=KINDS)
    )
    symbol: str | None = field(
        default=None,
        metadata=spec(
            "only the symbol NAME or one ending in ::NAME (exact, case-sensitive), "
            "e.g. 'HashMap::with_capacity', or what a public path names "
            "(tokio::sync::Mutex); the query is then optional",
            cli="--symbol",
            metavar="NAME",
            max_chars=MAX_QUERY_CHARS,
        ),
    )
    fresh: bool = field(
        default=False,
        metadata=spec(
            "first wait until every change made before this search is indexed "
            "(fails after a deadline rather than answer from an older index)",
            cli="--fresh",
        ),
    )
    deps: bool = field(
        default=False,
        metadata=spec(
            "also search the dependency crates indexed with `rcmd index --deps`",
            cli="--deps",
        ),
    )
    max_tokens: int | None = field(
        default=None,
        metadata=spec(
            "budget for the results, in tokens of about 4 characters of their JSON: "
            "snippets are trimmed, then the last hits cut (the reply's `cut` counts them)",
            cli="--max-tokens",
            metavar="N",
            bounds=(1, MAX_TOKENS),
        ),
    )

    def check(self) -> None:
        if self.symbol is not None and not self.symbol.strip():
            raise BadRequest("'symbol' must not be empty")
        if not self.query.strip() and self.symbol is None:
            raise BadRequest("'query' must not be empty (it may be left out with 'symbol')")
        if self.path is not None and (at := unclosed_class(self.path)) is not None:
            raise BadRequest(
                f"'path' is not a valid glob: the '[' at character {at + 1} opens a "
                "character class that is never closed (a literal '[' is written '[[]')"
            )

    @property
    def symbol_name(self) -> str | None:
        """The symbol to look up, without surrounding blanks."""
        return self.symbol.strip() if self.symbol is not None else None


@protocol_method("index", heavy=True)
@dataclass(frozen=True, slots=True)
class IndexRequest(MethodRequest):
    path: str = field(metadata=spec("root of a Rust project", cli="path", resolve=True))
    snapshot: str | None = field(
        default=None,
        metadata=spec(
            "start from this snapshot (made by rcmd export), then catch up with the files",
            cli="--from",
            metavar="FILE",
            resolve=True,
        ),
    )
    deps: bool = field(
        default=False,
        metadata=spec(
            "also index the dependency crates Cargo.lock (else Cargo.toml) names, from "
            "their sources on this machine (~/.cargo/registry/src, vendor/, Debian's "
            "/usr/share/cargo/registry): one shared, unwatched root per crate version",
            cli="--deps",
        ),
    )


@protocol_method("export", heavy=True)
@dataclass(frozen=True, slots=True)
class ExportRequest(MethodRequest):
    path: str = field(
        metadata=spec("the indexed root (or a path inside it)", cli="path", resolve=True)
    )
    file: str = field(
        metadata=spec(
            "the snapshot file to write (replaced if it exists)", cli="file", resolve=True
        )
    )


@protocol_method("reindex")
@dataclass(frozen=True, slots=True)
class ReindexRequest(MethodRequest):
    path: str | None = field(
        default=None,
        metadata=spec("root to rebuild (default: all roots)", cli="path", resolve=True),
    )
    force: bool = field(
        default=False,
        metadata=spec(
            "re-read and rewrite every file (without: a reconcile scan)",
            cli="--force",
            cli_help="required: confirms the rebuild",
        ),
    )


@protocol_method("remove", heavy=True)
@dataclass(frozen=True, slots=True)
class RemoveRequest(MethodRequest):
    path: str = field(metadata=spec("the root to forget", cli="path", resolve=True))


@protocol_method("verify", heavy=True)
@dataclass(frozen=True, slots=True)
class VerifyRequest(MethodRequest):
    root: str | None = field(
        default=None, metadata=spec("the root to check (default: all)", absolute=True)
    )


@protocol_method("read", heavy=True)
@dataclass(frozen=True, slots=True)
class ReadRequest(MethodRequest):
    path: str = field(metadata=spec("a file: absolute, or relative to root"))
    root: str | None = field(
        default=None, metadata=spec("the root `path` is relative to", absolute=True)
    )
    start_line: int = field(default=1, metadata=spec("first line", bounds=(1, MAX_LINE)))
    end_line: int | None = field(
        default=None, metadata=spec("last line (inclusive)", bounds=(1, MAX_LINE))
    )

    def check(self) -> None:
        if self.end_line is not None and self.end_line < self.start_line:
            raise BadRequest(f"'end_line' must be an integer from {self.start_line} to {MAX_LINE}")
        if self.root is None and not is_absolute(self.path):
            raise BadRequest(f"'path' must be absolute unless 'root' is given: {_shown(self.path)}")


@protocol_method("similar", heavy=True)
@dataclass(frozen=True, slots=True)
class SimilarRequest(ReadRequest):
    limit: int = field(default=10, metadata=spec("results", bounds=(1, MAX_LIMIT)))


@protocol_method("wait", long=True)
@dataclass(frozen=True, slots=True)
class WaitRequest(MethodRequest):
    path: str = field(metadata=spec("a registered root (or a path inside one)", absolute=True))
    timeout_s: float = field(
        default=60.0, metadata=spec("give up after this long", bounds=(0, MAX_WAIT_S))
    )


# ---- navigation (the symbol graph) ----

#: Most answers one navigation request returns (by default).
NAV_LIMIT = 200


@dataclass(frozen=True, slots=True)
class NavRequest(MethodRequest):
    """Base of the navigation methods: a name (a path suffix) and where to look."""

    name: str = field(
        metadata=spec(
            "a symbol or a path suffix of one: codec::crc, Vec::push, push",
            cli="name",
            max_chars=MAX_QUERY_CHARS,
        )
    )
    root: str | None = field(
        default=None,
        metadata=spec("look only in the root holding this path", cli="--root", resolve=True),
    )
    limit: int = field(
        default=NAV_LIMIT,
        metadata=spec(
            f"answers to show (default {NAV_LIMIT})", cli="--limit", bounds=(1, MAX_LIMIT)
        ),
    )
    deps: bool = field(
        default=False,
        metadata=spec(
            "also look in the dependency crates indexed with `rcmd index --deps`",
            cli="--deps",
        ),
    )

    def check(self) -> None:
        if not self.name.strip():
            raise BadRequest("'name' must not be empty")


@protocol_method("def")
@dataclass(frozen=True, slots=True)
class DefRequest(NavRequest):
    """Where a name is defined."""


@protocol_method("refs")
@dataclass(frozen=True, slots=True)
class RefsRequest(NavRequest):
    """Every reference to a name: calls, method calls, type uses, bounds, imports, macros."""


@protocol_method("callers")
@dataclass(frozen=True, slots=True)
class CallersRequest(NavRequest):
    """The items (fns, methods) that call a name."""


@protocol_method("callees")
@dataclass(frozen=True, slots=True)
class CalleesRequest(NavRequest):
    """What the fns or methods a name defines call."""


@protocol_method("impls")
@dataclass(frozen=True, slots=True)
class ImplsRequest(NavRequest):
    """The types implementing a trait, or the traits a type implements."""


NAV_REQUESTS: tuple[type[NavRequest], ...] = (
    DefRequest,
    RefsRequest,
    CallersRequest,
    CalleesRequest,
    ImplsRequest,
)
