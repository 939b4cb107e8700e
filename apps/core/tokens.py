"""Issue and check API tokens (`Authorization: Bearer <token>`).

A token's context (its user's id, name, active and staff flags) is cached under
the token's digest in the two-layer cache, so a request authenticated by token
costs no MongoDB round trip, and usually no Redis one either (the in-process
layer). Revoking a token, or changing or deleting its user, invalidates the
context in every process at once (apps/core/signals.py): the next request
with that token is refused, whichever process serves it.
"""

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from apps.core.cache import cached, invalidate, peek, ttl_for
from apps.core.models import ApiToken

TOKEN_BYTES = 32
# An unknown token's answer is cached briefly: repeats of one bad token cost no query, and a lookup
# that found nothing while the database was coming back (seen in the fault bench's restart) is not
# repeated as 401 for the whole TTL of a known token's context.
UNKNOWN_TOKEN_TTL_SECONDS = 2
PREFIX_LENGTH = 8
TOKEN_MAX_LENGTH = 200
CACHE_NAMESPACE = "tokens"


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, user: User, name: str = "default") -> str:
    """Store a new token for `user` and return it; this is the only time it is visible."""
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    ApiToken.objects.create(user=user, name=name, prefix=raw[:PREFIX_LENGTH], digest=token_digest(raw))
    return raw


@dataclass(frozen=True)
class TokenContext:
    """Who a token speaks for: enough to authenticate, count and authorise a request without a query."""

    user_id: str
    username: str
    is_staff: bool
    is_superuser: bool

    def user(self) -> User:
        """An unsaved User carrying the cached fields (pk, name, flags): what views and services read."""
        from bson import ObjectId

        user = User(
            pk=ObjectId(self.user_id),
            username=self.username,
            is_active=True,
            is_staff=self.is_staff,
            is_superuser=self.is_superuser,
        )
        user._state.adding = False
        user._state.db = "default"
        return user


def _load_context(digest: str) -> dict[str, Any] | None:
    """The context from MongoDB (two indexed lookups), stamping last_used_at; None for no active owner.

    Runs on a cache miss only, so last_used_at has the resolution of the "tokens" TTL.
    """
    token = ApiToken.objects.filter(digest=digest).only("id", "user_id").first()
    if token is None:
        return None
    # By _id alone: a select_related join scans the users collection on SecantusDB.
    user = User.objects.filter(pk=token.user_id).first()
    if user is None or not user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return {
        "user_id": str(user.pk),
        "username": user.get_username(),
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
    }


def _context_ttl(found: dict[str, Any] | None) -> int:
    return ttl_for(CACHE_NAMESPACE) if found is not None else UNKNOWN_TOKEN_TTL_SECONDS


def token_context(raw: str) -> TokenContext | None:
    """The context of an active user's token, or None for an unknown, revoked or inactive one."""
    if not raw or len(raw) > TOKEN_MAX_LENGTH:
        return None
    digest = token_digest(raw)
    found = cached(CACHE_NAMESPACE, digest, lambda: _load_context(digest), ttl=_context_ttl)
    return None if found is None else TokenContext(**found)


async def token_context_async(raw: str) -> TokenContext | None:
    """`token_context` for async code: a cached context without a thread hop; only a miss loads in a thread."""
    if not raw or len(raw) > TOKEN_MAX_LENGTH:
        return None
    hit, found = peek(CACHE_NAMESPACE, token_digest(raw))
    if not hit:
        return await sync_to_async(token_context)(raw)
    return None if found is None else TokenContext(**found)


def user_for_token(raw: str) -> User | None:
    """The active user owning `raw`, or None for an unknown token."""
    context = token_context(raw)
    return None if context is None else context.user()


def token_contexts_invalidate(digests: list[str]) -> None:
    """Forget cached contexts everywhere (after a revoke or a change of their user)."""
    for digest in digests:
        invalidate(CACHE_NAMESPACE, digest)
