"""The methods of a trait's impls, for the references to the trait's method.

`callers Tr::m` listed the calls resolved to `Tr::m` (through a type parameter bound by
`Tr`, `dyn Tr`, `<X as Tr>::m`) but not `foo.m()` on a `foo: Foo` under `impl Tr for
Foo`, which resolves to `Foo::m`; rust-analyzer's call hierarchy of a trait method lists
those too. For each trait method asked, the root's impls of that trait (the impl's trait
path resolved to it, as `impls` judges it; generic impls `impl<T: X> Tr for T` too) give
their method of that name, and a reference resolved to one counts, marked with the impl.
A method symbol that some other item has too (an inherent `fn m` of the same type, the
`fmt` of `impl Debug` beside `impl Display`: both are `Foo::fmt`) is left out: its
references cannot be told apart.
"""

from __future__ import annotations

import apsw

from daemon.graph_names import Names
from daemon.graph_rows import split_targets


class TraitImpls:
    """Trait methods' impl methods through one root's graph, for the reader's life."""

    def __init__(self, conn: apsw.Connection, names: Names) -> None:
        self._db = conn
        self._names = names
        self._known: dict[str, dict[str, str]] = {}

    def methods(self, wanted: set[str]) -> dict[str, str]:
        """Impl method symbol -> its impl's symbol, for the trait methods among `wanted`
        (definitions' symbols; any other gives none)."""
        out: dict[str, str] = {}
        for symbol in sorted(wanted):
            if symbol not in self._known:
                self._known[symbol] = self._of(symbol)
            out.update(self._known[symbol])
        return out

    def _of(self, symbol: str) -> dict[str, str]:
        trait, sep, name = symbol.rpartition("::")
        if not sep or not self._is_trait(trait):
            return {}
        rows = self._db.execute(
            "SELECT i.file, i.line, i.trait_targets, i.symbol, d.end_line FROM sym_impls i "
            "JOIN sym_defs d ON d.file = i.file AND d.symbol = i.symbol AND d.line = i.line "
            "AND d.kind = 'impl' WHERE i.trait_name = ?",
            (trait.rpartition("::")[2],),
        )
        spans: dict[str, list[tuple[int, int, int]]] = {}
        for file, line, targets, impl, end in rows:
            if trait in self._trait_of(split_targets(targets)):
                spans.setdefault(f"{impl}::{name}", []).append((int(file), int(line), int(end)))
        out: dict[str, str] = {}
        for method, at in spans.items():
            defs = list(
                self._db.execute(
                    "SELECT file, line FROM sym_defs WHERE symbol=? AND kind != 'impl'", (method,)
                )
            )
            if defs and all(any(f == d[0] and a <= d[1] <= b for f, a, b in at) for d in defs):
                out[method] = method.rpartition("::")[0]
        return out

    def _trait_of(self, candidates: list[str]) -> list[str]:
        """What an impl's trait path resolves to (the first candidate that does)."""
        for c in candidates:
            if found := self._names.resolve_all(c):
                return found
        return []

    def _is_trait(self, symbol: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sym_defs WHERE symbol=? AND kind='trait' LIMIT 1", (symbol,)
        ).fetchone()
        return row is not None
