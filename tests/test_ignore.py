from __future__ import annotations

from pathlib import Path

from daemon.ignore import IgnoreRules
from daemon.mounts import kernel_mount_of, kernel_mounts


def make(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def walked(root: Path) -> list[str]:
    return sorted(rel for rel, _st in IgnoreRules(root).walk())


def test_only_rust_files_and_never_target_or_git(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "src/lib.rs": "",
            "README.md": "",
            "target/debug/build.rs": "",
            ".git/hooks/x.rs": "",
            "src/nested/target/gen.rs": "",
        },
    )
    assert walked(tmp_path) == ["src/lib.rs"]


def test_nested_gitignore_with_negation(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".gitignore": "generated/\n*.gen.rs\n",
            "src/a.rs": "",
            "src/b.gen.rs": "",
            "generated/x.rs": "",
            "src/keep/.gitignore": "!*.gen.rs\n",
            "src/keep/c.gen.rs": "",
            "src/.ignore": "/secret.rs\n",
            "src/secret.rs": "",
            "src/deep/secret.rs": "",
        },
    )
    assert walked(tmp_path) == ["src/a.rs", "src/deep/secret.rs", "src/keep/c.gen.rs"]


def test_is_ignored_agrees_with_walk(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "out/\n", "out/a.rs": "", "src/a.rs": ""})
    rules = IgnoreRules(tmp_path)
    assert rules.is_ignored("out/a.rs", False)
    assert rules.is_ignored("out", True)
    assert rules.is_ignored("target/x.rs", False)
    assert not rules.is_ignored("src/a.rs", False)


def test_forget_rereads_changed_rules(tmp_path: Path) -> None:
    make(tmp_path, {"src/a.rs": "", "src/b.rs": ""})
    rules = IgnoreRules(tmp_path)
    assert not rules.is_ignored("src/b.rs", False)
    (tmp_path / "src" / ".gitignore").write_text("b.rs\n")
    rules.forget("src")
    assert rules.is_ignored("src/b.rs", False)


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make(outside, {"secret.rs": ""})
    root = tmp_path / "root"
    make(root, {"src/lib.rs": ""})
    (root / "src" / "link").symlink_to(outside, target_is_directory=True)
    (root / "src" / "loop").symlink_to(root, target_is_directory=True)
    (root / "src" / "file_link.rs").symlink_to(outside / "secret.rs")
    assert walked(root) == ["src/lib.rs"]


def test_kernel_file_systems_are_never_walked(tmp_path: Path) -> None:
    """A root of `/` (indexed with --yes) leaves /proc, /sys and /dev out: their mount
    points, read from /proc/self/mounts (escaped spaces included), are not entered."""
    mounts = tmp_path / "mounts"
    root = tmp_path / "root"
    mounts.write_text(
        f"proc {root}/proc proc rw,nosuid 0 0\n"
        f"sysfs {root}/my\\040sys sysfs rw 0 0\n"
        f"/dev/vda1 {root}/home ext4 rw 0 0\n"
        f"tmpfs {root}/run tmpfs rw 0 0\n"
    )
    make(root, {"proc/1/x.rs": "", "my sys/y.rs": "", "home/a/lib.rs": "", "run/b.rs": ""})
    found = kernel_mounts(mounts)
    assert found == [root / "proc", root / "my sys"]
    assert kernel_mount_of(root / "proc" / "1", found) == root / "proc"
    assert kernel_mount_of(root / "home", found) is None
    assert sorted(r for r, _ in IgnoreRules(root, found).walk()) == ["home/a/lib.rs", "run/b.rs"]
    assert kernel_mounts(tmp_path / "no such table") == []
