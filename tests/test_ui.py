"""The Dagster UI over a real instance, in headless Debian Chromium (Playwright drives it):
the asset graph and a partitioned asset's partitions view render with the expected assets
and statuses; screenshots are kept in test-artifacts/. The webserver's own GraphQL API
(what the UI renders from) is checked for every asset, its partitioning and checks, and the
08:00 UTC schedule."""

import os
import shutil
import urllib.request

import pytest

from conftest import REPO
from mdh_assets.cli import main
from services import dagster_webserver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
DAY = ["--start-date", "2024-01-01", "--end-date", "2024-01-01"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture()
def webserver(mdh_env):
    assert main(["download", *DAY, "--venues", "binance", "--symbols", "BTCUSDT"]) == 0
    assert main(["candle-processing", *DAY, "--venues", "binance", "--symbols", "BTCUSDT"]) == 0
    with dagster_webserver(REPO / "workspace.yaml", env=os.environ.copy(), timeout=120) as url:
        yield url


def _graphql(url: str, query: str) -> dict:
    import json

    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=60).read())["data"]


def test_ui_shows_assets_partitions_checks_and_schedule(webserver):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright

    data = _graphql(webserver, """{ repositoriesOrError { ... on RepositoryConnection { nodes {
        assetNodes { assetKey { path } isPartitioned assetChecksOrError { ... on AssetChecks { checks { name } } } }
        schedules { name cronSchedule executionTimezone } sensors { name } } } } }""")
    repo = data["repositoriesOrError"]["nodes"][0]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in repo["assetNodes"]}
    expected = {"instruments", "reports/missing", "features/options",
                *(f"raw/{t}" for t in ("trades", "book_snapshot_5", "derivative_ticker", "liquidations", "options_chain")),
                *(f"{k}/{tf}" for k in ("candles", "book") for tf in ("15s", "1m", "5m", "15m", "1h", "4h", "24h")),
                *(f"features/mft/{tf}" for tf in ("1m", "5m", "15m", "1h", "4h", "24h")),
                *(f"warehouse/candles_{tf}" for tf in ("15s", "1m", "5m", "15m", "1h", "4h", "24h"))}
    assert expected <= set(nodes)
    assert all(n["isPartitioned"] for n in nodes.values())
    checks = {k: [c["name"] for c in n["assetChecksOrError"]["checks"]] for k, n in nodes.items()}
    assert sorted(checks["raw/trades"]) == ["complete", "pandera_schema"]
    assert checks["candles/1m"] == ["candle_checks"]  # the frames' checks and `complete` in one
    assert {"name": "daily_0800_utc", "cronSchedule": "0 8 * * *", "executionTimezone": "UTC"} in repo["schedules"]

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        def visit(path: str, shot: str, expect: list[str]) -> str:
            """Open a page and wait (up to 60 s: the UI loads the graph asynchronously, slowly on a
            loaded machine) until every expected text is shown, then screenshot it."""
            page.goto(f"{webserver}{path}", wait_until="networkidle")
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.first.click()  # Dagster's one-time community prompt
            try:
                page.wait_for_function("texts => texts.every(t => document.body.innerText.includes(t))",
                                       arg=expect, timeout=60_000)
            except PlaywrightTimeout:
                pass  # the assertions below name what is missing
            page.screenshot(path=str(ARTIFACTS / shot))
            return page.inner_text("body")

        groups = ["instruments", "raw", "candles", "book", "features", "reports", "warehouse"]
        graph = visit("/asset-groups", "ui-asset-graph.png", groups)
        for group in groups:
            assert group in graph, group
        partitions = visit("/assets/raw/trades?view=partitions", "ui-raw-trades-partitions.png",
                           ["Materialized (1)", "Failed (0)", "binance-futures", "deribit"])
        assert "Materialized (1)" in partitions and "Failed (0)" in partitions  # one venue-day
        assert "binance-futures" in partitions and "deribit" in partitions  # the venue dimension
        browser.close()
