"""API tokens for integrators. Only a SHA-256 digest is stored; the token is shown once."""

from bson import ObjectId
from django.conf import settings
from django.db import models

from apps.core.indexes import LookupIndex


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    user_id: ObjectId
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=12, help_text="The first characters, to tell tokens apart.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Every API request looks its token up by digest; the unique index alone is partial (see LookupIndex).
        indexes = [LookupIndex(fields=["digest", "user"], name="apitoken_digest_lookup")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class DeadLetter(models.Model):
    """A background job that failed its last retry; an operator can inspect and replay it."""

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, unique=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    error = models.TextField()
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    failed_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-failed_at"]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}]"
