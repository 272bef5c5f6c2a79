"""The dashboard's server-rendered pages (the browser test drives them in Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.db import session_scope
from shared.enums import AdapterStatus, TaskStatus
from shared.schemas.training import LossPoint
from tests.api import lineage
from tests.support import rows as f

STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"
TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "api" / "templates"


def login(api, key: str) -> None:
    r = api.post(
        "/dashboard/login",
        content=f"key={key}&next=/dashboard",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303


@pytest.fixture
def seeded(db) -> dict[str, int]:
    with session_scope() as s:
        v1 = f.adapter(s, "persd-v1", AdapterStatus.ACTIVE)
        f.alias(s, v1.id)
        v2 = f.adapter(s, "persd-v2", AdapterStatus.READY)
        f.adapter(s, "persd-v3", AdapterStatus.REJECTED)
        t = f.task(s, TaskStatus.REFINED)
        a = f.attempt(
            s,
            t,
            adapter_id=v1.id,
            feedback="AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3",
            error_type="AssertionError",
        )
        ref = f.refinement(s, a)
        f.training_run(s, adapter_id=v2.id, gate=f.gate_record(True, adapter_id=v2.id))
        return {"ref": ref.id, "v1": v1.id, "v2": v2.id}


def test_pages_redirect_to_login_without_a_key(api, db) -> None:
    r = api.get("/dashboard/refinements?validation=passed", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == (
        "/dashboard/login?next=/dashboard/refinements%3Fvalidation%3Dpassed"
    )
    assert api.get("/", follow_redirects=False).headers["location"] == "/dashboard"


def test_login_sets_an_httponly_cookie_and_refuses_bad_keys(api, keys) -> None:
    bad = api.post(
        "/dashboard/login",
        content="key=persd_nope_nope&next=/dashboard",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert bad.status_code == 401
    assert '<p class="error" id="login-error">invalid or revoked API key</p>' in bad.text
    r = api.post(
        "/dashboard/login",
        content=f"key={keys['read']}&next=//evil.example/steal",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard"  # never an off-site redirect
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"persd_key={keys['read']};")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_a_key_without_read_cannot_use_the_dashboard(api, keys) -> None:
    r = api.post(
        "/dashboard/login",
        content=f"key={keys['submit']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 403
    assert "this key lacks &#39;read&#39;" in r.text


def test_overview_shows_the_figures(api, keys, seeded) -> None:
    login(api, keys["read"])
    r = api.get("/dashboard")
    assert r.status_code == 200
    html = r.text
    assert f'<p class="big" id="stat-active">v{seeded["v1"]}</p>' in html
    assert '<p class="big" id="stat-spend">$0.0012</p>' in html
    assert '<td data-status="refined">1</td>' in html
    assert '<td data-queue="student">' in html
    series = re.search(r"id=\"chart-pass-rate\"[^>]*data-series='([^']*)'", html)
    assert series is not None and f'"name": "persd-v1 (v{seeded["v1"]})"' in series.group(1)


def test_refinement_page_shows_the_diff_and_the_feedback(api, keys, seeded) -> None:
    login(api, keys["read"])
    listing = api.get("/dashboard/refinements?validation=passed")
    assert f'href="/dashboard/refinements/{seeded["ref"]}"' in listing.text
    r = api.get(f"/dashboard/refinements/{seeded['ref']}")
    assert r.status_code == 200
    html = r.text
    assert (
        '<tr class="replace">\n      <td class="no">2</td><td class="l"><code>    return a - b</code>'
        '</td>\n      <td class="no">2</td><td class="r"><code>    return a + b</code></td>'
    ) in html
    assert (
        '<pre class="feedback" id="feedback">AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3'
        "</pre>"
    ) in html


def test_unknown_refinement_page_is_404_with_the_message(api, keys, db) -> None:
    login(api, keys["read"])
    r = api.get("/dashboard/refinements/999")
    assert r.status_code == 404
    assert '<p class="error" id="error-message">refinement 999 does not exist</p>' in r.text


def test_bad_filter_on_the_page_is_422_with_the_message(api, keys, db) -> None:
    login(api, keys["read"])
    r = api.get("/dashboard/refinements?validation=maybe")
    assert r.status_code == 422
    assert "validation must be one of: pending, passed, rejected" in r.text


def test_promote_buttons_only_for_admins_and_promotable_versions(api, keys, seeded) -> None:
    login(api, keys["read"])
    as_reader = api.get("/dashboard/adapters").text
    assert 'data-action="promote"' not in as_reader and 'id="rollback"' not in as_reader
    login(api, keys["admin"])
    as_admin = api.get("/dashboard/adapters").text
    assert re.findall(r'data-action="promote" data-version="(\d+)"', as_admin) == [
        str(seeded["v2"])
    ]  # not the active v1, not the rejected v3
    assert 'id="rollback"' in as_admin
    # The run's gate record, behind the version's details: what the headline leaves out.
    assert "<dt>primary_metric</dt><dd>nll</dd>" in as_admin
    assert "<dt>candidate.nll_tokens</dt><dd>4000</dd>" in as_admin


def test_training_runs_page_draws_loss_curves(api, keys, seeded) -> None:
    login(api, keys["read"])
    html = api.get("/dashboard/training-runs").text
    assert 'data-series=\'[{"name": "loss", "points": [[1.0, 2.0], [2.0, 1.5],' in html


def test_every_asset_is_local(api) -> None:
    assert api.get("/static/dashboard.js").status_code == 200
    assert api.get("/static/dashboard.css").status_code == 200
    for path in [*STATIC.iterdir(), *TEMPLATES.iterdir()]:
        text = path.read_text()
        # No CDN: nothing is loaded from another origin at run time.
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), path
        assert "@import" not in text and "url(http" not in text, path


def test_a_loss_curve_is_drawn_as_step_and_loss() -> None:
    from services.api.serving.dashboard import loss_points

    curve = [LossPoint(step=5, epoch=1, loss=0.7, lr=1e-4), LossPoint(step=6, epoch=2, loss=0.5)]
    assert loss_points(curve) == [[5.0, 0.7], [6.0, 0.5]]
    assert loss_points([]) == []


def test_adapters_page_shows_each_versions_retention(api, keys, db) -> None:
    seeded = lineage.seed()
    login(api, keys["read"])
    html = api.get("/dashboard/adapters").text
    v1 = html[html.index(f'<tbody id="adapter-{seeded.versions["v1"]}"') :]
    v1 = v1[: v1.index("</tbody>")]
    assert '<td class="num ret r-lessons">0.75<br><span class="sub">3/4</span></td>' in v1
    assert '<td class="num ret r-abilities">1.00<br><span class="sub">3/3</span></td>' in v1
    assert '<td class="num ret r-probes">0.50<br><span class="sub">1/2</span></td>' in v1
    assert '<td class="num ret r-drift">+0.0213<br><a class="sub retention-link"' in v1
    assert f'href="/dashboard/adapters/{seeded.versions["v1"]}/retention"' in v1


def test_retention_page_draws_the_lineage_and_links_the_forgotten_lessons(api, keys, db) -> None:
    seeded = lineage.seed()
    v, r = seeded.versions, seeded.refinements
    login(api, keys["read"])
    page = api.get(f"/dashboard/adapters/{v['v3']}/retention")
    assert page.status_code == 200
    html = page.text
    labels = re.search(r"id=\"chart-retention\"[^>]*data-x-labels='([^']*)'", html)
    assert labels is not None
    assert json.loads(labels.group(1)) == ["base", f"v{v['v1']}", f"v{v['v2']}", f"v{v['v3']}"]
    series = re.search(r"id=\"chart-retention\"[^>]*data-series='([^']*)'", html)
    assert json.loads(series.group(1)) == [
        {"name": "lessons pass@1", "points": [[0, 0.0], [1, 0.75], [2, 0.75], [3, 0.2]]},
        {"name": "abilities pass@1", "points": [[0, 1.0], [1, 1.0], [2, 0.6667], [3, 0.3333]]},
        {"name": "probes pass@1", "points": [[0, 0.0], [1, 0.5], [2, 1.0], [3, 0.5]]},
    ]
    drift = re.search(r"id=\"chart-drift\"[^>]*data-series='([^']*)'", html)
    assert json.loads(drift.group(1))[0]["points"] == [[i, d] for i, d in enumerate(lineage.DRIFT)]
    assert re.findall(r'<tr id="point-(\w+)"', html) == [
        "base",
        *(str(v[k]) for k in ("v1", "v2", "v3")),
    ]
    # Each forgotten lesson links to its refinement; the forgotten ability has none.
    links = re.findall(r'class="refinement-link" href="/dashboard/refinements/(\d+)"', html)
    assert links == [str(r["L1"]), str(r["L4"]), str(r["L5"])]
    assert html.count('<tr class="k-abilities">') == 1
    assert f'<td>{seeded.tasks["L1"]} <span class="sub">task L1</span></td>' in html


def test_retention_page_of_an_unknown_or_unmeasured_version(api, keys, db) -> None:
    login(api, keys["read"])
    missing = api.get("/dashboard/adapters/999999/retention")
    assert missing.status_code == 404
    assert '<p class="error" id="error-message">adapter version 999999 does not exist</p>' in (
        missing.text
    )
    with session_scope() as s:
        fresh = f.adapter(s, "persd-fresh", AdapterStatus.EVALUATING).id
    page = api.get(f"/dashboard/adapters/{fresh}/retention")
    assert page.status_code == 200
    assert (
        f'<p class="empty" id="forgotten-none">v{fresh} has not been measured yet.</p>' in page.text
    )
    assert "No version of this lineage has been measured yet." in page.text
