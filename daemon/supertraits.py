"""The items a trait inherits from its supertraits, for a candidate no item answers.

`fn f<R: Sub>() { R::sup() }` with `trait Sub: Super` calls `Super::sup`, yet the
candidate extraction writes is `Sub::sup` (the bound is all the file knows, and `Sub` may
be defined in another file), which names no item: the call was missing from `callers
Super::sup`, not even by name (`R::sup` is no spelling of it). When a candidate `T::m`
resolves to nothing and `T` is a trait of the root, `m` is looked up in the supertraits
`T` writes (`trait T: A + B`, `where Self: C`: references of kind `supertrait`, resolved
as any path), breadth first through theirs, bounded in depth and in traits visited.
An associated type's bounds are followed alike: `T::Item::m()` and `<T as Tr>::Item::m()`
(the candidate `Tr::Item::m`) under `trait Tr { type Item: Foo; }` are `Foo::m`.
"""

from __future__ import annotations

import apsw

from daemon.graph_names import Names
from daemon.graph_rows import split_targets

#: Supertrait levels followed (`Sub: Mid`, `Mid: Super` is two) and traits read at most.
MAX_DEPTH = 4
MAX_TRAITS = 16


class Supertraits:
    """Inherited items through one root's graph, remembered for the reader's life."""

    def __init__(self, conn: apsw.Connection, names: Names) -> None:
        self._db = conn
        self._names = names
        self._supers: dict[str, list[str]] = {}
        self._known: dict[str, list[str]] = {}

    def inherited(self, candidate: str) -> list[str]:
        """The items `candidate` (`Trait::m`, resolving to nothing) means as an item of
        the trait's supertraits: those of the nearest level that defines `m`."""
        if candidate not in self._known:
            head, sep, name = candidate.rpartition("::")
            self._known[candidate] = self._search(head, name) if sep and head else []
        return self._known[candidate]

    def _search(self, head: str, name: str) -> list[str]:
        level = self._names.resolve_all(head)
        seen: set[str] = set()
        for _depth in range(MAX_DEPTH):
            found: list[str] = []
            deeper: list[str] = []
            for trait in level:
                if trait in seen or len(seen) >= MAX_TRAITS:
                    continue
                seen.add(trait)
                for sup in self._of(trait):
                    item = f"{sup}::{name}"
                    (found if self._names.defines(item) else deeper).append(item)
            if found:
                return list(dict.fromkeys(found))
            level = [item.rpartition("::")[0] for item in deeper]
        return []

    def _of(self, trait: str) -> list[str]:
        """The supertraits the trait `trait` (a defined symbol) writes, or the bounds of
        an associated type, each as the first of its candidates that resolves (all it
        reaches as near); none for a struct or a type alias."""
        if trait not in self._supers:
            rows = self._db.execute(
                "SELECT r.targets FROM sym_defs d JOIN sym_refs r ON r.file = d.file "
                "WHERE d.symbol=? AND d.kind IN ('trait', 'type') AND r.enclosing=? "
                "AND r.kind IN ('supertrait', 'assoc_bound')",
                (trait, trait),
            )
            out: list[str] = []
            for (targets,) in rows:
                for candidate in split_targets(targets):
                    if found := self._names.resolve_all(candidate):
                        out.extend(found)
                        break
            self._supers[trait] = list(dict.fromkeys(out))
        return self._supers[trait]
