"""How much the code-aware lexical side is worth on its own: BM25 over rcmd's own chunks
(read from the harness daemon's state.db) with (a) Tantivy's default tokenizer on the raw
text, (b) rcmd's code tokens on the text alone, (c) rcmd's fields (symbol ×3, signature
×1.5, path, text), scored on one corpus's doc-comment queries (and its hand-written
questions, on the doc-blanked copy). Run after `python -m bench.quality`.

    python -m bench.quality.ablation [CORPUS]        # default: library
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import apsw
import tantivy

from bench.quality.__main__ import DEFAULT_WORK
from bench.quality.corpora import BY_NAME, copy_root
from bench.quality.evaluate import Result, run_doc, run_hand, summary
from bench.quality.naive import simple_tokens
from bench.quality.runs import CorpusSets
from daemon.lexical import FIELD_BOOSTS
from daemon.root import root_id_for
from daemon.tokenize import as_field_text, code_tokens, query_tokens


def _rows(work: Path, root: Path) -> list[tuple[Any, ...]]:
    db = work / "home" / "state" / "roots" / root_id_for(root) / "state.db"
    if not db.exists():
        raise SystemExit(f"{db} not found: run python -m bench.quality first")
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    return list(
        conn.execute("SELECT path, start_line, end_line, symbol, signature, text FROM chunks")
    )


class Variant:
    def __init__(self, rows: list[tuple[Any, ...]], fields: dict[str, float], code: bool) -> None:
        self.rows, self.fields, self.code = rows, fields, code
        b = tantivy.SchemaBuilder()
        b.add_unsigned_field("id", stored=True, indexed=True)
        for f in fields:
            b.add_text_field(f, stored=False, tokenizer_name="whitespace")
        self.schema = b.build()
        self.index = tantivy.Index(self.schema)
        w = self.index.writer(128 << 20, 1)
        for i, (path, _s, _e, symbol, signature, text) in enumerate(rows):
            doc = tantivy.Document()
            doc.add_unsigned("id", i)
            values = {
                "content": text,
                "symbol": symbol.replace("::", " "),
                "signature": signature,
                "path": path.replace("/", " "),
            }
            for f in fields:
                toks = code_tokens(values[f]) if code else simple_tokens(values[f])
                doc.add_text(f, as_field_text(toks))
            w.add_document(doc)
        w.commit()
        w.wait_merging_threads()
        self.index.reload()

    def search(self, query: str, mode: str, limit: int) -> tuple[list[Result], float]:
        t = time.perf_counter()
        toks = query_tokens(query) if self.code else list(dict.fromkeys(simple_tokens(query)))
        clauses = [
            (
                tantivy.Occur.Should,
                tantivy.Query.boost_query(tantivy.Query.term_query(self.schema, f, tok), boost),
            )
            for f, boost in self.fields.items()
            for tok in toks
        ]
        if not clauses:
            return [], 0.0
        searcher = self.index.searcher()
        res = searcher.search(tantivy.Query.boolean_query(clauses), limit, count=False)
        out = []
        for _score, addr in res.hits:
            path, s, e, symbol, *_ = self.rows[int(searcher.doc(addr)["id"][0])]
            out.append(Result(path, s, e, symbol))
        return out, (time.perf_counter() - t) * 1000


def main() -> int:
    work = DEFAULT_WORK
    sets = CorpusSets.load(BY_NAME[sys.argv[1] if len(sys.argv) > 1 else "library"])
    rows = _rows(work, copy_root(sets.corpus, work, blank=True))
    rcmd_fields = {k.removesuffix("_t"): v for k, v in FIELD_BOOSTS.items()}
    variants = {
        "default tokenizer, text only": Variant(rows, {"content": 1.0}, code=False),
        "code tokens, text only": Variant(rows, {"content": 1.0}, code=True),
        "default tokenizer, rcmd's fields": Variant(rows, rcmd_fields, code=False),
        "code tokens, rcmd's fields (rcmd)": Variant(rows, rcmd_fields, code=True),
    }
    print(
        f"| lexical variant (rcmd chunks, BM25; {sets.corpus.name}) | doc MRR@10 | doc hit@10 "
        "| hand MRR@10 (doc-blanked) |"
    )
    print("|---|---|---|---|")
    for name, v in variants.items():
        d = summary(run_doc(v.search, sets.doc, "bm25").ranks)
        h = summary(run_hand(v.search, sets.hand, "bm25").ranks)
        print(f"| {name} | {d['mrr@10']:.3f} | {d['hit@10']:.3f} | {h['mrr@10']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
