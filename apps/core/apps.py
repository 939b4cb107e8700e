from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from apps.core import (
            redis,  # noqa: F401  registers the Redis eviction-policy check (Property 22)
            signals,  # noqa: F401  a revoked token is refused at once in every process
        )
