from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The page composition: the home page, its first-screen data, the chart, warm-up, seed_demo.

    It may import every app; no app imports it (import-linter, .importlinter)."""

    name = "apps.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
