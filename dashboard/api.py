"""The JSON API under /api/v1/: one NinjaAPI, a router per app, kmu_ bearer auth."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as SchemaValidationError
from ninja.security import HttpBearer

from accounts import tokens


class ApiTokenAuth(HttpBearer):
    """Authorization: Bearer kmu_… → request.auth is the token's user."""

    def authenticate(self, request: HttpRequest, token: str):
        user = tokens.user_for_api_token(token)
        if user is not None:
            request.user = user
        return user


# Every operation can answer these two, from the handlers below; the schema says so.
_COMMON_ERRORS = {
    "401": {
        "description": "Missing or unknown token",
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["detail"],
            "properties": {"detail": {"type": "string"}},
        }}},
    },
    "422": {
        "description": "The request does not match the schema",
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["detail"],
            "properties": {"detail": {"type": "array", "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {}},
                               "msg": {"type": "string"}, "type": {"type": "string"}},
            }}},
        }}},
    },
}  # fmt: skip


class KeymeterAPI(NinjaAPI):
    def get_openapi_schema(self, **kwargs):  # type: ignore[override]
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, response in _COMMON_ERRORS.items():
                    if status not in responses and int(status) not in responses:
                        responses[status] = response
        return schema


api = KeymeterAPI(
    title="keymeter API",
    version="1",
    urls_namespace="api",
    auth=ApiTokenAuth(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def _validation_message(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    return api.create_response(request, {"detail": _validation_message(exc)}, status=400)


@api.exception_handler(PermissionDenied)
def on_permission_denied(request, exc: PermissionDenied):
    message = str(exc) or "You do not have permission to do this."
    return api.create_response(request, {"detail": message}, status=403)


@api.exception_handler(Http404)
def on_not_found(request, exc: Http404):
    return api.create_response(request, {"detail": str(exc) or "Not found."}, status=404)


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request, exc):
    return api.create_response(
        request,
        {"detail": "Send a personal API token: Authorization: Bearer kmu_…"},
        status=401,
    )


@api.exception_handler(SchemaValidationError)
def on_schema_error(request, exc: SchemaValidationError):
    # Only where and what: pydantic's "input" and "ctx" can repeat the submitted
    # value, which may be a provider key.
    errors = [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors
    ]
    return api.create_response(request, {"detail": errors}, status=422)


from accounts.api import router as accounts_router  # noqa: E402

api.add_router("/", accounts_router)

from usage.api import router as usage_router  # noqa: E402

api.add_router("/", usage_router)
