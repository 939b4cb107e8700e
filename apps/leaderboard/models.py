"""The precomputed leaderboard: one snapshot per rebuild; requests read only the newest one."""

from django.db import models


class LeaderboardSnapshot(models.Model):
    """Rankings by total value and by return at `computed_at`.

    Each ranking is a list of {"rank", "username", "total_value", "return_percent"}
    (money as strings, exact), already sorted with ties broken by username, so a
    page is a slice.
    """

    computed_at = models.DateTimeField(db_index=True)
    trader_count = models.PositiveIntegerField()
    by_value = models.JSONField(default=list)
    by_return = models.JSONField(default=list)

    class Meta:
        ordering = ["-computed_at"]
        get_latest_by = "computed_at"

    def __str__(self) -> str:
        return f"Leaderboard of {self.trader_count} traders at {self.computed_at:%Y-%m-%d %H:%M:%S}"
