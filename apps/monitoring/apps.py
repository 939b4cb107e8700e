import sys
import threading

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from apps.monitoring.indexes import log_missing_indexes
        from apps.monitoring.instrumentation import install

        role = install(argv=sys.argv)
        if role in {"web", "worker"}:
            # Off the start-up path: the check must never delay or fail start-up.
            threading.Thread(target=log_missing_indexes, name="index-check", daemon=True).start()
