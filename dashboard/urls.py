from django.contrib import admin
from django.urls import include, path

from dashboard import views
from dashboard.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("projects/", include("dashboard.project_urls")),
    path("projects/", include("accounts.project_urls")),
    path("", include("usage.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
]
