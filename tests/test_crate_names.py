"""Crate names come from Cargo.toml, not from the folder a crate was cloned into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.crate_names import CrateNames, CrateNamesCache, folder_names, read_names
from daemon.graph import navigate
from tests.test_navigation_units import graph_state


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_package_and_lib_names_come_before_the_folders(tmp_path: Path) -> None:
    root = _write(tmp_path / "rust-either", {"Cargo.toml": '[package]\nname = "either"\n'})
    names = read_names(root)
    assert names.prefix("either") == () and names.prefix("rust_either") == ()
    assert names.of("src/lib.rs") == "either"
    (root / "Cargo.toml").write_text('[package]\nname = "a-b"\n[lib]\nname = "ab_lib"\n')
    assert read_names(root).of("src/lib.rs") == "ab_lib"
    assert folder_names("tokio-1.24.2") == ["tokio", "tokio_1.24.2"]
    assert folder_names("sval-1.0.0-alpha.5")[0] == "sval"


def test_workspace_members_map_their_package_name_to_their_folder(tmp_path: Path) -> None:
    root = _write(
        tmp_path / "ws",
        {
            "Cargo.toml": '[workspace]\nmembers = ["crates/*", "../outside", "/etc"]\n',
            "crates/core/Cargo.toml": '[package]\nname = "mylib-core"\n',
            "crates/no-manifest/src/lib.rs": "",
            "crates/broken/Cargo.toml": "[package\n",
        },
    )
    names = read_names(root)
    assert names.prefix("mylib_core") == ("core",)
    assert names.of("crates/core/src/lib.rs") == "mylib_core"
    assert names.of("crates/no-manifest/src/lib.rs") == "no_manifest"  # its folder's name
    assert "outside" not in names and "etc" not in names
    assert names.prefix("ws") == ()


def test_the_cache_reads_the_manifest_again_when_it_changes(tmp_path: Path) -> None:
    root = _write(tmp_path / "proj", {"Cargo.toml": '[package]\nname = "first"\n'})
    cache = CrateNamesCache(root)
    assert "first" in cache.get()
    (root / "Cargo.toml").write_text('[package]\nname = "second-name"\n')
    assert "second_name" in cache.get()
    (root / "Cargo.toml").unlink()
    assert cache.get().of("src/lib.rs") == "proj"


def test_navigation_takes_the_manifests_crate_names(tmp_path: Path) -> None:
    """`def either::Either` in a clone named `rust-either`, and a workspace member's item
    by its package name, with the hit's crate named as Cargo names it."""
    root = _write(
        tmp_path / "rust-either",
        {
            "Cargo.toml": '[package]\nname = "either"\n[workspace]\nmembers = ["crates/*"]\n',
            "crates/core/Cargo.toml": '[package]\nname = "either-core"\n',
        },
    )
    files = {
        "src/lib.rs": b"pub mod inner;\npub use inner::Either;\n",
        "src/inner.rs": b"pub enum Either { Left, Right }\n",
        "crates/core/src/lib.rs": b"pub struct Parser;\n",
    }
    with graph_state(tmp_path, files) as state:

        def ask(name: str) -> list[dict[str, Any]]:
            with state.reading() as conn:
                source = (conn, str(root), None, read_names(root))
                results: list[dict[str, Any]] = navigate([source], "def", name, 10)["results"]
            return results

        either = ask("either::Either")
        assert [(h["symbol"], h["crate"]) for h in either] == [("inner::Either", "either")]
        parser = ask("either_core::Parser")
        assert [(h["symbol"], h["crate"]) for h in parser] == [("core::Parser", "either_core")]


def test_a_manifest_that_is_a_fifo_or_huge_is_read_as_absent(tmp_path: Path) -> None:
    """A FIFO named Cargo.toml blocked the request that read it until a writer came; a
    sparse one of a terabyte was read whole. Both fall back to the folder's name."""
    import os
    import threading

    root = tmp_path / "my-proj"
    root.mkdir()
    os.mkfifo(root / "Cargo.toml")
    got: list[CrateNames] = []
    reader = threading.Thread(target=lambda: got.append(read_names(root)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert got and got[0].of("src/lib.rs") == "my_proj"
    (root / "Cargo.toml").unlink()
    with open(root / "Cargo.toml", "wb") as f:
        f.truncate(1 << 40)
    assert read_names(root).of("src/lib.rs") == "my_proj"


def test_a_manifest_nested_past_the_parsers_recursion_is_read_as_absent(tmp_path: Path) -> None:
    """`a = [[[…]]]` a few thousand deep raised RecursionError out of `read_names`, so
    every navigation request of the root failed as an internal error."""
    deep = "a = " + "[" * 5000 + "]" * 5000 + "\n"
    root = _write(tmp_path / "deep-crate", {"Cargo.toml": deep})
    assert read_names(root).of("src/lib.rs") == "deep_crate"
    cache = CrateNamesCache(root)
    assert cache.get().of("src/lib.rs") == "deep_crate"


def test_member_globs_through_symlinks_to_the_root_stay_bounded(tmp_path: Path) -> None:
    """Links back to the root made `*/*/*/*/*/*` list 8^6 folders (more levels never
    ended), and each link listed as a member read the root's manifest again (1 MB a
    time): members are folders inside the root, each once, from a bounded glob."""
    import time

    root = _write(tmp_path / "ws", {"crates/real/Cargo.toml": '[package]\nname = "real"\n'})
    for i in range(8):
        (root / f"l{i}").symlink_to(".")
    (root / "crates" / "up").symlink_to("..")
    filler = "".join(f'k{i} = "{"x" * 60}"\n' for i in range(14_000))
    members = '["*/*/*/*/*/*/*", "l*", "crates/*"]'
    (root / "Cargo.toml").write_text(
        f"[workspace]\nmembers = {members}\n[workspace.metadata]\n{filler}"
    )
    start = time.monotonic()
    names = read_names(root)
    assert time.monotonic() - start < 5
    assert names.prefix("real") == ("real",) and names.prefix("ws") == ()
    assert "up" not in names and not any(n.startswith("l") for n in names.prefixes)
