"""Any change to the listed universe drops the cached symbol lists (Property 34)."""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.core.cache import invalidate_after_commit
from apps.market.models import Symbol


@receiver([post_save, post_delete], sender=Symbol)
def symbols_changed(**kwargs: Any) -> None:
    invalidate_after_commit("symbols")
