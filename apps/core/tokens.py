"""Issue and check API tokens (`Authorization: Bearer <token>`)."""

import hashlib
import secrets

from django.contrib.auth.models import User
from django.utils import timezone

from apps.core.models import ApiToken

TOKEN_BYTES = 32
PREFIX_LENGTH = 8
LAST_USED_RESOLUTION_SECONDS = 60  # write last_used_at at most once a minute per token


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, user: User, name: str = "default") -> str:
    """Store a new token for `user` and return it; this is the only time it is visible."""
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    ApiToken.objects.create(user=user, name=name, prefix=raw[:PREFIX_LENGTH], digest=_digest(raw))
    return raw


def user_for_token(raw: str) -> User | None:
    """The active user owning `raw`, or None for an unknown token."""
    if not raw or len(raw) > 200:
        return None
    # Two indexed lookups: a select_related join scans the users collection on SecantusDB.
    token = ApiToken.objects.filter(digest=_digest(raw)).only("id", "user_id", "last_used_at").first()
    if token is None:
        return None
    user = User.objects.filter(pk=token.user_id).first()  # by _id alone: an $and of two filters is never indexed
    if user is None or not user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return user
