"""The dashboard in real headless Chromium (Debian's package, driven by playwright), against a
live uvicorn on the real PostgreSQL and Redis. Screenshots land in test-artifacts/."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db import session_scope
from shared.enums import AdapterAlias, AdapterStatus, ExecutionOutcome, TaskStatus
from shared.models import AdapterAliasRow
from shared.registry import artifact_hash
from tests.api import factories as f
from tests.api.conftest import bearer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("PERSD_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (make system-deps)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # Debian's Chromium, never a browser playwright downloads.
        instance = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 1000}
    )
    tab = context.new_page()
    # Every request the page makes must stay on this server: no CDN, no other origin.
    foreign: list[str] = []
    tab.on(
        "request",
        lambda req: None if req.url.startswith(live_server.url) else foreign.append(req.url),
    )
    yield tab
    context.close()
    assert foreign == []


def _login(page, key: str, path: str) -> None:
    page.goto(path)
    assert "/dashboard/login?next=" in page.url  # sent to the login form first
    page.fill("#key", key)
    page.click("#login-button")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def _seed_pipeline() -> dict[str, int]:
    """Six tasks: step-1 attempts by v1 (1 of 3 passed) and v2 (2 of 2 passed, plus the failure
    the teacher refined)."""
    passed, failed = ExecutionOutcome.PASSED, ExecutionOutcome.FAILED
    with session_scope() as s:
        v1 = f.adapter(s, "persd-v1", AdapterStatus.RETIRED)
        v2 = f.adapter(s, "persd-v2", AdapterStatus.ACTIVE)
        f.alias(s, v2.id)
        for version, outcomes in ((v1, [failed, failed, passed]), (v2, [passed, passed])):
            for outcome in outcomes:
                t = f.task(s, TaskStatus.PASSED if outcome == passed else TaskStatus.UNREFINABLE)
                f.attempt(s, t, adapter_id=version.id, outcome=outcome)
        t = f.task(s, TaskStatus.REFINED)
        attempt = f.attempt(
            s,
            t,
            adapter_id=v2.id,
            feedback="AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3",
            error_type="AssertionError",
        )
        ref = f.refinement(s, attempt, cost="0.0024")
        return {"v1": v1.id, "v2": v2.id, "refinement": ref.id}


def test_overview_updates_live_and_a_refinement_shows_its_diff(page, keys, live_server) -> None:
    seeded = _seed_pipeline()
    _login(page, keys["read"], "/dashboard")

    assert page.inner_text("#stat-active") == f"v{seeded['v2']}"
    assert page.inner_text("#stat-spend") == "$0.0024"
    # The pass-rate chart is drawn: one line per adapter version, with a legend.
    page.wait_for_selector("#chart-pass-rate polyline", state="attached")
    assert page.locator("#chart-pass-rate polyline").count() == 2
    legend = page.locator("#chart-pass-rate text").all_text_contents()
    assert "persd-v1 (v1)" in legend and "persd-v2 (v2)" in legend
    page.wait_for_function("document.getElementById('live-state').className === 'live on'")
    total_before = page.inner_text("#stat-total")
    assert total_before.endswith("6 in all")

    # A task submitted through the API shows up without a reload (SSE -> refresh).
    r = httpx.post(
        f"{live_server.url}/v1/tasks",
        json=f.task_body(),
        headers=bearer(keys["submit"]),
        timeout=10,
    )
    assert r.status_code == 201
    page.wait_for_function(
        "document.getElementById('stat-total').textContent.endsWith('7 in all')", timeout=15000
    )
    # Updated in place by the live refresh, not by a reload.
    assert int(page.evaluate("document.body.dataset.refreshed")) >= 1
    page.wait_for_selector("#chart-pass-rate circle")  # redrawn after the swap
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    page.click("text=Refinements")
    page.wait_for_url(re.compile(r"/dashboard/refinements$"))
    page.click(f"a.refinement-link[href='/dashboard/refinements/{seeded['refinement']}']")
    page.wait_for_selector("table#diff")
    replaced = page.locator("table#diff tr.replace")
    assert replaced.count() == 1
    assert replaced.locator("td.l").inner_text() == "    return a - b"
    assert replaced.locator("td.r").inner_text() == "    return a + b"
    assert page.inner_text("#feedback") == "AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3"
    assert page.inner_text("#validation") == "passed"
    page.screenshot(path=str(ARTIFACTS / "dashboard-refinement.png"), full_page=True)


@pytest.mark.slow
def test_admin_promotes_an_adapter(page, keys, student, lora_dir) -> None:
    """Depends on the student service's student.promote and the vLLM fixture."""
    with session_scope() as s:
        v1 = f.adapter(
            s,
            "api-test-ui-v1",
            AdapterStatus.READY,
            path=str(lora_dir),
            content_hash=artifact_hash(lora_dir),
        ).id
        f.adapter(s, "api-test-ui-v2", AdapterStatus.REJECTED)
    page.on("dialog", lambda dialog: dialog.accept())  # the "Really promote?" confirmation
    _login(page, keys["admin"], "/dashboard/adapters")

    button = page.locator(f"button[data-action='promote'][data-version='{v1}']")
    assert page.locator("button[data-action='promote']").count() == 1  # not the rejected v2
    button.click()
    page.wait_for_selector("#action-status.ok", timeout=120_000)
    assert page.inner_text("#action-status") == (
        f"v{v1} is active. active on 1 replica(s); replaced the base model"
    )
    page.wait_for_selector(f"#adapter-{v1} .badge:text('active')")
    # The status and the reason the dashboard sent with the promotion.
    assert page.inner_text(f"#adapter-{v1} td.status") == "active\ndashboard"
    page.screenshot(path=str(ARTIFACTS / "dashboard-adapters-promoted.png"), full_page=True)
    with session_scope() as s:
        assert s.get(AdapterAliasRow, AdapterAlias.ACTIVE).adapter_id == v1
