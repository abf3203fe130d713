"""`rcmd index --deps` (issue 23.4): a real lock file, real crates from Debian's packages,
one shared read-only root per crate version, reached by `--deps` only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.deps import DEBIAN_REGISTRY, declared_crates, dependencies, find_source, locked_packages
from tests.conftest import Daemon

LOCK = """\
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["either", "scopeguard", "no-such-crate"]

[[package]]
name = "either"
version = "1.6.1"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "scopeguard"
version = "1.1.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "no-such-crate"
version = "9.9.9"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "vendored-git"
version = "0.1.0"
source = "git+https://example.invalid/x#abc"
"""

MANIFEST = """\
[package]
name = "app"
version = "0.1.0"

[dependencies]
scopeguard = "1"
renamed = { package = "either", version = "1" }
local = { path = "../local" }

[target.'cfg(unix)'.dev-dependencies]
itertools = "0.10"
"""

CRATES = ("scopeguard-1.1.0", "either-1.6.1")


def test_lock_and_manifest_name_registry_crates() -> None:
    assert locked_packages(LOCK) == [
        ("either", "1.6.1"),
        ("no-such-crate", "9.9.9"),
        ("scopeguard", "1.1.0"),
    ]
    assert declared_crates(MANIFEST) == ["either", "itertools", "scopeguard"]


def test_sources_are_found_by_version_or_the_highest(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    for name in ("foo-1.2.0", "foo-1.10.0", "foo-bar-2.0.0"):
        (reg / name).mkdir(parents=True)
        (reg / name / "Cargo.toml").write_text("[package]\n")
    assert find_source("foo", "1.2.0", [reg]) == reg / "foo-1.2.0"
    assert find_source("foo", None, [reg]) == reg / "foo-1.10.0"  # 10 > 2, not text order
    assert find_source("foo", "3.0.0", [reg]) is None
    assert find_source("foo-bar", None, [reg]) == reg / "foo-bar-2.0.0"


def test_a_hostile_lock_file_finds_nothing_outside_the_registries(tmp_path: Path) -> None:
    """Names and versions walking paths, and a vendored link out, are no crates."""
    reg = tmp_path / "registry"
    secret = tmp_path / "secret-1.0.0"
    secret.mkdir()
    (secret / "Cargo.toml").write_text("[package]\n")
    (reg / "ok-1.0.0").mkdir(parents=True)
    (reg / "ok-1.0.0" / "Cargo.toml").write_text("[package]\n")
    (reg / "link-1.0.0").symlink_to(secret)
    assert find_source("../secret", "1.0.0", [reg]) is None
    assert find_source("ok", "1.0.0/../../secret-1.0.0", [reg]) is None
    assert find_source("link", "1.0.0", [reg]) is None
    assert find_source("link", None, [reg]) is None
    assert find_source("ok", "1.0.0", [reg]) == reg / "ok-1.0.0"


def _project(base: Path, name: str) -> Path:
    proj = base / name
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text(MANIFEST)
    (proj / "Cargo.lock").write_text(LOCK)
    (proj / "src" / "lib.rs").write_text(
        "use scopeguard::guard;\n\n/// Closes the handle when the scope ends.\n"
        "pub fn with_cleanup(v: Vec<u8>) -> usize {\n"
        "    let g = guard(v, |v| drop(v));\n    g.len()\n}\n"
    )
    return proj


@pytest.fixture
def registry() -> None:
    missing = [c for c in CRATES if not (DEBIAN_REGISTRY / c / "Cargo.toml").is_file()]
    if missing:
        pytest.skip("needs Debian's crate sources: apt-get install librust-{scopeguard,either}-dev")


def test_index_deps_makes_shared_dependency_roots(
    registry: None, daemon: Daemon, tmp_path: Path
) -> None:
    proj = _project(tmp_path, "app")
    found = {d.name: d for d in dependencies(proj)}
    assert found["scopeguard"].path == (DEBIAN_REGISTRY / "scopeguard-1.1.0").resolve()
    assert found["no-such-crate"].path is None
    reply = daemon.call("index", path=str(proj), deps=True)
    assert sorted(r["crate"] for r in reply["deps"]["roots"]) == [
        "either 1.6.1",
        "scopeguard 1.1.0",
    ]
    assert reply["deps"]["missing"] == ["no-such-crate 9.9.9"]
    dep = (DEBIAN_REGISTRY / "scopeguard-1.1.0").resolve()
    for path in (proj, dep, (DEBIAN_REGISTRY / "either-1.6.1").resolve()):
        daemon.wait_idle(path)
    status = daemon.root_status(dep)
    assert status["dependency"] == "scopeguard 1.1.0" and status["chunks"] > 0
    assert status["watcher"] == "not watched (dependency sources)"

    # Searches and navigation stay in the project unless --deps asks for its crates.
    plain = daemon.cli("def", "ScopeGuard", "--json", cwd=proj).stdout
    assert json.loads(plain)["results"] == []
    got = json.loads(daemon.cli("def", "ScopeGuard", "--deps", "--json", cwd=proj).stdout)
    hit = got["results"][0]
    assert (hit["root"], hit["path"], hit["crate"]) == (str(dep), "src/lib.rs", "scopeguard 1.1.0")
    said = daemon.cli("def", "ScopeGuard", "--deps", cwd=proj).stdout
    assert f"{dep}/src/lib.rs:" in said and "[scopeguard 1.1.0]" in said
    hits = daemon.search("guard", "--mode", "bm25", "--limit", "50")
    assert {h["root"] for h in hits} == {str(proj.resolve())}
    deps_hits = daemon.search("guard", "--mode", "bm25", "--limit", "50", "--deps", "--all")
    assert str(dep) in {h["root"] for h in deps_hits}

    # A second project with the same lock shares the crates' roots.
    other = _project(tmp_path, "other")
    daemon.call("index", path=str(other), deps=True)
    roots = [r["path"] for r in daemon.status()["roots"]]
    assert roots.count(str(dep)) == 1 and len(roots) == 4
    text = daemon.cli("status").stdout
    assert "dependency crate scopeguard 1.1.0 (searched with --deps)" in text

    # The registration survives a restart, and the crate is still left out by default.
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.root_status(dep)["dependency"] == "scopeguard 1.1.0"
    assert daemon.search("guard", "--mode", "bm25", "--all") and all(
        h["root"] != str(dep) for h in daemon.search("guard", "--mode", "bm25", "--all")
    )
