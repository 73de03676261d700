"""The Swagger UI page: every script it loads comes from this site, none is inline, and the CSP is unchanged."""
from __future__ import annotations

import re

from clinical.middleware import CONTENT_SECURITY_POLICY


def test_docs_page_loads_only_local_scripts_and_keeps_the_csp(client, db):
    resp = client.get("/api/v1/docs/")  # public, like the schema (drf-spectacular's SERVE_PERMISSIONS)
    assert resp.status_code == 200
    assert resp["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = resp.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all(not body.strip() for _, body in scripts), "inline script in the docs page"
    srcs = [re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts]
    assert all(src.startswith("/") and not src.startswith("//") for src in srcs), srcs
    assert "cdn.jsdelivr.net" not in html

    init = client.get(next(s for s in srcs if "script" in s).replace("&amp;", "&"))
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in init.content.decode()
    bundle = client.get(next(s for s in srcs if s.endswith("swagger-ui-bundle.js")))
    assert bundle.status_code == 200
