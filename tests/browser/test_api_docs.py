"""The API docs (Swagger UI) render from this site alone, under our Content-Security-Policy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def offline(page, base: str) -> tuple[list[str], list[str]]:
    """Refuse every request that is not to the live server (a closed hospital network) and collect every
    console error, not only the CSP ones the shared fixture keeps."""
    elsewhere: list[str] = []
    console: list[str] = []

    def route(r):
        if r.request.url.startswith(base + "/") or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    return elsewhere, console


def schema_operations(page, base: str) -> int:
    schema = json.loads(page.request.get(f"{base}/api/v1/schema/?format=json").text())
    return sum(1 for item in schema["paths"].values() for method in item if method in HTTP_METHODS)


def test_an_integrator_reads_every_operation_in_swagger_ui_offline(live_server, page):
    roles_ensure()
    person("int-docs", "integrator")
    base = live_server.url
    elsewhere, console = offline(page, base)
    log_in(page, base, "int-docs")
    console.clear()  # the integrator's landing page is a 403 page; only the docs page is under test

    resp = page.goto(f"{base}/api/v1/docs/")
    script_src = next(d for d in resp.headers["content-security-policy"].split(";") if "script-src" in d)
    assert script_src.strip() == "script-src 'self'"
    page.wait_for_selector(".opblock")
    expected = schema_operations(page, base)
    assert expected >= 6
    assert page.locator(".opblock").count() == expected
    # The title comes from the schema, so the schema (not just the page shell) loaded.
    assert "ECG-DS integration API" in page.locator(".info .title").inner_text()
    shot(page, "api-docs")

    # "Try it out" runs with the logged-in session (the API accepts session authentication too).
    page.click("#operations-model-model_info .opblock-summary")
    page.click("#operations-model-model_info .try-out__btn")
    page.click("#operations-model-model_info .execute")
    status = page.locator("#operations-model-model_info .live-responses-table tbody .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert not elsewhere, elsewhere
    assert not console, console
    assert not page.js_errors, page.js_errors

