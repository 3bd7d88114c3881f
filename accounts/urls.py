from django.urls import path

from accounts import member_views, password_reset, views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("tokens/", views.api_tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.revoke_api_token, name="revoke_token"),
    *password_reset.urlpatterns,
    path("invite/<str:token>/", member_views.accept, name="invite"),
]
