"""The evaluation corpora: a rust-src `library/` slice and real crates from Debian's
packaged crate sources, each split as a whole into dev (tuned on) or test (held out).

Crates are pinned to the versions Debian bookworm ships (`apt-get install
librust-<name>-dev` puts them under /usr/share/cargo/registry/<name>-<version>/): the
hand-written questions name files and items of exactly these versions. Each corpus is
copied twice under the work dir, once with every `///` and `//!` line blanked (line
numbers kept; the doc-comment queries are run there) and once as it is (the index a user
has; the hand-written questions are run there).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

REGISTRY = Path("/usr/share/cargo/registry")
LIBRARY = Path("/usr/lib/rustlib/src/rust/library")
SPLITS = ("dev", "test")
_DOC_LINE = re.compile(rb"^[ \t]*//[/!].*$", re.M)


@dataclass(frozen=True, slots=True)
class Corpus:
    """One corpus: the files under `source` named by `include` (minus `exclude`); paths in
    queries and results are relative to `source`."""

    name: str
    split: str
    style: str
    source: Path
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    #: Debian package that installs it (for CI's apt step and skip messages).
    package: str = ""

    @property
    def available(self) -> bool:
        return all((self.source / e).exists() for e in self.include)

    def files(self) -> list[Path]:
        """Every `.rs` file of the corpus, sorted."""
        out: list[Path] = []
        for entry in self.include:
            p = self.source / entry
            out.extend([p] if p.is_file() else sorted(p.rglob("*.rs")))
        skip = tuple(self.source / e for e in self.exclude)
        return sorted(f for f in out if not any(f.is_relative_to(s) for s in skip))

    def rel(self, f: Path) -> str:
        return f.relative_to(self.source).as_posix()


def registry_crate(
    name: str, version: str, split: str, style: str, **kw: tuple[str, ...]
) -> Corpus:
    return Corpus(
        name=name,
        split=split,
        style=style,
        source=REGISTRY / f"{name}-{version}",
        include=kw.get("include", ("src",)),
        exclude=kw.get("exclude", ()),
        package=f"librust-{name}-dev",
    )


#: The rust-src slice of the single-corpus evaluation (all of `alloc/src` plus the parts
#: of `std` its hand-written questions ask about): ~5,900 chunks.
LIBRARY_SUBSET = (
    "alloc/src",
    "std/src/collections",
    "std/src/io",
    "std/src/sync",
    "std/src/thread",
    "std/src/fs.rs",
    "std/src/path.rs",
    "std/src/env.rs",
    "std/src/process.rs",
)

#: Picked for variety of style; sizes keep a cold run (both copies, rcmd and naive) near
#: half an hour of embedding on 2 cores. Unicode tables (regex-syntax) and generated
#: visitors (syn) are left out: tens of thousands of lines of data nobody asks about.
CORPORA: tuple[Corpus, ...] = (
    Corpus(
        "library",
        "dev",
        "std library slice (the old tuning corpus)",
        LIBRARY,
        LIBRARY_SUBSET,
        package="rust-src",
    ),
    registry_crate("serde", "1.0.152", "dev", "macro-heavy, trait-generic (serialization)"),
    registry_crate(
        "regex-syntax",
        "0.6.27",
        "dev",
        "hand-written parser, AST/HIR",
        exclude=("src/unicode_tables",),
    ),
    registry_crate("rayon", "1.6.1", "dev", "generic-heavy parallel iterators"),
    registry_crate("crossbeam-channel", "0.5.6", "dev", "lock-free concurrency"),
    registry_crate("itertools", "0.10.3", "test", "generic-heavy iterator adaptors"),
    registry_crate("nom", "7.1.1", "test", "parser combinators"),
    registry_crate(
        "tokio", "1.24.2", "test", "async runtime (sync primitives)", include=("src/sync",)
    ),
    registry_crate("bytes", "1.2.1", "test", "byte buffers, unsafe low-level"),
    registry_crate("syn", "1.0.107", "test", "macro-heavy parser", exclude=("src/gen",)),
)
BY_NAME = {c.name: c for c in CORPORA}


def select(names: list[str] | None, split: str) -> list[Corpus]:
    """The corpora named (all when None) in `split` ("all" for both)."""
    unknown = sorted(set(names or ()) - set(BY_NAME))
    if unknown:
        raise SystemExit(f"unknown corpora: {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    chosen = [c for c in CORPORA if names is None or c.name in names]
    return [c for c in chosen if split == "all" or c.split == split]


def blank_docs(source: bytes) -> bytes:
    """Every `///` and `//!` line made empty; the line count is unchanged."""
    return _DOC_LINE.sub(b"", source)


def copy_root(corpus: Corpus, work: Path, *, blank: bool) -> Path:
    """Write the corpus under WORK/corpora/{blank,real}/NAME (idempotent: a stamp names
    what was copied) and return that root."""
    root = work / "corpora" / ("blank" if blank else "real") / corpus.name
    stamp = root.with_name(corpus.name + ".ok")
    want = f"{corpus.source}\n{corpus.include}\n{corpus.exclude}\n"
    if stamp.exists() and stamp.read_text() == want and root.is_dir():
        return root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    for f in corpus.files():
        out = root / corpus.rel(f)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blank_docs(f.read_bytes()) if blank else f.read_bytes())
    stamp.write_text(want)
    return root.resolve()
