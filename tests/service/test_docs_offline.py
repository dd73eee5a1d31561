"""The API documentation renders offline: Swagger UI (/docs) and ReDoc (/redoc) come from the app itself, in a real
browser (Debian's Chromium) whose every request to another host is refused."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Route

from brainsearch.settings import Settings
from tests.factories import screenshot
from tests.service.conftest import LiveServer


def test_swagger_ui_and_redoc_render_with_the_network_cut(browser: Browser, tmp_path: Path) -> None:
    """Pass: /docs shows the operations and /redoc the title, with no request leaving 127.0.0.1 (any would be
    aborted, and is counted)."""
    server = LiveServer(Settings(database_url=f"sqlite:///{tmp_path / 'docs.db'}", data_dir=tmp_path / "data"))
    outside: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        page = browser.new_page()
        page.route("**/*", local_only)
        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert "brainsearch" in page.inner_text(".swagger-ui .info")
        assert page.locator(".opblock-summary-path", has_text="/api/v1/searches").count() >= 1
        screenshot(page, "docs-swagger")
        page.goto(server.url + "/redoc")
        page.wait_for_selector("h1", timeout=30_000)
        assert "brainsearch" in page.inner_text("h1")
        screenshot(page, "docs-redoc")
        assert outside == []
        page.close()
    finally:
        server.stop()
