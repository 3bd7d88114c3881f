"""Start-up from the environment: each case imports the settings in a fresh Python
with exactly the environment given, as a server process would."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgres://keymeter@127.0.0.1:5432/keymeter"

# A repository .env would fill in what a case leaves out, so the child ignores it.
# It prints the settings a user would notice as JSON.
PROBE = """
import json, environ
environ.Env.read_env = classmethod(lambda cls, *a, **k: None)
import django
django.setup()
from django.conf import settings
from django.db import connection
from django.utils import timezone
if settings.LOCAL_MODE:
    connection.ensure_connection()
print(json.dumps({
    "local_mode": settings.LOCAL_MODE,
    "debug": settings.DEBUG,
    "database": {k: str(v) for k, v in settings.DATABASES["default"].items()
                 if k in ("ENGINE", "NAME", "HOST", "PORT")},
    "vault_keys": settings.VAULT_KEYS,
    "time_zone": settings.TIME_ZONE,
    "celery_timezone": settings.CELERY_TIMEZONE,
    "current_timezone": timezone.get_current_timezone_name(),
    "email": [settings.EMAIL_BACKEND, getattr(settings, "EMAIL_HOST", None),
              getattr(settings, "EMAIL_PORT", None)],
    "secure_cookies": settings.SESSION_COOKIE_SECURE,
}))
"""


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "KEYMETER_VAR_DIR": str(tmp_path / "var"),
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_of(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_it_refuses_to_start_without_secret_key(tmp_path):
    proc = start(tmp_path, DATABASE_URL=PG_URL, VAULT_KEYS=Fernet.generate_key().decode())
    assert proc.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in proc.stderr


def test_it_refuses_to_start_without_vault_keys(tmp_path):
    proc = start(tmp_path, DATABASE_URL=PG_URL, SECRET_KEY="s" * 50)
    assert proc.returncode != 0
    assert "ImproperlyConfigured: VAULT_KEYS is not set" in proc.stderr


def test_it_rejects_a_malformed_vault_key_without_echoing_it(tmp_path):
    good = Fernet.generate_key().decode()
    bad = "not-a-fernet-key-but-maybe-a-secret"
    proc = start(tmp_path, DATABASE_URL=PG_URL, SECRET_KEY="s" * 50, VAULT_KEYS=f"{good},{bad}")
    assert proc.returncode != 0
    assert "VAULT_KEYS entry #2 is not a valid Fernet key" in proc.stderr
    assert bad not in proc.stderr
    assert good not in proc.stderr


def test_it_starts_as_a_deployment_with_everything_set(tmp_path):
    keys = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    s = settings_of(
        start(
            tmp_path,
            DATABASE_URL=PG_URL,
            SECRET_KEY="s" * 50,
            VAULT_KEYS=",".join(keys),
            EMAIL_URL="smtp://mailpit:1025",
        )
    )
    assert s["local_mode"] is False
    assert s["debug"] is False
    assert s["secure_cookies"] is True
    assert s["database"]["ENGINE"] == "django.db.backends.postgresql"
    assert s["database"]["HOST"] == "127.0.0.1"
    assert s["vault_keys"] == keys
    # The compose file's EMAIL_URL reaches Mailpit's SMTP port.
    assert s["email"] == ["django.core.mail.backends.smtp.EmailBackend", "mailpit", 1025]
    # Nothing is generated for a deployment.
    assert not (tmp_path / "var").exists()


def test_it_starts_in_local_mode_with_nothing_set(tmp_path):
    var = tmp_path / "var"
    proc = start(tmp_path)
    s = settings_of(proc)
    assert s["local_mode"] is True
    assert s["debug"] is True
    assert s["database"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["database"]["NAME"] == str(var / "keymeter.sqlite3")
    assert (var / "keymeter.sqlite3").exists()

    vault_key = var / "vault.key"
    assert stat.S_IMODE(vault_key.stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600
    assert s["vault_keys"] == [vault_key.read_text().strip()]
    assert "WARNING" in proc.stderr
    assert str(vault_key) in proc.stderr
    assert "lose this file and they are lost" in proc.stderr


def test_it_keeps_the_local_vault_key_across_restarts(tmp_path):
    first = settings_of(start(tmp_path))
    again = start(tmp_path)
    assert settings_of(again)["vault_keys"] == first["vault_keys"]
    assert "WARNING" not in again.stderr


def test_it_honours_time_zone(tmp_path):
    s = settings_of(start(tmp_path, TIME_ZONE="Asia/Shanghai"))
    assert s["time_zone"] == "Asia/Shanghai"
    assert s["celery_timezone"] == "Asia/Shanghai"
    assert s["current_timezone"] == "Asia/Shanghai"
