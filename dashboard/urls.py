from django.contrib import admin
from django.urls import include, path

from accounts import language
from dashboard import explorer, overview, views
from dashboard.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("overview/", overview.overview, name="overview"),
    path("explore/", explorer.explore, name="explore"),
    path("explore/calls/", explorer.calls, name="explore_calls"),
    path("accounts/", include("accounts.urls")),
    path("projects/", include("dashboard.project_urls")),
    path("projects/", include("accounts.project_urls")),
    path("", include("usage.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    # Django's set_language, also saving the choice on the account (accounts.language).
    path("i18n/setlang/", language.set_language, name="set_language"),
]
