from __future__ import annotations

import redis

from dashboard import redis_client


def test_it_answers_ok_when_db_and_redis_answer(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_names_redis_when_redis_is_down(client, db, settings, monkeypatch):
    # A port nothing listens on: a real refused connection, not a mock.
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    monkeypatch.setattr(redis_client, "get_redis", lambda: dead)
    monkeypatch.setattr("dashboard.views.get_redis", lambda: dead)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "down": ["redis"]}
