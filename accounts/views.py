from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import audit, tokens
from accounts.forms import ApiTokenForm, LoginForm
from accounts.models import ApiToken, User


class AuthenticatedHttpRequest(HttpRequest):
    user: User  # the views below are behind login_required


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    form_class = LoginForm  # type: ignore[assignment]
    redirect_authenticated_user = True

    def form_invalid(self, form: LoginForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_invalid(form)  # type: ignore[arg-type]
        response.status_code = 429 if form.throttled else 400
        return response


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("accounts:login")


def _render_tokens(
    request: AuthenticatedHttpRequest, form: ApiTokenForm, status: int = 200
) -> HttpResponse:
    api_tokens = ApiToken.objects.filter(user=request.user).order_by("revoked_at", "-created_at")
    ctx = {"api_tokens": api_tokens, "form": form}
    return render(request, "accounts/tokens.html", ctx, status=status)


@never_cache
@login_required
def api_tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_tokens(request, ApiTokenForm())
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _render_tokens(request, form, status=400)
    token, plaintext = tokens.create_api_token(
        request.user, form.cleaned_data["name"], ip=audit.client_ip(request)
    )
    # Shown in this response only: it is stored as a digest and never available again.
    # never_cache: the browser and proxies must not keep this page.
    return render(request, "accounts/token_created.html", {"token": token, "plaintext": plaintext})


@require_POST
@login_required
def revoke_api_token(request: AuthenticatedHttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    tokens.revoke_api_token(token, ip=audit.client_ip(request))
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("accounts:tokens")
