from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.shortcuts import render

from accounts.models import Project


@login_required
def project_list(request: HttpRequest):
    projects = Project.visible_to(request.user)
    return render(request, "dashboard/projects.html", {"projects": projects})
