from __future__ import annotations

from daemon.merkle import MerkleTree, hash_bytes


def h(s: str) -> bytes:
    return hash_bytes(s.encode())


def test_root_hash_depends_on_content_name_and_place() -> None:
    base = MerkleTree({"src/a.rs": h("a"), "src/b.rs": h("b")})
    same = MerkleTree({"src/b.rs": h("b"), "src/a.rs": h("a")})
    assert base.root_hash == same.root_hash
    assert MerkleTree({"src/a.rs": h("A"), "src/b.rs": h("b")}).root_hash != base.root_hash
    assert MerkleTree({"src/c.rs": h("a"), "src/b.rs": h("b")}).root_hash != base.root_hash
    assert MerkleTree({"lib/a.rs": h("a"), "src/b.rs": h("b")}).root_hash != base.root_hash


def test_incremental_updates_match_a_fresh_build() -> None:
    tree = MerkleTree({"src/a.rs": h("a"), "src/net/b.rs": h("b"), "c.rs": h("c")})
    tree.root_hash  # noqa: B018 (materialize dir hashes before mutating)
    tree.set_file("src/net/b.rs", h("b2"))
    tree.remove_file("c.rs")
    tree.set_file("src/new/d.rs", h("d"))
    fresh = MerkleTree({"src/a.rs": h("a"), "src/net/b.rs": h("b2"), "src/new/d.rs": h("d")})
    assert tree.root_hash == fresh.root_hash


def test_removing_last_file_of_a_dir_prunes_it() -> None:
    tree = MerkleTree({"a/b/c.rs": h("c"), "x.rs": h("x")})
    tree.root_hash  # noqa: B018
    tree.remove_file("a/b/c.rs")
    assert tree.root_hash == MerkleTree({"x.rs": h("x")}).root_hash


def test_diff_add_change_delete_rename() -> None:
    old = MerkleTree({"src/a.rs": h("a"), "src/b.rs": h("b"), "src/net/c.rs": h("c")})
    new = MerkleTree({"src/a.rs": h("a2"), "src/net/c2.rs": h("c"), "src/d.rs": h("d")})
    diff = old.diff(new)
    assert diff.added == ("src/d.rs", "src/net/c2.rs")
    assert diff.changed == ("src/a.rs",)
    assert diff.deleted == ("src/b.rs", "src/net/c.rs")


def test_diff_of_equal_trees_is_empty() -> None:
    files = {f"d{i}/f{j}.rs": h(f"{i}-{j}") for i in range(5) for j in range(5)}
    assert MerkleTree(files).diff(MerkleTree(dict(files))).empty


def test_diff_skips_agreeing_subtrees_as_a_whole() -> None:
    files = {
        f"d{i}/e{k}/f{j}.rs": h(f"{i}-{k}-{j}")
        for i in range(4)
        for k in range(3)
        for j in range(3)
    }
    edited = {**files, "d2/e1/f0.rs": h("edited")}
    diff = MerkleTree(files).diff(MerkleTree(edited))
    assert diff.changed == ("d2/e1/f0.rs",)
    # d0, d1, d3 and d2's e0, e2 agree: five subtrees skipped; "", d2, d2/e1 visited.
    assert diff.dirs_skipped == 5
    assert MerkleTree(files).diff(MerkleTree(dict(files))).dirs_skipped == 1


def test_diff_when_a_file_becomes_a_directory() -> None:
    old = MerkleTree({"x": h("file")})
    new = MerkleTree({"x/y.rs": h("y")})
    diff = old.diff(new)
    assert diff.deleted == ("x",)
    assert diff.added == ("x/y.rs",)


def test_a_file_swapped_for_a_directory_in_either_order_matches_a_fresh_build() -> None:
    """A batch that replaces the file `src/w.rs` by a directory of that name (or the
    reverse) sets the new path before removing the old one: for a moment the name is
    both, and removing one kind must not drop the other."""
    before = {"src/lib.rs": h("lib"), "src/w.rs": h("w")}
    after = {"src/lib.rs": h("lib"), "src/w.rs/x.rs": h("x"), "src/w.rs/y/z.rs": h("z")}
    for old, new in ((before, after), (after, before)):
        sets: list[tuple[str, bytes | None]] = list(new.items())
        removes: list[tuple[str, bytes | None]] = [(p, None) for p in old if p not in new]
        for ops in (sets + removes, removes + sets):
            tree = MerkleTree(old)
            tree.root_hash  # noqa: B018 (materialize dir hashes before mutating)
            for path, digest in ops:
                if digest is None:
                    tree.remove_file(path)
                else:
                    tree.set_file(path, digest)
                tree.root_hash  # noqa: B018 (and in between, as a batch may)
            assert tree.root_hash == MerkleTree(new).root_hash
            assert tree.diff(MerkleTree(new)).empty and MerkleTree(new).diff(tree).empty


def test_any_sequence_of_sets_and_removes_matches_a_fresh_build() -> None:
    """Paths that are files and directories of each other, set and removed at random:
    after every step the tree equals one built fresh from the files it holds."""
    import random

    names = ["a", "a/b", "a/b/c", "a/d", "e", "e/a", "e/a/b"]
    rnd = random.Random(7)
    tree = MerkleTree()
    for _ in range(2000):
        path = rnd.choice(names)
        if rnd.random() < 0.5:
            tree.set_file(path, h(str(rnd.randrange(3))))
        else:
            tree.remove_file(path)
        if rnd.random() < 0.5:
            assert tree.root_hash == MerkleTree(dict(tree.files)).root_hash, sorted(tree.files)


def test_large_files_hash_the_same_with_threads() -> None:
    import blake3

    data = b"fn main() {}\n" * 200_000
    assert hash_bytes(data) == blake3.blake3(data).digest()
