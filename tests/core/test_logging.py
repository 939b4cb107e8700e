import json
import logging

import pytest
from django.test import Client

from apps.core.logs import JsonFormatter, RequestIdFilter, request_id_var


def test_json_lines_carry_the_request_id_and_extra_fields() -> None:
    record = logging.makeLogRecord({"name": "trading", "levelname": "INFO", "msg": "order %s", "args": ("ok",)})
    record.symbol = "ACME"
    token = request_id_var.set("abc123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "order ok"
    assert line["request_id"] == "abc123"
    assert line["symbol"] == "ACME"


@pytest.mark.django_db
def test_every_response_carries_a_request_id() -> None:
    response = Client().get("/login/")
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced() -> None:
    assert Client().get("/login/", HTTP_X_REQUEST_ID="edge-42")["X-Request-ID"] == "edge-42"
    assert Client().get("/login/", HTTP_X_REQUEST_ID="bad id\n")["X-Request-ID"] != "bad id\n"
