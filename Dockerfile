# keymeter app image. One image runs the web server (the default CMD), the Celery
# worker and Celery beat; docker-compose.yml shows all three.

# Front-end assets: the same steps as the Makefile's `assets` target (the source map
# too: collectstatic's manifest storage refuses a file whose map is missing).
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund \
 && mkdir -p static/vendor \
 && cp node_modules/chart.js/dist/chart.umd.js node_modules/chart.js/dist/chart.umd.js.map \
       static/vendor/

FROM python:3.11-slim
# Settings find templates/, static/ and staticfiles/ next to the dashboard
# package, so the code runs from /app (PYTHONPATH) rather than from site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    WEB_CONCURRENCY=2

RUN useradd --create-home --uid 10001 --user-group keymeter
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so code changes reuse this layer.
COPY pyproject.toml README.md ./
RUN mkdir dashboard accounts usage \
 && touch dashboard/__init__.py accounts/__init__.py usage/__init__.py \
 && pip install . \
 && rm -rf dashboard accounts usage build *.egg-info

COPY . .
COPY --from=assets /src/static/vendor/ static/vendor/
RUN pip install --no-deps . && rm -rf build *.egg-info

# Settings refuse to start without secrets once DATABASE_URL is set; these
# throw-away values exist for this one build step and are not kept in the image.
RUN DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    SECRET_KEY=build-time-only-not-a-secret \
    VAULT_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    python manage.py collectstatic --noinput --verbosity 0 \
 && rm -f /tmp/build.sqlite3

# The code and static files stay root-owned: the app cannot rewrite itself. Only
# var/spool is writable: the gateway spools call records there while Redis is down.
RUN mkdir -p var/spool && chown -R keymeter:keymeter var
USER keymeter
EXPOSE 8000

# /healthz is 200 when the database and Redis answer. The request names the first
# ALLOWED_HOSTS entry so Django's host check accepts it. Worker and beat
# containers replace this probe with their own (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD python -c "\
import os, urllib.request as r; \
h = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.'); \
h = 'localhost' if h in ('', '*') else h; \
r.urlopen(r.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=4)"

CMD ["sh", "-c", "exec uvicorn dashboard.asgi:application --host 0.0.0.0 --port 8000 --workers \"${WEB_CONCURRENCY:-2}\""]
