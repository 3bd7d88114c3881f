"""Pages of the usage app: a project's budget and alerts, the price table and the
cost calculator."""

from django.urls import path

from usage import views

app_name = "usage"

urlpatterns = [
    path("prices/", views.prices, name="prices"),
    path("calculator/", views.calculator, name="calculator"),
    path("projects/<slug:slug>/budget/", views.budget, name="budget"),
    path("projects/<slug:slug>/budget/remove/", views.remove_budget, name="remove_budget"),
    path("projects/<slug:slug>/alerts/", views.alerts, name="alerts"),
]
