"""The task-definition cache: copies, bounds, expiry, and the persisted file."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitopsd.backends.ecs.tdcache import (
    TaskDefinitionCache,
    cache_file,
    drop_shared,
    namespace_of,
    shared_cache,
)

ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:{}"


def td(n: int, image: str = "busybox", **extra: Any) -> dict[str, Any]:
    return {
        "taskDefinitionArn": ARN.format(n),
        "family": "web",
        "revision": n,
        "containerDefinitions": [{"name": "main", "image": image}],
        "registeredAt": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "tags": [{"key": "gitopsd:app", "value": "web"}],
        **extra,
    }


def test_round_trip_keeps_datetimes_and_hands_out_copies() -> None:
    cache = TaskDefinitionCache()
    cache.put(td(1))
    got = cache.get(ARN.format(1))
    assert got == td(1)
    assert isinstance(got["registeredAt"], datetime)
    got["containerDefinitions"][0]["image"] = "changed by a caller"
    assert cache.get(ARN.format(1)) == td(1)
    assert cache.get(ARN.format(2)) is None
    assert (cache.hits, cache.misses) == (2, 1)


def test_bounded_by_entries_least_recently_used_first() -> None:
    cache = TaskDefinitionCache(max_entries=2)
    cache.put(td(1))
    cache.put(td(2))
    assert cache.get(ARN.format(1)) is not None  # 1 used last: 2 goes first
    cache.put(td(3))
    assert len(cache) == 2
    assert cache.get(ARN.format(2)) is None
    assert cache.get(ARN.format(1)) is not None
    assert cache.get(ARN.format(3)) is not None


def test_bounded_by_bytes() -> None:
    cache = TaskDefinitionCache(max_bytes=1000)
    for n in range(10):
        cache.put(td(n, image="x" * 200))
    assert 0 < len(cache) < 10
    assert cache.get(ARN.format(9)) is not None
    assert cache.get(ARN.format(0)) is None
    cache.put(td(42, image="y" * 2000))  # larger than the whole cache: not kept
    assert cache.get(ARN.format(42)) is None


def test_entries_expire_so_tags_and_status_are_read_again() -> None:
    cache = TaskDefinitionCache(max_age=100.0)
    cache.put(td(1), now=1000.0)
    assert cache.get(ARN.format(1), now=1049.0) is not None  # at least half the age
    assert cache.get(ARN.format(1), now=1101.0) is None  # at most the whole age


def test_forget_and_what_is_not_cached() -> None:
    cache = TaskDefinitionCache()
    cache.put(td(1))
    cache.forget(ARN.format(1))
    assert cache.get(ARN.format(1)) is None
    cache.put({"family": "no-arn"})
    cache.put(td(2, extra=object()))  # not plain data: never cached wrong
    assert len(cache) == 0


def test_saved_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "tds.json.z"
    cache = TaskDefinitionCache("ns", path=path)
    assert not cache.save()  # nothing changed: nothing written
    for n in range(3):
        cache.put(td(n))
    assert cache.save()
    assert not cache.save()
    assert [p.name for p in path.parent.iterdir()] == ["tds.json.z"]  # no temporary left

    again = TaskDefinitionCache("ns", path=path)
    assert again.load() == 3
    assert again.get(ARN.format(2)) == td(2)
    assert not again.dirty


def test_a_damaged_or_foreign_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "tds.json.z"
    cache = TaskDefinitionCache("endpoint-a", path=path)
    cache.put(td(1))
    cache.save()
    assert TaskDefinitionCache("endpoint-b", path=path).load() == 0  # another endpoint's
    for damage in (b"", b"garbage", zlib.compress(b"{not json"), zlib.compress(b"[1, 2]")):
        path.write_bytes(damage)
        fresh = TaskDefinitionCache("endpoint-a", path=path)
        assert fresh.load() == 0
        fresh.put(td(1))
        assert fresh.save()  # replaced by a good one
        assert TaskDefinitionCache("endpoint-a", path=path).load() == 1


def test_one_shared_cache_per_endpoint_and_state_directory(tmp_path: Path) -> None:
    drop_shared()
    try:
        ns = namespace_of("http://127.0.0.1:4566/")
        assert ns == namespace_of("http://127.0.0.1:4566") != namespace_of(None)
        a = shared_cache(ns, cache_file(tmp_path / "a", ns))
        assert shared_cache(ns, cache_file(tmp_path / "a", ns)) is a
        assert shared_cache(ns, cache_file(tmp_path / "b", ns)) is not a
        other = namespace_of(None)
        assert cache_file(tmp_path, ns) != cache_file(tmp_path, other)
        a.put(td(7))
        a.save()
        drop_shared()  # a new process: loaded from the file
        assert shared_cache(ns, cache_file(tmp_path / "a", ns)).get(ARN.format(7)) == td(7)
    finally:
        drop_shared()


def test_the_in_sync_memo_is_saved_with_the_cache_for_the_same_code_only(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from gitopsd.backends.ecs import tdcache

    path = tmp_path / "cache.json.z"
    cache = TaskDefinitionCache("ns", path=path)
    key = cache.in_sync.key("Service", {"serviceName": "web"})
    cache.in_sync.put(key, {"serviceName": "web"})
    assert cache.save()  # the memo alone makes the cache worth saving
    assert not cache.save()

    again = TaskDefinitionCache("ns", path=path)
    again.load()
    assert again.in_sync.get(key) == {"serviceName": "web"}
    assert not again.in_sync.dirty

    # Another gitopsd (other code, other botocore models): its memo is not trusted.
    monkeypatch.setattr(tdcache, "comparison_fingerprint", lambda: "other code")
    other = TaskDefinitionCache("ns", path=path)
    other.load()
    assert len(other.in_sync) == 0
