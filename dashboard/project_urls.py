from django.urls import path

from dashboard import project_views as views

app_name = "dashboard"

urlpatterns = [
    path("", views.project_list, name="projects"),
]
