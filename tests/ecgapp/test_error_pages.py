"""The 404 and 500 pages look like the app; the favicon is served instead of a 404 on every page."""
from __future__ import annotations

import re

import pytest
from django.db import connection
from django.template import engines
from django.template.loader import get_template
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.views import defaults


def test_an_unknown_address_gets_the_apps_404_page(client, clinician):
    client.force_login(clinician)
    resp = client.get("/ecgs/no-such-page/")
    html = resp.content.decode()
    assert resp.status_code == 404
    assert "<title>Page not found · ECG-DS</title>" in html
    assert 'class="topbar"' in html and "clinical/app.css" in html and "Log out" in html


def test_an_anonymous_404_renders_too(client):
    resp = client.get("/no-such-page/")
    assert resp.status_code == 404 and "Page not found" in resp.content.decode()


def test_the_500_page_needs_no_request_context_and_no_database(db):
    """Django renders 500.html with an empty Context: no user, no context processors; the database may be down."""
    request = RequestFactory().get("/ecgs/")
    with CaptureQueriesContext(connection) as queries:
        resp = defaults.server_error(request)
    html = resp.content.decode()
    assert resp.status_code == 500
    assert "Something went wrong" in html and "clinical/app.css" in html and "favicon.svg" in html
    assert len(queries) == 0


def test_the_500_template_uses_nothing_from_a_context_processor():
    source = get_template("500.html").template.source
    # No variable at all, and no tag but {% load static %} / {% static %} (base.html reads the user and alerts).
    assert not re.findall(r"{{.*?}}", source)
    assert {tag.split()[0] for tag in re.findall(r"{%\s*(.*?)\s*%}", source)} == {"load", "static"}
    # And it renders from a bare Template, as Django's server_error view does.
    assert "Something went wrong" in engines["django"].from_string(source).render({})


@pytest.mark.parametrize("path", ["/ecgs/", "/login/"])
def test_every_page_links_the_favicon(client, clinician, path):
    client.force_login(clinician)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in client.get(path).content.decode()


def test_favicon_ico_redirects_to_the_svg(client):
    resp = client.get("/favicon.ico")
    assert resp.status_code == 301 and resp["Location"] == "/static/favicon.svg"
