"""Django admin for operators. Secrets are never shown or editable here."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import (
    ApiToken,
    AuditEvent,
    Environment,
    GatewayToken,
    Membership,
    Project,
    ProviderKey,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "name", "language"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    filter_horizontal: list[str] = []
    list_filter = ["is_staff", "is_active"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "rotation_days", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [EnvironmentInline, MembershipInline]


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "masked", "project", "environment", "status", "issued_at",
                    "last_used_at"]
    list_filter = ["status", "kind", "provider"]
    search_fields = ["name", "project__slug", "last4"]
    # secret_encrypted is excluded outright; keys are added through keymeter's own forms.
    fields = ["project", "environment", "name", "kind", "base_url", "masked", "fingerprint",
              "issued_at", "status", "retiring_until", "last_used_at", "created_by"]
    readonly_fields = ["project", "environment", "masked", "fingerprint", "kind", "created_by",
                       "last_used_at", "retiring_until"]

    def has_add_permission(self, request):
        return False


@admin.register(GatewayToken)
class GatewayTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "project", "environment", "created_at", "revoked_at"]
    exclude = ["digest"]
    readonly_fields = ["prefix", "project", "environment", "created_by", "last_used_at"]

    def has_add_permission(self, request):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "created_at", "revoked_at"]
    exclude = ["digest"]
    readonly_fields = ["prefix", "user", "last_used_at"]

    def has_add_permission(self, request):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "project", "action", "target", "ip"]
    list_filter = ["action"]
    search_fields = ["action", "target", "actor__email"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
