"""Project admin pages of the accounts app, under /projects/<slug>/: members and
invitations, the audit log, and the key tools (import, validate, leak scan)."""

from django.urls import path

from accounts import audit_views, key_views, member_views

app_name = "project"

urlpatterns = [
    path("<slug:slug>/members/", member_views.member_list, name="members"),
    path("<slug:slug>/members/<int:user_id>/role/", member_views.set_role, name="set_role"),
    path(
        "<slug:slug>/members/<int:user_id>/remove/",
        member_views.remove_member,
        name="remove_member",
    ),
    path("<slug:slug>/invitations/", member_views.invite, name="invite"),
    path(
        "<slug:slug>/invitations/<int:invitation_id>/resend/",
        member_views.resend_invitation,
        name="resend_invitation",
    ),
    path(
        "<slug:slug>/invitations/<int:invitation_id>/cancel/",
        member_views.cancel_invitation,
        name="cancel_invitation",
    ),
    path("<slug:slug>/audit/", audit_views.audit_log, name="audit"),
    path("<slug:slug>/keys/tools/", key_views.key_tools, name="key_tools"),
    path("<slug:slug>/keys/import/", key_views.import_key, name="import_key"),
    path("<slug:slug>/keys/<int:key_id>/validate/", key_views.validate_key, name="validate_key"),
    path("<slug:slug>/keys/leak-scan/", key_views.leak_scan, name="leak_scan"),
]
