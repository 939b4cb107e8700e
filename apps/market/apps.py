from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "apps.market"
    label = "market"
    verbose_name = "Market"

    def ready(self) -> None:
        from apps.market import signals  # noqa: F401  connects the cache invalidation on symbol changes
