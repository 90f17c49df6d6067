"""`/docs` comes from installed files under a CSP: nothing on the page loads from another origin."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient


def test_docs_page_loads_nothing_from_elsewhere_and_allows_only_its_own_inline_script(
    client: TestClient,
) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and all(url.startswith("/docs/assets/") for url in urls), urls
    assert "cdn" not in html.lower()
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self' 'sha256-" in csp
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp  # the one inline script, and no 'unsafe-inline' for scripts
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "/openapi.json" in inline[0]


def test_docs_assets_are_served_from_a_fixed_list(client: TestClient) -> None:
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in bundle.content
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    for name in ("..%2F..%2Fpyproject.toml", "redoc.standalone.js", "core.py"):
        missing = client.get(f"/docs/assets/{name}")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
    assert client.get("/redoc").status_code == 404
