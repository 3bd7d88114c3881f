"""ASGI entry point: Django for the site and API.

The gateway (usage.gateway) is mounted at /v1/ beside Django once it exists,
so the hot path skips Django's request cycle.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application = get_asgi_application()
