"""An account or order edited outside the order path (admin, commands) drops its cached copy (Property 34).

Orders write with raw collection calls and invalidate the account themselves (services._execute).
"""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.core.cache import invalidate_after_commit
from apps.portfolio.models import Holding, Order, Trader
from apps.portfolio.selectors import account_key, recent_orders_key, trader_key


@receiver([post_save, post_delete], sender=Trader)
def trader_changed(instance: Trader, **kwargs: Any) -> None:
    invalidate_after_commit("profiles", account_key(instance.user_id))
    invalidate_after_commit("profiles", recent_orders_key(instance.user_id))
    invalidate_after_commit("profiles", trader_key(instance.user_id))


@receiver([post_save, post_delete], sender=Order)
def order_changed(instance: Order, created: bool = False, **kwargs: Any) -> None:
    """An order edited or deleted (the admin). A new one comes from the order path, which invalidates itself
    (without the query this would cost inside its transaction)."""
    if created:
        return
    user_id = Trader.objects.filter(pk=instance.trader_id).values_list("user_id", flat=True).first()
    if user_id is not None:
        invalidate_after_commit("profiles", recent_orders_key(user_id))


@receiver([post_save, post_delete], sender=Holding)
def holding_changed(instance: Holding, **kwargs: Any) -> None:
    user_id = Trader.objects.filter(pk=instance.trader_id).values_list("user_id", flat=True).first()
    if user_id is not None:
        invalidate_after_commit("profiles", account_key(user_id))
