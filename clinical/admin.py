"""Account administration in the Django admin, for the admin role: users, their roles, active, password.

Every change is audited (clinical.accounts; role changes by the signal in clinical.auth). An administrator who
is not a superuser cannot grant superuser or per-user permissions, edit a superuser's account, assign a group
that is not one of the roles, or edit the roles' permissions (they are defined in clinical.roles).
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group, User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.shortcuts import redirect
from django.urls import reverse

from clinical import accounts
from clinical.roles import ROLES

SUPERUSER_ONLY_FIELDS = ("user_permissions",)


class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "roles", "is_active", "last_login")
    list_filter = ("is_active", "groups", "is_staff")
    readonly_fields = ("last_login", "date_joined")
    actions = ("deactivate", "activate")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, obj: User) -> str:
        return ", ".join(sorted(g.name for g in obj.groups.all())) or "—"

    # The escalation guard. Fields left out of the fieldsets or made read-only are not in the form, so a
    # crafted POST that sets them is ignored.
    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [(name, {**opts, "fields": tuple(f for f in opts["fields"] if f not in SUPERUSER_ONLY_FIELDS)})
                for name, opts in fieldsets]

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else (*readonly, "is_superuser")

    def has_change_permission(self, request, obj=None):
        # Resetting a superuser's password would hand over the superuser account.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = Group.objects.filter(name__in=ROLES).order_by("name")
        return super().formfield_for_manytomany(db_field, request=request, **kwargs)

    # Auditing: changeform_view and add_view run in a transaction, so the events commit with the change.
    def save_model(self, request, obj, form, change):
        before = accounts.user_state(User.objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        accounts.user_changes_audit(actor=request.user, user=obj, before=before)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        accounts.user_admin_role_staff_ensure(actor=request.user, user=form.instance)

    def user_change_password(self, request, id, form_url=""):
        with transaction.atomic(using=router.db_for_write(User)):
            user = self.get_object(request, unquote(id))
            before = user.password if user is not None else None
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and user is not None:
                user.refresh_from_db(fields=["password"])
                if user.password != before:
                    accounts.user_password_set_audit(actor=request.user, user=user)
        return response

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate(self, request, queryset):
        self._set_active(request, queryset.exclude(pk=request.user.pk), active=False)

    @admin.action(description="Activate selected users", permissions=["change"])
    def activate(self, request, queryset):
        self._set_active(request, queryset, active=True)

    def _set_active(self, request, queryset, *, active: bool) -> None:
        if not request.user.is_superuser:
            queryset = queryset.filter(is_superuser=False)
        changed = sum(accounts.user_active_set(actor=request.user, user=u, active=active) for u in queryset)
        self.message_user(request, f"{changed} user(s) {'activated' if active else 'deactivated'}.",
                          messages.SUCCESS)


class GroupAdmin(DjangoGroupAdmin):
    """The roles, read-only: their permissions are set in code by roles_ensure (`manage.py setup_roles`)."""

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)


admin.site.unregister(User)
admin.site.register(User, UserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, GroupAdmin)


def admin_login(request, extra_context=None):
    """The admin has no login form of its own: it sends people to /login/, so a login for the admin is throttled
    and audited exactly as every other (the admin's own form was not throttled)."""
    target = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index")
    if admin.site.has_permission(request):
        return redirect(reverse("admin:index"))
    if request.user.is_authenticated:
        raise PermissionDenied  # signed in without admin rights: a login form would only loop back here
    return redirect_to_login(target, reverse("login"))


# AdminSite.get_urls routes "login/" to self.login when ecgapp.urls first reads admin.site.urls, after this runs.
admin.site.login = admin_login
