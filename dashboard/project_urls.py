from django.urls import path

from dashboard import project_views as views

app_name = "dashboard"

urlpatterns = [
    path("", views.project_list, name="projects"),
    path("<slug:slug>/", views.project_detail, name="project"),
    path("<slug:slug>/environments/", views.add_environment, name="add_environment"),
    path("<slug:slug>/keys/", views.add_key, name="add_key"),
    path("<slug:slug>/keys/<int:key_id>/rotate/", views.rotate_key, name="rotate_key"),
    path("<slug:slug>/keys/<int:key_id>/revoke/", views.revoke_key, name="revoke_key"),
    path("<slug:slug>/tokens/", views.create_token, name="create_token"),
    path("<slug:slug>/tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke_token"),
]
