"""The Content-Security-Policy in a real Chromium: the dashboard (bundle, chart, live feed), the ops page and
the API docs run without a single violation."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser

from tests.browser.conftest import DaphneServer, login

pytestmark = pytest.mark.browser

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def violations(page: Any, console: list[str]) -> list[str]:
    return page.evaluate("window.__cspViolations") + [m for m in console if "Content Security Policy" in m]


def test_the_pages_run_under_the_policy_without_violations(
    browser: Browser, server: DaphneServer, market: list[str], django_db_blocker: Any
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # CSP enforced (no bypass_csp)
    page = context.new_page()
    login(context, server, django_db_blocker, "csp-viewer")
    with django_db_blocker.unblock():
        User.objects.filter(username="csp-viewer").update(is_staff=True)
    page.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(server.url + "/")
    assert response is not None and "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    page.wait_for_selector("#connection[data-state=live]", timeout=15_000)  # no wait_for_function: it evals
    page.wait_for_selector("#chart canvas", state="attached", timeout=10_000)  # lightweight-charts drew
    assert page.evaluate("document.documentElement.dataset.theme") in {"dark", "light"}  # the nonce'd script ran
    assert violations(page, console) == [], violations(page, console)
    for path in ["/ops/", "/api/v1/docs"]:
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        assert violations(page, console) == [], (path, violations(page, console))
    context.close()
