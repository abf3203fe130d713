"""Navigation over a root's symbol graph (the `graph_*` tables of state.db): definitions,
references, callers, callees and implementations of a name.

A name is a path suffix (`codec::crc`, `Vec::push`, `push`). A reference counts as
`resolved` when one of its candidate symbols (`daemon.resolve`), followed through
`pub use` re-exports, is a definition the name matches; it is left out when its candidate
is another definition (the `crc` of another module); otherwise it counts by `name` when
its written path agrees with the name, and comes after every resolved one. What a name
or a candidate names (definitions, imports followed) is `daemon.graph_names`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apsw
import structlog
import tree_sitter

from daemon.crate_names import CrateNames
from daemon.graph_names import Definition, Names
from daemon.graph_rows import split_targets
from daemon.resolve import STD_CRATES, path_segments, strip_generics
from daemon.supertraits import Supertraits
from daemon.symbols import CALL_KINDS, GRAPH_REVISION, GRAPH_VERSION, FileGraph, extract
from daemon.trait_impls import TraitImpls
from ipc.errors import BadRequest

#: What a navigation asks of one root: its graph's read connection, its path, `name
#: version` when it is a dependency crate, and the names its crates go by.
GraphSource = tuple[apsw.Connection, str, str | None, CrateNames]
#: Keywords an item may still be named as raw identifiers (`fn r#type`), which users
#: ask for without the `r#`.
RAW_KEYWORDS = frozenset(
    {
        *("as", "break", "const", "continue", "else", "enum", "extern", "false", "fn"),
        *("for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub"),
        *("ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use"),
        *("where", "while", "async", "await", "dyn", "abstract", "become", "box", "do"),
        *("final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield"),
        "try",
    }
)

log = structlog.get_logger("rcmd.graph")

#: Reference kinds a caller makes: calls, and a function named as a value (`map(f)`).
_CALLING = frozenset({*CALL_KINDS, "path"})
#: Reference kinds that may name a crate-root `#[macro_export]` macro no item holds.
_MACRO_NAMING = frozenset({"macro", "use"})
_RELATIVE_HEADS = frozenset({"crate", "self", "super", "Self"})
#: (key, judged column, its targets, shown column, its targets) of each impl direction:
#: the implementors of a trait, and the traits of a type.
_IMPL_SIDES = (
    ("trait_name", "trait", "trait_targets", "self_type", "type_targets"),
    ("type_name", "self_type", "type_targets", "trait", "trait_targets"),
)
#: The standard library's types whose methods may be their pointee's (`x.m()` of an
#: `Arc<Foo>` or a `MutexGuard<Foo>` is Foo's `m`).
_POINTERS = frozenset(
    {"Arc", "Rc", "Box", "ManuallyDrop", "Pin", "Cow", "Ref", "RefMut", "MutexGuard"}
    | {"RwLockReadGuard", "RwLockWriteGuard"}
)


#: state.db meta key: the extraction revision (`GRAPH_REVISION`) every file's graph rows
#: are, or will be once the files in flight are read again, made by.
GRAPH_REVISION_KEY = "graph_revision"


def graph_revision() -> str:
    return str(GRAPH_REVISION)


def graph_layout() -> dict[str, str]:
    """The state.db meta key the graph is built under: a root recorded under another
    version (or none) is rebuilt through the caches."""
    return {"symbol_graph": str(GRAPH_VERSION)}


def graph_of(
    rel_path: str, source: bytes, parsed: tuple[bytes, tree_sitter.Tree] | None = None
) -> FileGraph:
    """The file's graph (`parsed`: see `extract`); a file the extractor fails on gets an
    empty one (its chunks are still indexed) and a log line, never a failed batch."""
    try:
        return extract(rel_path, source, parsed)
    except Exception:
        log.exception("graph_extract_failed", path=rel_path)
        return FileGraph("")


@dataclass(frozen=True, slots=True)
class NavHit:
    """One answer of a navigation query; `path` relative to `root`, `line` 1-based."""

    root: str
    path: str
    line: int
    symbol: str
    kind: str
    confidence: str  # "resolved" | "name"
    crate: str
    via: str = ""  # the matched side: the reference's target, a caller's callee
    #: The impl whose method the reference resolved to, when a trait's method was asked
    #: (`callers Tr::m` lists `foo.m()` of `impl Tr for Foo`): the impl's symbol.
    impl: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {
            "root": self.root,
            "path": self.path,
            "line": self.line,
            "symbol": self.symbol,
            "kind": self.kind,
            "confidence": self.confidence,
            "crate": self.crate,
        }
        if self.via:
            out["via"] = self.via
        if self.impl:
            out["impl"] = self.impl
        return out


def name_segments(name: str) -> tuple[str, ...]:
    """A query name as segments, without a leading `crate::`/`self::`/`super::`: a
    name is asked from no module, so the rest is matched as a suffix (an editor's
    `super::flow_control::FlowControl`, copied from the code, found nothing)."""
    segs = path_segments(name)
    while segs and segs[0] in ("crate", "self", "super"):
        segs = segs[1:]
    return segs


def agrees(written: str, segs: tuple[str, ...]) -> bool:
    """Whether a path as written can name `segs`: their common tail is equal (`crc` and
    `codec::crc` agree; `other::crc` and `codec::crc` do not)."""
    mine = path_segments(written)
    while mine and mine[0] in _RELATIVE_HEADS:
        mine = mine[1:]
    n = min(len(mine), len(segs))
    return n > 0 and mine[-n:] == segs[-n:]


class GraphReader:
    """Queries over one root's graph through the calling thread's read connection."""

    def __init__(
        self,
        conn: apsw.Connection,
        root: str,
        crate: str | None,
        names: CrateNames,
        *,
        anchored: bool = False,
    ) -> None:
        self._db = conn
        self._root = root
        #: `name version` of a dependency root: every hit of it names that crate.
        self._crate = crate
        self._crates = names
        self._names = Names(conn, names)
        #: `Sub::m` that names no item is the `m` of a supertrait `Sub` writes.
        self._supers = Supertraits(conn, self._names)
        #: `Tr::m` asked: the `m` of each `impl Tr for X` is a reference to it too.
        self._impls = TraitImpls(conn, self._names)
        #: The name was asked from the crate's root (`crate::helper`), not as a suffix.
        self._anchored = anchored
        #: Dependency crates asked beside this root, by the name code writes them with:
        #: a path into one (`serde_json::from_str`) is judged by that crate's graph.
        self.peers: dict[str, list[GraphReader]] = {}
        self._wanted: dict[tuple[str, ...], set[str]] = {}

    def _hit(
        self, path: str, line: int, symbol: str, kind: str, conf: str, via: str, impl: str = ""
    ) -> NavHit:
        crate = self._crate or self._crates.of(path)
        return NavHit(self._root, path, line, symbol, kind, conf, crate, via, impl)

    def definitions(self, segs: tuple[str, ...]) -> list[Definition]:
        """(path, symbol, kind, line, end_line) of the definitions `segs` names."""
        return self._names.definitions(segs, anchored=self._anchored)

    def resolve(self, candidate: str, *, macro: bool = False) -> str | None:
        """The defined symbol a candidate names; None when the root defines none.
        `macro`: the reference may name a `#[macro_export]` macro (`Names.resolve_all`)."""
        return self._names.resolve(candidate, macro=macro)

    def wanted(self, segs: tuple[str, ...]) -> set[str]:
        """The symbols of the definitions `segs` names in this root."""
        if segs not in self._wanted:
            self._wanted[segs] = {s for _p, s, _k, _a, _b in self.definitions(segs)}
        return self._wanted[segs]

    def _in_peer(
        self, targets: list[str], *, macro: bool = False
    ) -> tuple[GraphReader, str] | None:
        """The dependency crate and its symbol that the first candidate written from a
        crate's name (`serde_json::Value::as_str`, `http::header::HeaderMap`) resolves
        to; None when none does (or the name is this root's own crate)."""
        for candidate in targets:
            head = candidate.partition("::")[0]
            if head in self._names.crate or self._names.defines(head):
                continue  # its own crate, or its own `mod http` beside the crate http
            for peer in self.peers.get(head, ()):
                found = peer.resolve(candidate, macro=macro)
                if found is not None:
                    return peer, found
        return None

    def resolve_anywhere(self, targets: list[str], *, macro: bool = False) -> list[str]:
        """The symbols the first candidate that resolves here resolves to (each type an
        alias under exclusive `#[cfg]`s names: spin's `InnerMutex` is `SpinMutex` and
        `TicketMutex`), else a supertrait's item it means, else the one it resolves to in
        a dependency crate."""
        for c in targets:
            if found := self._names.resolve_all(c, macro=macro):
                return found
        for c in targets:
            if found := self._supers.inherited(c):
                return found
        peer = self._in_peer(targets, macro=macro)
        return [peer[1]] if peer is not None else []

    def judge(
        self, targets: str, written: str, wanted: set[str], segs: tuple[str, ...], kind: str = ""
    ) -> str:
        """`resolved:SYMBOL`, `name`, or "" (another definition's) for one reference.
        Asked for a path (`Mutex::lock`), a reference whose written type is the standard
        library's (`self.inner.lock()` of a `std::sync::Mutex` field) is not the root's;
        asked for a bare name, it counts by name as any other."""
        candidates = split_targets(targets)
        macro = kind in _MACRO_NAMING
        resolved = [r for c in candidates for r in self._names.resolve_all(c, macro=macro)]
        if not resolved:  # `R::sup()` under `R: Sub`, `trait Sub: Super`: `Super::sup`
            resolved = [r for c in candidates for r in self._supers.inherited(c)]
        for r in resolved:
            if r in wanted:
                return "resolved:" + r
        if resolved:
            return ""
        if (peer := self._in_peer(candidates, macro=macro)) is not None:
            return "resolved:" + peer[1] if peer[1] in peer[0].wanted(segs) else ""
        first = tuple(targets.partition("\n")[0].split("::"))
        if (
            len(segs) > 1
            and first[0] in STD_CRATES
            and first[0] not in self._names.crate
            and (len(first) < 2 or first[-2] not in _POINTERS)  # `Arc::clone(&x).m()`
        ):
            return ""
        return "name" if agrees(written, segs) else ""

    def def_hits(self, segs: tuple[str, ...]) -> list[NavHit]:
        rows = self.definitions(segs)
        shown = [r for r in rows if r[2] != "impl"] or rows
        return [self._hit(p, line, s, k, "resolved", "") for p, s, k, line, _ in shown]

    def _refs(
        self, segs: tuple[str, ...], kinds: frozenset[str] | None
    ) -> Iterator[tuple[str, int, str, str, str, str, str]]:
        """(path, line, enclosing, kind, confidence, target, impl) of the references to
        `segs`; `impl` is the impl whose method a reference resolved to when `segs`
        names a trait's method (`TraitImpls`), else ""."""
        if not segs:
            return
        direct = self.wanted(segs)
        through = self._impls.methods(direct)
        wanted = direct | through.keys()
        names = [segs[-1], *self._aliases(direct, segs[-1])]
        rows = self._db.execute(
            "SELECT f.path, r.lines, r.enclosing, r.kind, r.written, r.targets FROM sym_refs r "
            f"JOIN sym_files f ON f.id = r.file WHERE r.name IN ({','.join('?' * len(names))})",
            names,
        )
        for path, lines, enclosing, kind, written, targets in rows:
            if kinds is not None and kind not in kinds:
                continue
            verdict = self.judge(str(targets), str(written), wanted, segs, str(kind))
            if verdict:
                conf, _, target = verdict.partition(":")
                impl = through.get(target, "") if target not in direct else ""
                if impl and target == enclosing:
                    # `impl Tr for u64 { fn m(self) { self.m() } }` delegates to an
                    # inherent `m` of a type the root does not define; not a call of `Tr::m`.
                    continue
                for line in str(lines).split():
                    yield (
                        str(path),
                        int(line),
                        str(enclosing),
                        str(kind),
                        conf,
                        target or str(written),
                        impl,
                    )

    def _aliases(self, wanted: set[str], name: str) -> list[str]:
        """Other names `use … as` gives the `wanted` symbols (`use crate::crc as crc3`):
        their references are judged too (only resolved ones can be theirs)."""
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT DISTINCT alias FROM sym_imports WHERE target IN ({marks}) AND alias != ?",
            [*sorted(wanted), name],
        )
        return sorted(str(r[0]) for r in rows if r[0] != "self")

    def ref_hits(self, segs: tuple[str, ...]) -> list[NavHit]:
        return [
            self._hit(p, line, target, kind, conf, enclosing, impl)
            for p, line, enclosing, kind, conf, target, impl in self._refs(segs, None)
        ]

    def caller_hits(self, segs: tuple[str, ...]) -> list[NavHit]:
        refs = list(self._refs(segs, _CALLING))
        kinds = self._kinds_of({enclosing for _p, _l, enclosing, *_ in refs})
        return [
            self._hit(p, line, enclosing, kinds.get(enclosing, "code"), conf, target, impl)
            for p, line, enclosing, _kind, conf, target, impl in refs
        ]

    def _kinds_of(self, symbols: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for symbol in symbols:
            row = self._db.execute(
                "SELECT kind FROM sym_defs WHERE symbol=? AND kind!='impl' LIMIT 1", (symbol,)
            ).fetchone()
            if row is not None:
                out[symbol] = str(row[0])
        return out

    def callee_hits(self, segs: tuple[str, ...]) -> list[NavHit]:
        out: list[NavHit] = []
        for def_path, symbol, kind, _a, _b in self.definitions(segs):
            if kind == "impl":
                continue
            rows = self._db.execute(  # an item's references are in its own file
                "SELECT r.lines, r.kind, r.written, r.targets FROM sym_refs r "
                "JOIN sym_files f ON f.id = r.file WHERE f.path=? AND r.enclosing=?",
                (def_path, symbol),
            )
            for lines, rkind, written, targets in rows:
                if rkind not in _CALLING or _constructs(str(written)):
                    continue
                candidates = split_targets(targets)
                found = self.resolve_anywhere(candidates, macro=rkind in _MACRO_NAMING)
                if rkind == "path" and not found:
                    continue  # an unresolved path is more often a constant than a callee
                conf = "resolved" if found else "name"
                for name in found or [str(written)]:
                    for line in str(lines).split():
                        out.append(self._hit(def_path, int(line), name, str(rkind), conf, symbol))
        return out

    def impl_hits(self, segs: tuple[str, ...]) -> list[NavHit]:
        """Impls of the trait `segs` names (their types), and traits the type it names
        implements; each side judged like a reference."""
        if not segs:
            return []
        wanted = self.wanted(segs)
        out: list[NavHit] = []
        for key, judged, judged_t, shown, shown_t in _IMPL_SIDES:
            rows = self._db.execute(
                f"SELECT f.path, i.line, {judged}, {judged_t}, {shown}, {shown_t} FROM sym_impls i "
                f"JOIN sym_files f ON f.id = i.file WHERE {key}=? ORDER BY f.path, i.line",
                (segs[-1],),
            )
            for path, line, written, targets, other, other_targets in rows:
                verdict = self.judge(str(targets), str(written), wanted, segs)
                if not verdict:
                    continue
                found = self.resolve_anywhere(split_targets(other_targets))
                conf = verdict.partition(":")[0]
                for symbol in found or [str(other)]:
                    out.append(self._hit(str(path), int(line), symbol, "impl", conf, str(written)))
        return out


def _constructs(written: str) -> bool:
    """A capitalised call builds a value (`Some(x)`, `Elem(1)`, `Err::Error(e)`): Rust
    names its fns in snake case, its tuple structs and variants in camel case."""
    return written.rpartition("::")[2][:1].isupper()


def rank(hits: Iterable[NavHit]) -> list[NavHit]:
    """Resolved answers first, modules after items (`tokio::spawn` is a fn and the
    module it is written in), then by root, path and line; each answer once."""
    unique = dict.fromkeys(hits)
    return sorted(
        unique, key=lambda h: (h.confidence != "resolved", h.kind == "mod", h.root, h.path, h.line)
    )


def is_path(name: str) -> bool:
    """Whether `name` (a macro's `!` dropped) can name an item at all: well formed and
    made of identifiers. Every chunk's symbol is such a path, so `--symbol 'a:::b'`,
    `'a: :b'` or `':x'` answered "no results" as if it had looked."""
    name = name.strip().removesuffix("!")
    return _well_formed(name) and bool(path_segments(name))


def _well_formed(name: str) -> bool:
    """Whether `name` can be a path at all: no `::` at an end or twice in a row (`a::::b`
    answered for `a::b`), no space outside `<…>` (`a b` used to answer for `b`), and not
    the placeholder `_` (25 "type refs")."""
    text = name.strip()
    outside = strip_generics(text)
    return not (
        text.startswith("::")
        or text.endswith("::")
        or "::::" in text
        or any(c.isspace() for c in outside)
        or text.rsplit("::", 1)[-1] == "_"
    )


_QUERIES = {
    "def": GraphReader.def_hits,
    "refs": GraphReader.ref_hits,
    "callers": GraphReader.caller_hits,
    "callees": GraphReader.callee_hits,
    "impls": GraphReader.impl_hits,
}


def _link_peers(readers: list[GraphReader], sources: list[GraphSource]) -> None:
    """Give each root the dependency crates asked beside it, by each name their code goes
    by (`serde_json`); several versions of one crate are each tried."""
    peers: dict[str, list[GraphReader]] = {}
    for reader, (_c, _r, crate, names) in zip(readers, sources, strict=True):
        if crate is not None:
            for name in names.prefixes:
                peers.setdefault(name, []).append(reader)
    for reader in readers:
        reader.peers = peers


def navigate(graphs: Iterable[GraphSource], method: str, name: str, limit: int) -> dict[str, Any]:
    """The reply of a navigation method over (read connection, root path, dependency
    crate or None, the root's crate names) tuples."""
    name = name.strip().removesuffix("!")  # a macro as it is called: `info!`
    segs = name_segments(name) if _well_formed(name) else ()
    if not segs:
        raise BadRequest(
            f"{name!r} is not a Rust name or path; ask for one like: rcmd {method} Vec::push"
        )
    query = _QUERIES[method]
    anchored = path_segments(name)[:1] == ("crate",)
    sources = list(graphs)

    def ask(path: tuple[str, ...]) -> list[NavHit]:
        readers = [GraphReader(c, r, k, n, anchored=anchored) for c, r, k, n in sources]
        _link_peers(readers, sources)
        return [hit for reader in readers for hit in query(reader, path)]

    hits = ask(segs)
    if not hits and RAW_KEYWORDS.intersection(segs):  # `def type` for `fn r#type`
        hits = ask(tuple(f"r#{s}" if s in RAW_KEYWORDS else s for s in segs))
    ranked = rank(hits)
    return {"results": [h.to_json() for h in ranked[:limit]], "total": len(ranked)}
