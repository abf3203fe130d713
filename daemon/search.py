"""Hybrid search over one or more roots: BM25 and vector candidates fused with weighted RRF.

The query is classified first (`daemon.query`): identifier-like queries lean on the BM25
list and on the chunks whose symbol is exactly the name asked for; questions in words lean
on the vector list. Results are resolved through `state.db`, so only chunks whose file
record is committed (and therefore in both indexes) are ever returned: no stale or
half-written hits. A hit that overlaps a better one in the same file is dropped.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import structlog

from daemon.config import SearchConfig
from daemon.degraded import LEXICAL, VECTORS, Degraded, StoreFailures
from daemon.embed_groups import fold_shared, shared_runs
from daemon.filters import RowFilter, row_filters
from daemon.fusion import (
    TIE_MARGIN,
    confidence_weighted,
    keep_leaders,
    rrf,
    standout,
    through_ties,
    tied_ranks,
    zscore_sum,
)
from daemon.graph import name_segments
from daemon.graph_names import Names
from daemon.query import (
    STOPWORDS,
    classify,
    joined_names,
    strict_identifier,
    symbol_matches,
    symbol_name,
    symbol_words,
)
from daemon.query_adapter import QueryAdapter
from daemon.root import RootIndex
from daemon.state import ChunkRow
from daemon.tokenize import code_tokens, query_tokens, stems, whole_identifiers
from ipc.kinds import CONTAINER_KINDS, FRAGMENT_KINDS
from ipc.requests import SearchRequest

log = structlog.get_logger("rcmd.search")

SNIPPET_LINES = 6
#: Longest snippet line; longer ones are cut (and marked with …).
SNIPPET_LINE_CHARS = 400
#: How much deeper each side searches when filters may discard candidates.
FILTER_DEPTH_FACTOR = 4
#: Fewest candidates whose rows one state.db read fetches (a search of `limit` hits reads
#: pages of max(2 * limit, this) until it has them).
RESOLVE_PAGE = 32
#: Most chunks a symbol lookup considers (every `new` in a big workspace fits).
SYMBOL_DEPTH = 1000


@dataclass(frozen=True, slots=True)
class SearchHit:
    root: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    snippet: str

    def to_json(self) -> dict[str, object]:
        """The reply's record of this hit: its fields as they are (`asdict` deep-copies
        each value, ~3% of an identifier search's time on medium). The service adds
        `stale`, which needs the file on disk (`service._replied`)."""
        return {f: getattr(self, f) for f in _HIT_FIELDS}


_HIT_FIELDS = tuple(f.name for f in fields(SearchHit))


def snippet(text: str, words: Sequence[str], lines: int = SNIPPET_LINES) -> str:
    """The `lines`-line window of `text` that holds the most query tokens (each line
    scored by the distinct tokens it shares with the query); the top when none match.
    Lines are cut at SNIPPET_LINE_CHARS (a one-line minified chunk must not come back
    whole, nor be tokenized whole)."""
    text_lines = [
        line if len(line) <= SNIPPET_LINE_CHARS else line[:SNIPPET_LINE_CHARS] + " …"
        for line in text.splitlines()
    ]
    wanted = set(words)
    # Every token is a lowercase substring of its line, so a line holding none of the
    # words as a substring scores 0 without being tokenized (tokenizing was ~40% of a
    # search's CPU).
    line_score = [
        len(wanted.intersection(code_tokens(line))) if any(w in low for w in wanted) else 0
        for line, low in zip(text_lines, [t.lower() for t in text_lines], strict=True)
    ]
    best, best_score = 0, 0
    for start in range(max(1, len(text_lines) - lines + 1)):
        score = sum(line_score[start : start + lines])
        if score > best_score:
            best, best_score = start, score
    if best_score == 0:
        # No match: skip leading blank lines so the snippet shows code.
        best = next((i for i, line in enumerate(text_lines) if line.strip()), 0)
    elif best > 0 and line_score[best] == 0 and not text_lines[best].strip():
        best += 1
    return "\n".join(text_lines[best : best + lines])


def item_extent(start: int, end: int, spans: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The lines of the whole item a chunk is a part of: `(start, end)` grown by every span
    that overlaps or touches it, transitively (parts of a split item overlap by a few
    lines; two items of one name are always apart). One sweep over the spans in start
    order, merging runs that touch, finds the run that holds the chunk."""
    ordered = sorted([*spans, (start, end)])
    lo, hi = ordered[0]
    for a, b in ordered[1:]:
        if a <= hi + 1:
            hi = max(hi, b)  # touches the run being merged
        elif lo <= start and end <= hi:
            break  # that run holds the chunk; later runs lie past it
        else:
            lo, hi = a, b
    return lo, hi


def overlaps(hit: SearchHit, root: str, path: str, first: int, last: int) -> bool:
    """Whether `hit` covers any of lines `first`..`last` of `root`/`path` (`similar`
    leaves out the range it was asked about)."""
    return (
        hit.root == root and hit.path == path and hit.start_line <= last and hit.end_line >= first
    )


def is_near_duplicate(a: ChunkRow, b: ChunkRow) -> bool:
    """Whether `b` adds nothing to a result list that already shows `a`: same file, and
    the line ranges overlap (parts of one item) or one is the container chunk (impl, trait,
    mod) of the other's symbol. A container's few header lines (a fragment: `/// Config
    helpers.` `pub mod config {`) stand for none of its items: they hid the fn a question
    asked for behind a header that then kept half its score."""
    if a.path != b.path:
        return False
    if a.start_line <= b.end_line and b.start_line <= a.end_line:
        return True
    for outer, inner in ((a, b), (b, a)):
        if (
            outer.kind in CONTAINER_KINDS
            and inner.symbol.startswith(outer.symbol + "::")
            and not is_fragment(outer)
        ):
            return True
    return False


def _symbol_hits(
    root: RootIndex, name: str, failures: StoreFailures, *, ignore_case: bool, limit: int
) -> tuple[list[str], list[str]]:
    """Chunk ids of `root` whose symbol is `name` or ends with `::name`, closest first,
    from the `limit` best lexical candidates; for a path none ends with, those of the
    items the path names as the crate's users write it (`tokio::sync::Mutex` is
    `sync::mutex::Mutex`, through the symbol graph's `pub use`s), with those items'
    symbols (none when `name` was found as written)."""
    hits = _named(root, name, failures, ignore_case=ignore_case, limit=limit)
    if hits or "::" not in name:
        return hits, []
    with root.state.reading() as conn:
        defined = Names(conn, root.crate_names()).definitions(name_segments(name))
    public = [symbol for _p, symbol, _k, _a, _b in defined]
    for symbol in public:
        found = _named(root, symbol, failures, ignore_case=False, limit=limit)
        hits.extend(c for c in found if c not in hits)
    return hits, public


def _named(
    root: RootIndex, name: str, failures: StoreFailures, *, ignore_case: bool, limit: int
) -> list[str]:
    words = symbol_words(name)
    cids = failures.guard(
        root, LEXICAL, lambda: root.lexical.symbol_candidates(words, limit), list[str]()
    )
    symbols = root.state.chunk_symbols(cids)
    return [
        cid
        for cid in cids
        if cid in symbols and symbol_matches(symbols[cid], name, ignore_case=ignore_case)
    ]


def _vector_weight(identifier: bool, tuning: SearchConfig) -> float:
    """RRF weight of the vector list: `identifier_vector_weight` for identifier-like
    queries (0 skips embedding the query: a name is found by BM25 and the exact-symbol
    list), 1 for questions in words."""
    return tuning.identifier_vector_weight if identifier else 1.0


Key = tuple[str, str]  # (root id, chunk id)
#: A side's (chunk id, raw score) pairs, best first.
Scored = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class RootLists:
    """One root's candidate lists for a query, with the raw scores that are comparable
    across roots (BM25 over one tokenizer and schema, cosine over one model)."""

    bm25: list[tuple[str, float]]
    vec: list[tuple[str, float]]
    exact: list[str]  # chunks defining the exact name an identifier query asks for


def _root_lists(
    root: RootIndex,
    query: str,
    *,
    mode: str,
    depth: int,
    vector: npt.NDArray[np.float32] | None,
    tuning: SearchConfig,
    failures: StoreFailures,
) -> RootLists:
    identifier = classify(query) == "identifier"
    drop = STOPWORDS if tuning.natural_stopwords and not identifier else frozenset()
    boosts = (
        None
        if identifier
        else {"content_t": tuning.natural_content_boost, "doc_t": tuning.natural_doc_boost}
    )
    # A code-like identifier is matched whole before its parts (`NonZeroU32` over `u32`).
    emphasis = (
        dict.fromkeys(whole_identifiers(query), tuning.whole_identifier_boost)
        if strict_identifier(query)
        else None
    )
    shorts = 0.0 if identifier else tuning.abbreviation_weight
    bm25, vec = Scored(), Scored()
    if mode in ("hybrid", "bm25"):
        args = (query, depth, drop, boosts, emphasis, shorts)
        bm25 = failures.guard(root, LEXICAL, lambda: root.lexical.search(*args), Scored())
    if (near := vector) is not None:  # a name for the lambda, narrowed
        vec = failures.guard(
            root, VECTORS, lambda: root.vectors.search(near, depth + TIE_MARGIN), Scored()
        )
    vec = _fold_shared(root, vec[: through_ties([s for _, s in vec], depth)], query, drop)
    name = symbol_name(query) if identifier and tuning.symbol_weight > 0 else None
    exact = _symbol_hits(root, name, failures, ignore_case=True, limit=depth * 4)[0] if name else []
    if not identifier and tuning.joined_weight > 0:
        joined = (
            c
            for n in joined_names(query)
            for c in _named(root, n, failures, ignore_case=True, limit=depth)
        )
        exact = list(dict.fromkeys(joined))
    return RootLists(bm25, vec, exact)


def _fold_shared(
    root: RootIndex, vec: list[tuple[str, float]], query: str, drop: frozenset[str]
) -> list[tuple[str, float]]:
    """The vector list with the points of one shared vector (`daemon.embed_groups`)
    folded into their best-matching member."""
    runs = shared_runs(vec)
    if len(runs) == len(vec):
        return vec
    rows = root.state.chunk_rows(cid for run in runs if len(run) > 1 for cid, _ in run)
    words = frozenset(stems(t for t in query_tokens(query) if t not in drop))
    return fold_shared(runs, rows, words)


def _flat(lists: dict[str, list[tuple[str, float]]]) -> list[tuple[Key, float]]:
    """Every root's (chunk, raw score) pairs as one list keyed by (root, chunk)."""
    return [((rid, cid), score) for rid, ranked in lists.items() for cid, score in ranked]


def _scored_sides(
    per_root: dict[str, RootLists],
) -> tuple[list[tuple[Key, float]], list[tuple[Key, float]]]:
    """Every root's BM25 pairs as one list, and every root's vector pairs as another:
    the raw scores the score-based fusions (`combsum`, `zscore`) work on."""
    bm25 = _flat({rid: r.bm25 for rid, r in per_root.items()})
    return bm25, _flat({rid: r.vec for rid, r in per_root.items()})


def _merged(lists: dict[str, list[tuple[str, float]]]) -> tuple[list[Key], list[int]]:
    """One list over every root, best raw score first, and its ranks: equal raw scores
    share a rank (`fusion.tied_ranks`)."""
    merged = sorted(_flat(lists), key=lambda kv: -kv[1])
    return [key for key, _ in merged], tied_ranks([score for _, score in merged])


def _interleaved(lists: dict[str, list[str]]) -> tuple[list[Key], list[int]]:
    """Rank-by-rank interleaving of per-root lists that carry no comparable score, and
    their ranks: each entry keeps its place in its own root's list, so the same place in
    two roots (the same symbol in two copies of a crate) is the same rank, not an order
    between roots."""
    out: list[Key] = []
    ranks: list[int] = []
    longest = max((len(ids) for ids in lists.values()), default=0)
    for rank in range(longest):
        here = [(rid, ids[rank]) for rid, ids in lists.items() if rank < len(ids)]
        out.extend(here)
        ranks.extend([rank + 1] * len(here))
    return out, ranks


def _fuse(
    per_root: dict[str, RootLists], query: str, mode: str, tuning: SearchConfig
) -> list[tuple[Key, float]]:
    """Every root's candidates on one scale in [0, 1], best first.

    The roots' lists are merged first (BM25 by its raw score, vectors by cosine, exact
    symbols rank by rank) and then fused once, with weighted RRF divided by the most a
    chunk could get (first on every list the query uses): several roots rank as one
    index would, so a root that merely mentions a name, or answers a question weakly,
    cannot outrank on a scale of its own the root that answers it. Vector mode scores by
    cosine. For a code-like identifier (`NonZeroU32`, `Vec::push`, `read_to_string`) the
    chunks defining that exact name take the upper half of the scale, so they lead; a
    plain word (`retry`) only weighs them in the fusion."""
    identifier = classify(query) == "identifier"
    exact, places = _interleaved({rid: r.exact for rid, r in per_root.items()})
    first = exact if identifier and strict_identifier(query) else []
    if mode == "vector":
        flat = _flat({rid: r.vec for rid, r in per_root.items()})
        cosines = sorted(((k, max(0.0, min(1.0, s))) for k, s in flat), key=lambda kv: -kv[1])
        return _exact_first(cosines, first)
    if tuning.fusion == "combsum" and mode == "hybrid" and not identifier:
        return _combsum(per_root, tuning)
    if tuning.fusion == "zscore" and mode == "hybrid" and not identifier:
        return zscore_sum(_scored_sides(per_root), [tuning.natural_lexical_weight, 1.0])
    lex_w, vec_w = _lexical_weight(identifier, tuning), _vector_weight(identifier, tuning)
    if tuning.fusion == "adaptive" and mode == "hybrid" and not identifier:
        lex_w, vec_w = _adaptive_weights(per_root, lex_w, vec_w)
    lists = [(*_merged({rid: r.bm25 for rid, r in per_root.items()}), lex_w)]
    if mode == "hybrid":
        lists.append((*_merged({rid: r.vec for rid, r in per_root.items()}), vec_w))
    if identifier and symbol_name(query) is not None and tuning.symbol_weight > 0:
        # Its order is deliberate (closest symbol, then file order), so ranks are places.
        lists.append((exact, places, tuning.symbol_weight))
    elif not identifier and exact:  # the identifier a short question's words spell
        lists.append((exact, places, tuning.joined_weight))
    lists = [entry for entry in lists if entry[2] > 0]
    best = sum(w for _ids, _ranks, w in lists) / (tuning.rrf_k + 1)
    fused = rrf(
        [ids for ids, _, _ in lists],
        k=tuning.rrf_k,
        weights=[w for _, _, w in lists],
        ranks=[ranks for _, ranks, _ in lists],
    )
    return _exact_first([(key, score / best) for key, score in fused], first)


#: Candidates of a side looked at for its leader, past fragments and test code (a
#: demoted first candidate keeps half its score, what RRF gives the 22nd at k = 20).
LEADER_LOOKAHEAD = 20


def _leaders(
    per_root: dict[str, RootLists], roots: Sequence[RootIndex], query: str, tuning: SearchConfig
) -> list[Key]:
    """Each side's first candidate over every root that the hit list would not demote
    (`_resolve_hits`: a fragment, test code): what that mode alone shows first, which
    fusion may outvote but must not bury (`fusion.keep_leaders`)."""
    by_root = {r.id: r for r in roots}
    tests_ok = not TEST_WORDS.isdisjoint(query_tokens(query))
    out = []
    for side in _scored_sides(per_root):
        ahead = [key for key, _ in sorted(side, key=lambda kv: -kv[1])[:LEADER_LOOKAHEAD]]
        rows = {
            (rid, cid): row
            for rid in dict.fromkeys(r for r, _ in ahead)
            for cid, row in by_root[rid].state.chunk_rows(c for r, c in ahead if r == rid).items()
        }
        for key in ahead:
            row = rows.get(key)
            if row is not None and all(share >= 1 for share in _shares(row, tuning, tests_ok)):
                out.append(key)
                break
    return out


def _shares(row: ChunkRow, tuning: SearchConfig, asks_for_tests: bool) -> list[float]:
    """The shares of its score a question's hit keeps (`_resolve_hits` applies them,
    `_leaders` looks past a hit they lower): `fragment_weight` for a fragment,
    `test_weight` for test code unless the question asks for tests."""
    out = [tuning.fragment_weight] if is_fragment(row) else []
    if not asks_for_tests and is_test_code(row):
        out.append(tuning.test_weight)
    return out


def _adaptive_weights(
    per_root: dict[str, RootLists], lex_w: float, vec_w: float
) -> tuple[float, float]:
    """The two sides' fusion weights leaned towards the side whose best candidate
    stands out more for this query (`fusion.standout`), across every root's list."""
    lex, vec = confidence_weighted(
        (lex_w, vec_w),
        (
            standout([s for r in per_root.values() for _, s in r.bm25]),
            standout([s for r in per_root.values() for _, s in r.vec]),
        ),
    )
    return lex, vec


def _combsum(per_root: dict[str, RootLists], tuning: SearchConfig) -> list[tuple[Key, float]]:
    """Weighted sum of each side's scores scaled to [0, 1] over its candidates (BM25 by
    its maximum, cosine min-max), so a side's margin counts, not only its ranks."""
    scores: dict[Key, float] = {}
    bm25, vec = _scored_sides(per_root)
    sides = ((bm25, tuning.natural_lexical_weight, False), (vec, 1.0, True))
    total = 0.0
    for flat, weight, minmax in sides:
        if not flat:
            continue
        total += weight
        hi = max(s for _, s in flat)
        lo = min(s for _, s in flat) if minmax else 0.0
        span = (hi - lo) or 1.0
        for key, s in flat:
            scores[key] = scores.get(key, 0.0) + weight * (s - lo) / span
    return sorted(((k, v / (total or 1.0)) for k, v in scores.items()), key=lambda kv: -kv[1])


def _lexical_weight(identifier: bool, tuning: SearchConfig) -> float:
    return tuning.identifier_lexical_weight if identifier else tuning.natural_lexical_weight


def _exact_first(ranked: list[tuple[Key, float]], first: list[Key]) -> list[tuple[Key, float]]:
    """`ranked` (scores in [0, 1]) with the chunks of `first` moved into the upper half of
    the scale, so they lead in this root and in the merge with every other root. Exact
    chunks the list did not reach join at the bottom of that half, closest symbol first."""
    if not first:
        return ranked
    present = {cid for cid, _ in ranked}
    ranked = ranked + [(cid, 0.0) for cid in first if cid not in present]
    chosen = set(first)
    moved = ((cid, (1 + s) / 2 if cid in chosen else s / 2) for cid, s in ranked)
    return sorted(moved, key=lambda kv: -kv[1])


#: The kind of loose module code between items (`ipc.kinds`): windows of a run, no item.
LOOSE_KIND = "code"


def resolve_candidates(
    keyed: Sequence[tuple[tuple[str, str], float]],
    by_root: dict[str, RootIndex],
    page: int,
    *,
    whole_items: bool,
) -> Iterator[tuple[str, ChunkRow, float]]:
    """(root id, row, score) for the ranked `keyed` candidates, in order, read from
    state.db a page at a time: ten hits need the rows (and text) of the first few dozen
    candidates, not of all of them. Candidates no longer recorded are skipped. With
    `whole_items`, a part of a split item spans the whole item (its snippet stays on
    the part). Loose code (`code`) is no item: a run of it (http's 826-line
    `standard_headers! { … }` table) is cut into windows, and a window's hit keeps its own
    lines, or the editor would open the run at its top, hundreds of lines from the match."""
    for start in range(0, len(keyed), page):
        part = keyed[start : start + page]
        wanted: dict[str, list[str]] = {}
        for (rid, cid), _ in part:
            wanted.setdefault(rid, []).append(cid)
        rows = {rid: by_root[rid].state.chunk_rows(cids) for rid, cids in wanted.items()}
        spans = {
            rid: by_root[rid].state.symbol_spans(
                (r.path, r.symbol, r.kind) for r in got.values() if r.kind != LOOSE_KIND
            )
            for rid, got in rows.items()
            if whole_items
        }
        for (rid, cid), score in part:
            row = rows[rid].get(cid)
            if row is None:
                continue
            if whole_items and row.kind != LOOSE_KIND:
                extent = spans[rid][(row.path, row.symbol, row.kind)]
                first, last = item_extent(row.start_line, row.end_line, extent)
                row = dataclasses.replace(row, start_line=first, end_line=last)
            yield rid, row, score


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    hits: list[SearchHit]
    #: For an identifier-like query: the name, and whether any searched root defines it.
    exact: dict[str, object] | None
    #: For a question in words: "low" when even the best hit matches it weakly.
    confidence: str | None
    #: The roots ranked without a store that failed, or left out (`daemon.degraded`).
    degraded: list[Degraded] = dataclasses.field(default_factory=list)

    def notes(self) -> dict[str, object]:
        """What the reply says beside the hits: `exact`, `confidence` and `degraded`,
        when known."""
        degraded = [d.to_json() for d in self.degraded] or None
        notes = {"exact": self.exact, "confidence": self.confidence, "degraded": degraded}
        return {key: value for key, value in notes.items() if value is not None}


def search_roots(
    roots: Sequence[RootIndex],
    request: SearchRequest,
    *,
    embed_query: Callable[[str], npt.NDArray[np.float32]] | None,
    tuning: SearchConfig | None = None,
    adapter: QueryAdapter | None = None,
) -> list[SearchHit]:
    """The hits of `run_search` (for callers that need only them)."""
    return run_search(roots, request, embed_query=embed_query, tuning=tuning, adapter=adapter).hits


def run_search(
    roots: Sequence[RootIndex],
    request: SearchRequest,
    *,
    embed_query: Callable[[str], npt.NDArray[np.float32]] | None,
    tuning: SearchConfig | None = None,
    adapter: QueryAdapter | None = None,
) -> SearchOutcome:
    """Best `request.limit` hits over `roots` for `request` (its `root` is the caller's to
    resolve into `roots`), with what the reply says about them.

    Each root is ranked on its own and the roots merged on their shared [0, 1] scale
    (`_fuse`). The filters (`daemon.filters`: path glob, kind, symbol) keep only
    matching chunks, searching deeper to make up for it. Chunks of the symbol asked for
    are also looked up directly, ranked by the query when there is one. A root whose
    store raises is ranked without it, or left out (`daemon.degraded`). `tuning` holds
    the candidate depth, the RRF constant and the fusion weights; `adapter` moves a
    question's vector towards code (`daemon.query_adapter`)."""
    tuning = tuning or SearchConfig()
    query, mode, limit, symbol = request.query, request.mode, request.limit, request.symbol_name
    failures = StoreFailures()
    found = {
        r.id: _symbol_hits(r, symbol, failures, ignore_case=False, limit=SYMBOL_DEPTH)
        for r in roots
        if symbol is not None
    }
    filters = row_filters(request, [s for _cids, public in found.values() for s in public])
    depth = max(tuning.candidates, limit) * (FILTER_DEPTH_FACTOR if filters else 1)
    identifier = classify(query) == "identifier"
    # `similar` passes no query and its own vector; a bare symbol lookup embeds nothing.
    wants_vector = (
        mode == "vector" or (mode == "hybrid" and _vector_weight(identifier, tuning) > 0)
    ) and (bool(query.strip()) or symbol is None)
    vector, adapted = (
        question_vector(query, embed_query, adapter, tuning)
        if wants_vector and embed_query is not None
        else (None, False)
    )
    per_root = {
        root.id: _root_lists(
            root, query, mode=mode, depth=depth, vector=vector, tuning=tuning, failures=failures
        )
        for root in roots
    }
    ranking = ([LEXICAL] if mode != "vector" else []) + ([VECTORS] if vector is not None else [])
    degraded = failures.report(roots, ranking)  # raises when no root could be searched
    keyed = _fuse(per_root, query, mode, tuning)
    if mode == "hybrid" and not identifier and tuning.leader_place > 0:
        keyed = keep_leaders(keyed, _leaders(per_root, roots, query, tuning), tuning.leader_place)
    if symbol is not None:
        keyed = _with_symbol_hits(roots, {rid: cids for rid, (cids, _) in found.items()}, keyed)
    hits = _resolve_hits(keyed, roots, request, filters, tuning)
    floor = tuning.low_confidence_adapted_cosine if adapted else tuning.low_confidence_cosine
    return SearchOutcome(
        hits,
        _exact_info(query, per_root, roots, filters),
        _confidence(query, hits, per_root, floor),
        degraded,
    )


def question_vector(
    query: str,
    embed_query: Callable[[str], npt.NDArray[np.float32]],
    adapter: QueryAdapter | None,
    tuning: SearchConfig,
) -> tuple[npt.NDArray[np.float32], bool]:
    """The vector `query` is searched with, and whether the query adapter mapped it (a
    question in words, with the adapter on): the two spaces have their own confidence
    floors."""
    vector = embed_query(query)
    if adapter is None or not tuning.query_adapter or classify(query) == "identifier":
        return vector, False
    return adapter.apply(vector), True


def _resolve_hits(
    keyed: list[tuple[tuple[str, str], float]],
    roots: Sequence[RootIndex],
    request: SearchRequest,
    filters: list[Callable[[ChunkRow], bool]],
    tuning: SearchConfig,
) -> list[SearchHit]:
    """The first `request.limit` candidates that pass the filters and add something; for
    a question in words, fragments (see `is_fragment`) and test code weigh
    `fragment_weight` and `test_weight` of their score, and candidates are read until
    none left could still enter the list (the first hit does not depend on the limit)."""
    by_root = {r.id: r for r in roots}
    words = query_tokens(request.query)
    demote = (tuning.fragment_weight < 1 or tuning.test_weight < 1) and classify(
        request.query
    ) != "identifier"
    asks_for_tests = not TEST_WORDS.isdisjoint(words)
    hits: list[SearchHit] = []
    shown: list[tuple[str, ChunkRow]] = []
    kept: list[float] = []  # the `limit` best scores so far, a min-heap
    page = max(2 * request.limit, RESOLVE_PAGE)
    for rid, row, score in resolve_candidates(keyed, by_root, page, whole_items=tuning.whole_items):
        if len(kept) >= request.limit and score < kept[0]:
            break  # sorted by raw score: no later candidate can pass the list's last
        if not all(keep(row) for keep in filters):
            continue
        if tuning.dedupe and any(s_rid == rid and is_near_duplicate(s, row) for s_rid, s in shown):
            continue
        shown.append((rid, row))
        for share in _shares(row, tuning, asks_for_tests) if demote else ():
            score *= share
        hits.append(
            SearchHit(
                root=str(by_root[rid].path),
                path=row.path,
                start_line=row.start_line,
                end_line=row.end_line,
                symbol=row.symbol,
                kind=row.kind,
                score=round(score, 6),
                snippet=snippet(row.text, words),
            )
        )
        if len(kept) < request.limit:
            heapq.heappush(kept, score)
        else:
            heapq.heappushpop(kept, score)
        if not demote and len(hits) >= request.limit:
            break
    if demote:
        hits.sort(key=lambda h: -h.score)  # stable: equal scores keep their order
    return hits[: request.limit]


#: A chunk of a fragment kind (`ipc.kinds.FRAGMENT_KINDS`) this short is a fragment.
FRAGMENT_LINES = 3


def is_fragment(row: ChunkRow) -> bool:
    """A few lines that stand for no item: an `impl … {` header, a const, a type alias,
    loose code; or the closing lines a `macro_rules!` body's items leave (`};` `}`,
    erased-serde's tail ranked for a question beside the same macro's head)."""
    if row.end_line - row.start_line + 1 > FRAGMENT_LINES:
        return False
    return row.kind in FRAGMENT_KINDS or (row.kind == "macro" and "macro_rules!" not in row.text)


#: Folders whose code is tests or benchmarks, not what a question about the code means.
TEST_DIRS = frozenset({"tests", "benches"})
#: A question holding one of these asks for test code: it is not demoted then.
TEST_WORDS = frozenset({"test", "tests", "testing", "bench", "benches", "benchmark"})


def is_test_code(row: ChunkRow) -> bool:
    """Whether `row` is test code: under tests/ or benches/, in a module or file named
    as tests are (`tests`, `test_map`, `proptests`, `hash_quality_test.rs`: a `#[cfg(test)]`
    module's attribute is in its parent, so the name is what a chunk has of it), or a
    `#[test]` function."""
    folders = row.path.split("/")
    if TEST_DIRS.intersection(folders[:-1]) or is_test_name(folders[-1].removesuffix(".rs")):
        return True
    if any(is_test_name(segment) for segment in row.symbol.split("::")[:-1]):
        return True
    head = row.text[:200]
    return "#[test]" in head or "::test]" in head


def is_test_name(module: str) -> bool:
    """`test`, `tests`, `test_map`, `fallback_tests`, `proptests`, `quality_test`; not
    `testing` or `tests_support`, which crates also name public helpers, nor words that
    end so (`contests`)."""
    return (
        module in TEST_MODULES or module.startswith("test_") or module.endswith(("_test", "_tests"))
    )


#: Module names that are test code whole.
TEST_MODULES = frozenset({"test", "tests", "proptest", "proptests", "unittest", "unittests"})


def _exact_info(
    query: str,
    rankings: dict[str, RootLists],
    roots: Sequence[RootIndex],
    filters: Sequence[RowFilter],
) -> dict[str, object] | None:
    """`{"symbol", "found"}` for an identifier-like query, None for words."""
    name = symbol_name(query) if classify(query) == "identifier" else None
    if name is None:
        return None
    found = any(
        _defines(root, rankings[root.id].exact if root.id in rankings else [], name, filters)
        for root in roots
    )
    return {"symbol": name, "found": found}


def _defines(root: RootIndex, exact: list[str], name: str, filters: Sequence[RowFilter]) -> bool:
    """Whether `root` defines `name` where the filters look. A name no chunk bears may
    still be defined (a trait's required method is part of its trait's chunk): the
    symbol graph is asked before saying it is not. `Foo --path net` with `Foo` defined
    elsewhere shows other code, and says that it is not `Foo`."""

    def passes(row: ChunkRow) -> bool:
        return all(keep(row) for keep in filters)

    if exact and (not filters or any(map(passes, root.state.chunk_rows(exact).values()))):
        return True
    with root.state.reading() as conn:
        defined = Names(conn, root.crate_names()).definitions(name_segments(name))
    return any(passes(ChunkRow("", p, a, b, s, k, "", "")) for p, s, k, a, b in defined)


def _confidence(
    query: str,
    hits: list[SearchHit],
    rankings: dict[str, RootLists],
    floor: float,
) -> str | None:
    """For a question in words: "low" when the best hit is weak, judged by the vector
    side's best cosine against `floor` (an absolute measure, unlike ranks; the floor of
    the space the question's vector is in) or, without vectors, by how
    many of the question's words the best hit holds. None for identifiers."""
    if classify(query) == "identifier" or not query.strip():
        return None
    if not hits:
        return "low"
    cosines = [r.vec[0][1] for r in rankings.values() if r.vec]
    if cosines:
        return "low" if max(cosines) < floor else "high"
    # As stems, as the BM25 side matched them: "detecting runs" holds `Detects … running`.
    wanted = set(stems(t for t in query_tokens(query) if t not in STOPWORDS))
    have = set(stems(query_tokens(hits[0].snippet + " " + hits[0].symbol)))
    return "low" if wanted and len(wanted & have) * 2 < len(wanted) else "high"


def _with_symbol_hits(
    roots: Sequence[RootIndex], found: dict[str, list[str]], fused: list[tuple[Key, float]]
) -> list[tuple[Key, float]]:
    """`fused` narrowed to the chunks of the symbol asked for (`found`, by root id),
    followed by the matches the query did not reach, closest symbol and definitions
    before impl blocks first, scored below the rest; with no query (a bare lookup) each
    is an exact match and scores 1."""
    allowed, _places = _interleaved({r.id: _definitions_first(r, found[r.id]) for r in roots})
    allowed_set = set(allowed)
    ranked = [(key, s) for key, s in fused if key in allowed_set]
    seen = {key for key, _ in ranked}
    below = min(s for _, s in ranked) / 2 if ranked else 1.0
    ranked += [(key, below) for key in allowed if key not in seen]
    return ranked


def _definitions_first(root: RootIndex, cids: list[str]) -> list[str]:
    """`cids` with impl blocks after the items themselves (`--symbol Graph`: the struct
    before the `impl From<StableGraph> for Graph` whose chunk bears the same name)."""
    rows = root.state.chunk_rows(cids)
    return sorted(cids, key=lambda c: c not in rows or rows[c].kind == "impl")
