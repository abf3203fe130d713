"""The benchmark corpora: Debian's rust-src (`apt-get install rust-src`) and a synthetic
generator of realistic Rust for cost-vs-size curves."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

RUST_SRC = Path("/usr/lib/rustlib/src/rust")

CORPORA = {
    "small": "library/alloc (106 files, 59k lines)",
    "medium": "library/ without stdarch (~1,080 files, ~345k lines)",
    "large": "the whole rust-src tree (22,331 files, 1.9M lines)",
    "synthetic:N": "N generated files of realistic Rust",
}


def materialize(name: str, dest: Path) -> Path:
    """A private copy of corpus `name` under `dest` (benchmarks edit their copy)."""
    if dest.exists():
        shutil.rmtree(dest)
    if name.startswith("synthetic:"):
        synthetic(int(name.split(":", 1)[1]), dest)
        return dest
    if not RUST_SRC.is_dir():
        raise SystemExit(f"{RUST_SRC} not found; install it with: apt-get install rust-src")
    if name == "small":
        shutil.copytree(RUST_SRC / "library" / "alloc", dest, symlinks=True)
    elif name == "medium":
        shutil.copytree(
            RUST_SRC / "library",
            dest,
            symlinks=True,
            ignore=lambda d, names: ["stdarch"] if Path(d).name == "library" else [],
        )
    elif name == "large":
        shutil.copytree(RUST_SRC, dest, symlinks=True)
    else:
        raise SystemExit(f"unknown corpus {name!r}; one of: {', '.join(CORPORA)}")
    return dest


_TYPES = ["u32", "u64", "usize", "i64", "f64", "bool", "String", "Vec<u8>", "Option<u32>"]
_VERBS = ["parse", "load", "store", "merge", "split", "encode", "decode", "flush", "scan"]
_NOUNS = ["header", "record", "buffer", "frame", "token", "segment", "entry", "packet"]


def _fn(rng: random.Random, name: str, indent: str) -> str:
    arg, ret = rng.choice(_TYPES), rng.choice(_TYPES)
    lines = [
        f"{indent}/// {name.replace('_', ' ').capitalize()} for the given input.",
        f"{indent}pub fn {name}(input: &{arg}, limit: usize) -> Result<{ret}, Error> {{",
        f"{indent}    let mut acc = Vec::with_capacity(limit);",
        f"{indent}    for i in 0..limit {{",
        f"{indent}        if i % {rng.randrange(2, 9)} == 0 {{",
        f"{indent}            acc.push(i as u64 ^ {rng.randrange(1 << 16)});",
        f"{indent}        }}",
        f"{indent}    }}",
        f"{indent}    let _ = input;",
        f'{indent}    Err(Error::new("{name}: {rng.choice(_NOUNS)} not ready"))',
        f"{indent}}}",
    ]
    return "\n".join(lines)


def synthetic_file(rng: random.Random, index: int) -> str:
    """One module: a struct, its impl with a few methods, and a free function."""
    noun = rng.choice(_NOUNS)
    ty = f"{noun.capitalize()}{index}"
    parts = [
        "use std::collections::HashMap;",
        "",
        f"/// A {noun} kept by module {index}.",
        "#[derive(Debug, Clone, Default)]",
        f"pub struct {ty} {{",
        *(f"    pub field_{j}: {rng.choice(_TYPES)}," for j in range(rng.randrange(2, 6))),
        "    pub index: HashMap<String, usize>,",
        "}",
        "",
        f"impl {ty} {{",
        *(
            _fn(rng, f"{rng.choice(_VERBS)}_{noun}_{index}_{m}", "    ") + "\n"
            for m in range(rng.randrange(1, 4))
        ),
        "}",
        "",
        _fn(rng, f"{rng.choice(_VERBS)}_{index}", ""),
        "",
    ]
    return "\n".join(parts)


def synthetic(n: int, dest: Path, seed: int = 7) -> None:
    """`n` files in directories of 50, deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(n):
        d = dest / "src" / f"group_{i // 50:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"module_{i}.rs").write_text(synthetic_file(rng, i))
