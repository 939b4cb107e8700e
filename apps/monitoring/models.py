"""Performance samples (trends that survive restarts), alert rules and the alerts they raise."""

from django.db import models


class MetricSample(models.Model):
    """The key figures at one moment (raw, every few seconds) or averaged over 5 minutes (rollup)."""

    class Resolution(models.IntegerChoices):
        RAW = 0, "raw"
        ROLLUP = 1, "5-minute rollup"

    recorded_at = models.DateTimeField()
    resolution = models.PositiveSmallIntegerField(choices=Resolution.choices, default=Resolution.RAW)
    figures = models.JSONField(default=dict, help_text="Key figure name -> value (null when unavailable).")
    # Cumulative counters at this moment: the next sample's rates and percentiles are deltas from them.
    counters = models.JSONField(default=dict, blank=True)
    degraded = models.JSONField(default=list, blank=True, help_text="Sources that failed; basic figures only.")

    class Meta:
        ordering = ["-recorded_at"]
        indexes = [models.Index(fields=["resolution", "-recorded_at"], name="sample_resolution_time")]

    def __str__(self) -> str:
        return f"{self.get_resolution_display()} sample at {self.recorded_at:%Y-%m-%d %H:%M:%S}"


class AlertRule(models.Model):
    """Fire when `figure` is above `threshold`. Seeded from settings.ALERT_THRESHOLDS, then edited here."""

    key = models.SlugField(max_length=50, unique=True)
    figure = models.CharField(max_length=50, help_text="The key figure compared with the threshold.")
    threshold = models.FloatField(help_text="The alert opens while the figure is above this value.")
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.figure} > {self.threshold:g}"


class Alert(models.Model):
    """One episode of a rule's condition holding: opened once, resolved when the condition clears."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_value = models.FloatField(null=True)
    peak_value = models.FloatField(null=True)
    message = models.CharField(max_length=500)

    class Meta:
        ordering = ["-opened_at"]

    def __str__(self) -> str:
        state = "open" if self.resolved_at is None else "resolved"
        return f"{self.rule.key} ({state}) since {self.opened_at:%Y-%m-%d %H:%M:%S}"
