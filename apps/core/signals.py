"""A revoked token, or a changed or deleted user, stops authenticating at once in every process."""

from typing import Any

from django.contrib.auth.models import User
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.core.cache import invalidate_after_commit
from apps.core.models import ApiToken
from apps.core.tokens import CACHE_NAMESPACE


@receiver(post_delete, sender=ApiToken)
def token_revoked(instance: ApiToken, **kwargs: Any) -> None:
    invalidate_after_commit(CACHE_NAMESPACE, instance.digest)


@receiver([post_save, post_delete], sender=User)
def token_owner_changed(instance: User, **kwargs: Any) -> None:
    """Deactivated, renamed, demoted or deleted: every cached context of the user's tokens goes."""
    for digest in ApiToken.objects.filter(user_id=instance.pk).values_list("digest", flat=True):
        invalidate_after_commit(CACHE_NAMESPACE, digest)
