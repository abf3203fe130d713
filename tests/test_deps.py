"""`rcmd index --deps` (issue 23.4): a real lock file, real crates from Debian's packages,
one shared read-only root per crate version, reached by `--deps` only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.deps import DEBIAN_REGISTRY, declared_crates, dependencies, find_source, locked_packages
from ipc.errors import BadRequest
from tests.conftest import Daemon, skip_or_fail, wait_until

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
        skip_or_fail("needs Debian's crate sources: apt install librust-{scopeguard,either}-dev")


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
    # The empty answer's next command is the one that finds it, not a text search that
    # leaves the crates out too.
    told = daemon.cli("def", "ScopeGuard", cwd=proj).stderr
    assert told.endswith("its dependency crates have 1: rcmd def ScopeGuard --deps\n"), told
    got = json.loads(daemon.cli("def", "ScopeGuard", "--deps", "--json", cwd=proj).stdout)
    hit = got["results"][0]
    assert (hit["root"], hit["path"], hit["crate"]) == (str(dep), "src/lib.rs", "scopeguard 1.1.0")
    said = daemon.cli("def", "ScopeGuard", "--deps", cwd=proj).stdout
    assert f"{dep}/src/lib.rs:" in said and "[scopeguard 1.1.0]" in said
    hits = daemon.search("guard", "--mode", "bm25", "--limit", "50")
    assert {h["root"] for h in hits} == {str(proj.resolve())}
    deps_hits = daemon.search("guard", "--mode", "bm25", "--limit", "50", "--deps", "--all")
    assert str(dep) in {h["root"] for h in deps_hits}
    # A crate's search hits name it, as its navigation hits do (README); the project's don't.
    assert {h.get("crate") for h in deps_hits if h["root"] == str(dep)} == {"scopeguard 1.1.0"}
    assert all("crate" not in h for h in deps_hits if h["root"] != str(dep))

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


BROKEN = [
    ("Cargo.lock", "version = 3\n\n[[package]\nname = 'x'\n", "not valid TOML: Expected ']]'"),
    ("Cargo.lock", "version = 3\npackage = 5\n", "array of [[package]] tables"),
    ("Cargo.lock", "[[package]]\nname = 'x'\nsource = 'registry+https://x'\n", "name and version"),
    ("Cargo.lock", "package = [5]\n", "[[package]] entry is not a table"),
    ("Cargo.toml", "[package\n", "not valid TOML: Expected ']'"),
    ("Cargo.lock", "a = " + "[" * 5000 + "]" * 5000, "not valid TOML: nested too deeply"),
    ("Cargo.toml", "a = " + "{b = " * 5000 + "1" + "}" * 5000, "nested too deeply"),
    ("Cargo.toml", "dependencies = 5\n", "[dependencies] is not a table"),
    ("Cargo.toml", "[target]\nunix = 3\n", "[target.unix] is not a table"),
    ("Cargo.toml", "[dependencies]\nx = { package = 3 }\n", "`package` is not a string"),
]


@pytest.mark.parametrize(("name", "text", "problem"), BROKEN)
def test_a_broken_lock_or_manifest_is_a_bad_request_naming_it(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    (tmp_path / "Cargo.toml").write_text(MANIFEST)  # beside a lock file, never read
    (tmp_path / name).write_text(text)
    with pytest.raises(BadRequest) as exc:
        dependencies(tmp_path, {"HOME": str(tmp_path)})
    said = str(exc.value)
    assert said.startswith(f"{tmp_path / name}: ") and problem in said and "\n" not in said


def test_a_lock_file_of_terabytes_is_refused_unread(tmp_path: Path) -> None:
    """A sparse Cargo.lock of 1 TB (no disk used) was read whole into memory."""
    with open(tmp_path / "Cargo.lock", "wb") as f:
        f.truncate(1 << 40)
    with pytest.raises(BadRequest) as exc:
        dependencies(tmp_path, {"HOME": str(tmp_path)})
    assert "larger than 64 MB" in str(exc.value)


def test_index_deps_with_a_broken_lock_indexes_the_project_without_them(
    daemon: Daemon, tmp_path: Path
) -> None:
    """The reported case: `[[package]` unclosed was an internal error after the root had
    been registered. Now the project is indexed, no crate is, and both the command and
    status say why."""
    proj = _project(tmp_path, "app")
    lock = proj / "Cargo.lock"
    lock.write_text("version = 3\n\n[[package]\nname = 'either'\n")
    proc = daemon.cli("index", str(proj), "--deps")
    warning = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warning) == 1, proc.stderr
    assert warning[0].startswith("rcmd: warning: dependencies not indexed (the project is): ")
    assert f"{lock}: not valid TOML: Expected ']]'" in warning[0]
    assert "dependencies:" not in proc.stdout
    daemon.wait_idle(proj)
    roots = daemon.status()["roots"]
    assert [r["path"] for r in roots] == [str(proj)] and roots[0]["chunks"] > 0
    assert roots[0]["deps_skipped"].startswith(f"{lock}: ")
    assert f"dependencies not indexed: {lock}: " in daemon.cli("status").stdout

    lock.write_text("version = 3\n")  # fixed: no registry packages, nothing skipped
    reply = daemon.call("index", path=str(proj), deps=True)
    assert reply["deps"] == {"roots": [], "missing": []}
    assert daemon.root_status(proj)["deps_skipped"] is None


def _lock_of(*crates: str) -> str:
    """A Cargo.lock of the app and `crates` ("name version") from the registry."""
    packages = ['[[package]]\nname = "app"\nversion = "0.1.0"\n']
    for crate in crates:
        name, version = crate.split()
        packages.append(
            f'[[package]]\nname = "{name}"\nversion = "{version}"\n'
            'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
        )
    return "version = 3\n\n" + "\n".join(packages)


def test_a_changed_lock_moves_the_project_to_its_new_crates(
    registry: None, daemon: Daemon, tmp_path: Path
) -> None:
    """`cargo update` or a new dependency changed Cargo.lock, and `--deps` went on
    answering from the crates of the old one until `index --deps` was run again. Now
    the watcher's batch notices the lock changed: new crates are indexed, one no
    project uses is removed, a broken lock keeps the last good crates and says why
    (across a restart too), and a lock changed while the daemon was down is read at
    its start."""
    proj = _project(tmp_path, "app")
    lock = proj / "Cargo.lock"
    lock.write_text(_lock_of("scopeguard 1.1.0"))
    guard, either = ((DEBIAN_REGISTRY / c).resolve() for c in CRATES)
    daemon.call("index", path=str(proj), deps=True)

    def roots() -> set[str]:
        return {r["path"] for r in daemon.status()["roots"]}

    assert roots() == {str(proj), str(guard)}
    lock.write_text(_lock_of("either 1.6.1"))
    wait_until(lambda: roots() == {str(proj), str(either)}, timeout=60)
    daemon.wait_idle(either)
    got = json.loads(daemon.cli("def", "Either", "--deps", "--json", cwd=proj).stdout)
    assert {h["crate"] for h in got["results"]} == {"either 1.6.1"}

    lock.write_text("version = 3\n\n[[package]\n")
    wait_until(lambda: daemon.root_status(proj)["deps_skipped"] is not None, timeout=60)
    assert roots() == {str(proj), str(either)}
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.root_status(proj)["deps_skipped"].startswith(f"{lock}: not valid TOML")

    assert daemon.stop() == 0
    lock.write_text(_lock_of("scopeguard 1.1.0", "either 1.6.1"))
    daemon.start()
    wait_until(
        lambda: (
            roots() == {str(proj), str(guard), str(either)}
            and daemon.root_status(proj)["deps_skipped"] is None
        ),
        timeout=60,
    )

    # Removing the project removes the crates no other project uses.
    other = _project(tmp_path, "other")
    (other / "Cargo.lock").write_text(_lock_of("either 1.6.1"))
    daemon.call("index", path=str(other), deps=True)
    daemon.cli("remove", str(proj))
    assert roots() == {str(other), str(either)}


def test_a_deps_file_from_before_projects_were_kept_reads_its_projects(tmp_path: Path) -> None:
    """The projects that used crates are taken from `used_by`, with no manifest stat, so
    their crates are read again at their first batch."""
    from daemon.dep_roots import DependencyRoots

    file = tmp_path / "deps.json"
    file.write_text(
        json.dumps({"roots": {"/reg/a-1.0.0": {"crate": "a 1.0.0", "used_by": ["/p"]}}})
    )
    deps = DependencyRoots(file)
    assert deps.wants_deps(Path("/p")) and deps.manifest(Path("/p")) == []
    assert deps.skipped(Path("/p")) is None and not deps.wants_deps(Path("/q"))
    assert not deps.release(Path("/reg/a-1.0.0"), Path("/p"))
    assert json.loads(file.read_text())["roots"]["/reg/a-1.0.0"]["used_by"] == []
