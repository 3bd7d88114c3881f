"""ASGI entry point: the gateway at /v1/, Django for everything else.

The gateway (usage.gateway) uses Django's settings and models but not its request
cycle: on the hot path that cycle would cost more than the proxying itself.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

from usage.gateway import gateway  # noqa: E402

django_app = get_asgi_application()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        await gateway(scope, receive, send)
    elif scope["type"] == "lifespan":
        await gateway.lifespan(receive, send)  # Django has no lifespan support
    else:
        await django_app(scope, receive, send)
