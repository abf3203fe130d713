"""What a name or a candidate path names in one root's symbol graph: the definitions a
name asked for means (written as a suffix, or as the crate's users write it: the crate's
own name in front, a path through `pub use` re-exports and globs), and the definition a
reference's candidate symbol resolves to through the imports."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import apsw

from daemon.crate_names import CrateNames
from daemon.resolve import path_segments

#: Import hops followed from a candidate to the definition it re-exports, and how many
#: spellings of it are looked up at most.
_MAX_HOPS = 4
MAX_LOOKUPS = 32
#: Spellings of a name tried for its definitions (`Names.definitions`), and the longest
#: path (in segments) they are tried for.
_MAX_PATHS = 16
MAX_SEGMENTS = 16
#: Kinds of definition that leave a path's item to look for: a module named after the fn
#: it re-exports, an impl of a type re-exported there.
_NO_ITEM = frozenset({"mod", "impl"})
#: A path to look up, and whether it starts at the crate's root (else it is a suffix).
_Spelling = tuple[tuple[str, ...], bool]
#: (path, symbol, kind, line, end_line) of a definition.
Definition = tuple[str, str, str, int, int]


class Names:
    """Name lookups over one root's graph through the calling thread's read connection;
    what a candidate resolves to is remembered for the reader's life (one request)."""

    def __init__(self, conn: apsw.Connection, crates: CrateNames) -> None:
        self._db = conn
        #: What the root's crates are called in paths (`tokio`, from its Cargo.toml).
        self.crate = crates
        self._known: dict[str, list[str]] = {}
        #: Each candidate as a path from the crate's root (its crate's name left off).
        self._bare: dict[str, str] = {}
        self._exists: dict[str, bool] = {}
        self._spellings: dict[str, list[str]] = {}
        self._named: dict[str, list[Definition]] = {}
        self._holders_of: dict[str, dict[str, int]] = {}
        self._all_globs: list[tuple[str, str]] | None = None

    def definitions(self, segs: tuple[str, ...], *, anchored: bool = False) -> list[Definition]:
        """(path, symbol, kind, line, end_line) of the definitions `segs` names: as
        written (a path suffix; `anchored`: a path from a crate's root, as `crate::`
        writes it), else as the crate's users write it: the crate's own name in front
        (`tokio::spawn` is the crate root's `spawn`), a path through `pub use`
        re-exports (`tokio::sync::mpsc::Sender` is `sync::mpsc::bounded::Sender`)."""
        firsts: list[_Spelling] = (
            [((*p, *segs), True) for p in dict.fromkeys([(), *self.crate.prefixes.values()])]
            if anchored
            else [(segs, False)]
        )
        # The first depth is every crate root's (a workspace of 16 members found none:
        # the bound on spellings was spent before the first); the bound is on the rest.
        seen, level, more = set(firsts), firsts, _MAX_PATHS
        while level:
            # Every spelling of one depth: two imports of one alias under exclusive
            # `#[cfg]`s (`#[path = "wrapper.rs"] mod imp;`, `use fallback as imp;`) both count.
            found_all: list[Definition] = []
            deeper: list[_Spelling] = []
            for spelling in level:
                found = self._defined(*spelling)
                if found and all(kind in _NO_ITEM for _p, _s, kind, _a, _b in found):
                    # `mod spawn; pub use spawn::spawn;`: the fn the path imports too; and
                    # `impl X for crate::Result` beside `pub use error::Result`: the alias
                    imported = [d for o in self._public_paths(*spelling) for d in self._defined(*o)]
                    found = [d for d in imported if d[2] not in _NO_ITEM] + found
                found_all.extend(found)
                for other in () if found else self._public_paths(*spelling):
                    if other not in seen and more > 0:
                        seen.add(other)
                        deeper.append(other)
                        more -= 1
            if found_all:
                return list(dict.fromkeys(found_all))
            level = deeper
        return []

    def _public_paths(self, segs: tuple[str, ...], anchored: bool) -> Iterator[_Spelling]:
        """Other spellings of `segs` (a path from the crate's root when `anchored`, else
        a suffix of one), each from the crate's root: without the crate's name in front,
        and with a prefix that a module imports (`mpsc::Sender` where `mpsc` has `pub use
        bounded::Sender`, or `pub use bounded::*`) replaced by what it imports. None for
        a path longer than any a crate writes (`MAX_SEGMENTS`): each segment costs a query."""
        if len(segs) > MAX_SEGMENTS:
            return
        prefix = self.crate.prefix(segs[0]) if not anchored and len(segs) > 1 else None
        if prefix is not None:
            yield (*prefix, *segs[1:]), True
        for i in range(len(segs), 0, -1):
            module = "::".join(segs[: i - 1])
            holders = self._holders(segs[i - 1])
            rows = self._imports_in(module, segs[i - 1], anchored)
            # A glob of a module that holds no such name is a spelling spent: left out,
            # and the globs nearest to the name's module first.
            rows = [r for r in rows if r[1] != "*" or r[2] in holders]
            rows.sort(key=lambda r: holders.get(r[2], -1) if r[1] == "*" else -1)
            for mod, alias, target in rows:
                if module and not (mod == module or mod.endswith("::" + module)):
                    continue
                head = path_segments(target)
                yield ((*head, *segs[i:]) if alias != "*" else (*head, *segs[i - 1 :])), True

    def _imports_in(self, module: str, name: str, anchored: bool) -> list[tuple[str, str, str]]:
        """(module, alias, target) of the imports of `name`, and the globs, in `module`
        (anchored: that module of the crate's root; else any module whose path ends so;
        no glob for a path of one segment, which names no module)."""
        args: tuple[str, ...]
        if anchored:
            sql, args = "module=? AND alias IN (?, '*')", (module, name)
        elif module:
            sql = "alias IN (?, '*') AND (module=? OR module LIKE ?)"
            args = (name, module, f"%{module}")  # LIKE's `_` is loose: checked after
        else:
            sql, args = "alias=?", (name,)
        rows = self._db.execute(f"SELECT module, alias, target FROM sym_imports WHERE {sql}", args)
        return [(str(m), str(a), str(t)) for m, a, t in rows]

    def _defined(self, segs: tuple[str, ...], anchored: bool = False) -> list[Definition]:
        """The definitions whose symbol is `segs` (or, unless `anchored`, ends with it); a
        macro asked from the crate's root is any of that name (`#[macro_export]` puts
        `macros::info` at the root: `log::info`)."""
        if not segs:
            return []
        want = "::".join(segs)
        root_macro = anchored and len(segs) == 1
        return [
            d
            for d in self._named_defs(segs[-1])
            if d[1] == want
            or (not anchored and d[1].endswith("::" + want))
            or (root_macro and d[2] == "macro")
        ]

    def _named_defs(self, name: str) -> list[Definition]:
        """Every definition of `name`, read once a request: an anchored name is looked
        up at each workspace member's root (hundreds of spellings of one name)."""
        if name not in self._named:
            rows = self._db.execute(
                "SELECT f.path, d.symbol, d.kind, d.line, d.end_line FROM sym_defs d "
                "JOIN sym_files f ON f.id = d.file WHERE d.name=? ORDER BY f.path, d.line",
                (name,),
            )
            self._named[name] = [(str(p), str(s), str(k), int(a), int(b)) for p, s, k, a, b in rows]
        return self._named[name]

    def resolve(self, candidate: str, *, macro: bool = False) -> str | None:
        """The defined symbol a candidate names (a path from the crate's own name too, as
        its tests and examples write them), through `use` re-exports and the globs that
        hold the next name (breadth first, each spelling once, at most `MAX_LOOKUPS` of
        them: a module of many globs would otherwise multiply the spellings at every
        hop); None when no file of the root defines it. `macro`: see `resolve_all`."""
        found = self.resolve_all(candidate, macro=macro)
        return found[0] if found else None

    def resolve_all(self, candidate: str, *, macro: bool = False) -> list[str]:
        """Every defined symbol a candidate names as `resolve` finds them: the first, and
        the others an import of several paths reaches as near (`type InnerMutex<T> =
        SpinMutex<T>` and `= TicketMutex<T>` under exclusive `#[cfg]`s: either is meant).
        Only a macro call or a `use` (`macro`) may name a crate-root `#[macro_export]`
        macro that no item holds: a call `check(1)` of a closure, its candidate `check`
        from a `use super::*;`, is no `macro_rules! check` elsewhere in the crate."""
        if candidate not in self._known:
            head, _, rest = candidate.partition("::")
            prefix = self.crate.prefix(head) if rest else None  # `nom::bytes::tag` in tests
            own = "::".join((*prefix, rest)) if prefix is not None else None
            found = self._follow(own) if own is not None else []
            found = found or self._follow(candidate)
            self._known[candidate] = found
            self._bare[candidate] = own if own is not None else candidate
        found = self._known[candidate]
        bare = self._bare[candidate]
        if found or not macro or "::" in bare:
            return found
        root_macro = self._root_macro(bare)
        return [root_macro] if root_macro is not None else []

    def _root_macro(self, name: str) -> str | None:
        """A `macro_rules!` of that name in any module: `#[macro_export]` puts it at the
        crate's root, where `use serde_json::json;` finds it (as `definitions` does)."""
        macros = [d[1] for d in self._named_defs(name) if d[2] == "macro"]
        return macros[0] if macros else None

    def _follow(self, candidate: str) -> list[str]:
        """The defined symbols nearest to `candidate` through imports: the first found,
        and those found at as many hops (the other paths of one import)."""
        seen, queue = {candidate}, deque([(candidate, 0)])
        found: list[str] = []
        found_hops = 0
        for _lookup in range(MAX_LOOKUPS):
            if not queue or (found and queue[0][1] > found_hops):
                break
            current, hops = queue.popleft()
            if self._defined_exactly(current):
                found.append(current)
                found_hops = hops
                continue
            if hops < _MAX_HOPS and not found:
                fresh = [s for s in self._imported(current) if s not in seen]
                seen.update(fresh)
                queue.extend((s, hops + 1) for s in fresh)
        return found

    def defines(self, symbol: str) -> bool:
        """Whether a file of the root defines `symbol` (a path from the crate's root)."""
        return self._defined_exactly(symbol)

    def _defined_exactly(self, symbol: str) -> bool:
        if symbol not in self._exists:
            self._exists[symbol] = (
                self._db.execute(
                    "SELECT 1 FROM sym_defs WHERE symbol=? LIMIT 1", (symbol,)
                ).fetchone()
                is not None
            )
        return self._exists[symbol]

    def _imported(self, symbol: str) -> list[str]:
        """`symbol` with its longest prefix that a `use` names replaced by what that
        imports (`sync::mpsc::Sender::send` where `sync::mpsc` has `pub use
        bounded::Sender`); else with a module's glob opened (`loom::sync::Mutex` where
        `loom` has `pub use self::std::*`), one spelling per glob. Remembered: the
        candidates of one request share most of their spellings."""
        if symbol not in self._spellings:
            self._spellings[symbol] = self._read_imports(symbol)
        return self._spellings[symbol]

    def _read_imports(self, symbol: str) -> list[str]:
        segs = symbol.split("::")
        if len(segs) > MAX_SEGMENTS:  # one query term a segment; no crate writes such paths
            return []
        pairs = [("::".join(segs[: i - 1]), segs[i - 1]) for i in range(len(segs), 0, -1)]
        rows = self._db.execute(
            "SELECT module, alias, target FROM sym_imports WHERE "
            + " OR ".join(["(module=? AND alias IN (?, '*'))"] * len(pairs)),
            [v for pair in pairs for v in pair],
        )
        imports, globs = _split_imports(rows)
        for i, pair in zip(range(len(segs), 0, -1), pairs, strict=True):
            if pair in imports:
                return ["::".join((t, *segs[i:])) for t in dict.fromkeys(imports[pair])]
        # The innermost module's globs first, of one module those nearest to the name;
        # only a glob whose module holds the path's next name is worth following.
        globs.sort(key=lambda g: (-g[0], self._holders(segs[g[0]]).get(g[1], 0)))
        return ["::".join((t, *segs[d:])) for d, t in globs if t in self._holders(segs[d])]

    def _holders(self, name: str) -> dict[str, int]:
        """The modules (paths from the crate's root) that hold `name`: define it, import
        it, or open by a glob a module that holds it, up to `_MAX_HOPS` globs deep
        (gimli's root holds `Reader` through `pub use crate::read::*;` and `read`'s
        `pub use self::reader::*;`; one glob deep, its twenty globs spent the bound),
        each with the globs between it and the name (0: it defines or imports it)."""
        if name not in self._holders_of:
            held = dict.fromkeys((d[1].rpartition("::")[0] for d in self._named_defs(name)), 0)
            rows = self._db.execute("SELECT module FROM sym_imports WHERE alias=?", (name,))
            held.update(dict.fromkeys((str(r[0]) for r in rows), 0))
            self._holders_of[name] = through_globs(held, self._globs())
        return self._holders_of[name]

    def _globs(self) -> list[tuple[str, str]]:
        """(module, target) of every glob import of the root, read once a request."""
        if self._all_globs is None:
            rows = self._db.execute("SELECT module, target FROM sym_imports WHERE alias='*'")
            self._all_globs = [(str(m), str(t)) for m, t in rows]
        return self._all_globs


def _split_imports(
    rows: Iterable[tuple[object, object, object]],
) -> tuple[dict[tuple[str, str], list[str]], list[tuple[int, str]]]:
    """(module, alias) → targets of the named imports among `rows`, and (depth of the
    module, target) of the globs."""
    imports: dict[tuple[str, str], list[str]] = {}
    globs: list[tuple[int, str]] = []
    for module, alias, target in rows:
        if alias == "*":
            globs.append((len(str(module).split("::")) if module else 0, str(target)))
        else:
            # Several under exclusive `#[cfg]`s (`mod imp;` at two `#[path]`s): each.
            imports.setdefault((str(module), str(alias)), []).append(str(target))
    return imports, globs


def through_globs(held: dict[str, int], globs: list[tuple[str, str]]) -> dict[str, int]:
    """`held` (module → globs between it and a name) grown by the modules whose globs
    open one of them, up to `_MAX_HOPS` globs deep."""
    for hop in range(1, _MAX_HOPS + 1):
        more = {m for m, t in globs if t in held and m not in held}
        if not more:
            break
        held.update(dict.fromkeys(more, hop))
    return held
