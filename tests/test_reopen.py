"""The backoff of roots that failed to open (`daemon.reopen`); the daemon trying them
again on a real full disk is in tests/test_durability.py."""

from __future__ import annotations

from daemon.reopen import FailedRoots, retry_delay


def test_the_delay_doubles_from_five_seconds_to_five_minutes() -> None:
    assert [retry_delay(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert retry_delay(10_000) == 300  # no overflow after days of tries


def test_each_failed_try_counts_and_a_forgotten_root_is_not_tried() -> None:
    roots = FailedRoots()
    assert roots.failed("/a", "full").attempts == 1
    tried: list[str] = []

    def fails() -> None:
        tried.append("/a")
        raise OSError(28, "No space left on device")

    roots.retry("/a", fails)
    entry = roots.get("/a")
    assert entry is not None and entry.attempts == 2 and "No space" in entry.error
    assert entry.to_json("/a")["attempts"] == 2
    assert roots.due() == []  # 10 s away
    roots.retry("/a", lambda: tried.append("/a"))
    assert "/a" not in roots and tried == ["/a", "/a"]
    roots.retry("/a", lambda: tried.append("again"))  # removed or opened: not tried
    assert tried == ["/a", "/a"]
