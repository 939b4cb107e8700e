"""Read MongoDB query plans: which stages and indexes a find uses, and how much it examined."""

from __future__ import annotations

from typing import Any

from apps.market.models import TickBucket


def buckets_collection() -> Any:
    return TickBucket.collection()


def explain_find(
    filter_: dict[str, Any], *, sort: Any = None, limit: int = 0, verbosity: str = "queryPlanner"
) -> dict[str, Any]:
    command: dict[str, Any] = {"find": TickBucket._meta.db_table, "filter": filter_}
    if sort:
        command["sort"] = dict(sort) if isinstance(sort, list) else sort
    if limit:
        command["limit"] = limit
    return buckets_collection().database.command("explain", command, verbosity=verbosity)


def plan_stages(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(stage, index name) from the top of the winning plan down."""
    stages = []
    node: dict[str, Any] | None = plan
    while node:
        stages.append((node.get("stage", "?"), node.get("indexName")))
        node = node.get("inputStage") or (node.get("inputStages") or [None])[0]
    return stages


def winning_stages(explained: dict[str, Any]) -> list[tuple[str, str | None]]:
    planner = explained.get("queryPlanner") or explained["stages"][0]["$cursor"]["queryPlanner"]
    return plan_stages(planner["winningPlan"])
