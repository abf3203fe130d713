"""The naive baseline the issue asks for, built in-process from the same libraries:
whole tree-sitter items as chunks (an impl or trait is one chunk, no splitting, no header),
Tantivy's default tokenizer on the raw text, the same embedding model on the raw text
(truncated to its 256-token window), exact cosine search, and equal-weight RRF (k=60).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tantivy
import tree_sitter
import tree_sitter_rust

from daemon.embed_cache import EmbedCache, cache_key
from daemon.fusion import rrf

_ITEMS = frozenset(
    {
        "function_item",
        "struct_item",
        "enum_item",
        "union_item",
        "trait_item",
        "impl_item",
        "type_item",
        "const_item",
        "static_item",
        "macro_definition",
    }
)
#: Tantivy's SimpleTokenizer: runs of alphanumeric characters, lowercased, long ones dropped.
_SIMPLE = re.compile(r"[^\W_]+")
RRF_K = 60
CANDIDATES = 50


@dataclass(frozen=True, slots=True)
class NaiveChunk:
    path: str
    start_line: int
    end_line: int
    kind: str
    text: str


def simple_tokens(text: str) -> list[str]:
    return [t.lower() for t in _SIMPLE.findall(text) if len(t) < 40]


def item_chunks(rel: str, source: bytes) -> list[NaiveChunk]:
    """Every item of a file (inline `mod` bodies descended into) as one whole chunk."""
    lang = tree_sitter.Language(tree_sitter_rust.language())
    tree = tree_sitter.Parser(lang).parse(source)
    lines = source.decode("utf-8", "replace").split("\n")
    out: list[NaiveChunk] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        for child in node.children:
            if child.type == "mod_item":
                body = child.child_by_field_name("body")
                if body is not None:
                    stack.append(body)
            elif child.type in _ITEMS:
                s, e = child.start_point.row, child.end_point.row
                text = "\n".join(lines[s : e + 1])
                out.append(NaiveChunk(rel, s + 1, e + 1, child.type.removesuffix("_item"), text))
    out.sort(key=lambda c: c.start_line)
    return out


class NaiveIndex:
    def __init__(
        self,
        root: Path,
        embed: Callable[[list[str]], list[npt.NDArray[np.float32]]],
        embed_query: Callable[[str], npt.NDArray[np.float32]],
        model_id: str,
        cache_path: Path,
    ) -> None:
        self.chunks: list[NaiveChunk] = []
        for f in sorted(root.rglob("*.rs")):
            self.chunks.extend(item_chunks(f.relative_to(root).as_posix(), f.read_bytes()))
        b = tantivy.SchemaBuilder()
        b.add_unsigned_field("id", stored=True, indexed=True)
        b.add_text_field("text", stored=False, tokenizer_name="default")
        self.schema = b.build()
        self.index = tantivy.Index(self.schema)
        w = self.index.writer(64 << 20, 1)
        for i, c in enumerate(self.chunks):
            doc = tantivy.Document()
            doc.add_unsigned("id", i)
            doc.add_text("text", c.text)
            w.add_document(doc)
        w.commit()
        w.wait_merging_threads()
        self.index.reload()
        self.embed_query = embed_query
        self.vectors = self._embed_all(embed, model_id, cache_path)

    def _embed_all(
        self,
        embed: Callable[[list[str]], list[npt.NDArray[np.float32]]],
        model_id: str,
        cache_path: Path,
    ) -> npt.NDArray[np.float32]:
        cache = EmbedCache(cache_path)
        try:
            keys = [cache_key(model_id, c.text) for c in self.chunks]
            have = cache.get_many(keys)
            todo = sorted({k: i for i, k in enumerate(keys) if k not in have}.items())
            t0 = time.monotonic()
            for start in range(0, len(todo), 512):
                part = todo[start : start + 512]
                vecs = embed([self.chunks[i].text for _, i in part])
                new = {k: v for (k, _), v in zip(part, vecs, strict=True)}
                cache.put_many(new)
                have.update(new)
                done = start + len(part)
                rate = done / max(time.monotonic() - t0, 1e-9)
                print(f"  naive embedding: {done}/{len(todo)} ({rate:.1f}/s)", flush=True)
            return np.stack([have[k] for k in keys]).astype(np.float32)
        finally:
            cache.close()

    def bm25(self, query: str, limit: int) -> list[int]:
        tokens = list(dict.fromkeys(simple_tokens(query)))
        if not tokens:
            return []
        clauses = [
            (tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", t)) for t in tokens
        ]
        searcher = self.index.searcher()
        res = searcher.search(tantivy.Query.boolean_query(clauses), limit, count=False)
        return [int(searcher.doc(a)["id"][0]) for _, a in res.hits]

    def vector(self, query: str, limit: int) -> list[int]:
        sims = self.vectors @ self.embed_query(query)
        top = np.argpartition(-sims, min(limit, len(sims) - 1))[:limit]
        return [int(i) for i in top[np.argsort(-sims[top], kind="stable")]]

    def search(self, query: str, mode: str, limit: int = 10) -> list[NaiveChunk]:
        if mode == "bm25":
            ids = self.bm25(query, limit)
        elif mode == "vector":
            ids = self.vector(query, limit)
        else:
            fused = rrf([self.bm25(query, CANDIDATES), self.vector(query, CANDIDATES)], k=RRF_K)
            ids = [i for i, _ in fused[:limit]]
        return [self.chunks[i] for i in ids]
