"""The dashboard: server-rendered pages over the same serving functions as the REST API.

Pages authenticate with the key kept in a cookie by the login form (see services.api.auth); every
asset is served from /static, nothing is fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api import auth
from services.api.errors import Forbidden, Unauthorized
from services.api.health import worker_states
from services.api.keys import Principal, authenticate
from services.api.protocol.common import MAX_ID
from services.api.serving import adapters, dashboard, experiments, refinements, retention
from services.api.serving.diff import side_by_side
from services.api.settings import get_api_settings
from shared.db import session_scope
from shared.enums import ApiScope, TrainingRunStatus, ValidationOutcome
from shared.errors import InvalidInput, PersdError

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
templates.env.filters["dt"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else "—"
templates.env.filters["usd"] = lambda v: f"${v:,.4f}"
templates.env.filters["pct"] = lambda v: f"{100 * v:.1f}%"
LOGIN = "/dashboard/login"


class _LoginRequired(Exception):
    pass


def _principal(request: Request) -> Principal:
    try:
        principal = auth.authenticate(request)
    except Unauthorized:
        raise _LoginRequired from None
    if not principal.has(ApiScope.READ):
        raise Forbidden("this API key lacks the 'read' scope the dashboard needs")
    return principal


def _page(request: Request, name: str, principal: Principal, status: int = 200, **context: Any):
    # A live refresh waits out the stats cache, so the page it fetches is at least as new as
    # the event that triggered it.
    delay_ms = int(get_api_settings().stats_cache_s * 1000) + 500
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "is_admin": principal.has(ApiScope.ADMIN),
            "refresh_delay_ms": delay_ms,
            # Never waits on the pings: the last answer, refreshed in the background.
            "worker_rows": dashboard.worker_rows(worker_states(wait=False)),
            **context,
        },
        status_code=status,
    )


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN}?next={quote(target)}", status_code=303)


def _int_or_none(value: str | None, name: str) -> int | None:
    if not value or not value.strip():
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_ID:
        raise InvalidInput(f"{name} must be a version number")
    return int(value)


def _text_or_none(value: str | None, name: str) -> str | None:
    if not value:
        return None
    if "\x00" in value or len(value) > 100:
        raise InvalidInput(f"{name} must be at most 100 characters, without NUL")
    return value


def _render(request: Request, name: str, build) -> Response:
    """Authenticate, build the page's context, render; a missing login redirects, a lacking
    scope or a missing row renders the error page with its status."""
    try:
        principal = _principal(request)
    except _LoginRequired:
        return _login_redirect(request)
    except PersdError as exc:
        return templates.TemplateResponse(
            request, "error.html", {"principal": None, "error": exc}, status_code=exc.status
        )
    try:
        with session_scope() as session:
            context = build(session)
    except PersdError as exc:
        return _page(request, "error.html", principal, exc.status, error=exc)
    return _page(request, name, principal, **context)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get(LOGIN, response_class=HTMLResponse)
def login_form(request: Request, next: str = "/dashboard") -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"principal": None, "next": _safe_next(next), "error": None}
    )


def _safe_next(target: str) -> str:
    # Only same-site paths: "//evil.example" or "https://..." would make login an open redirect.
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


def _lookup(key: str) -> Principal | None:
    with session_scope() as session:
        return authenticate(session, key)


@router.post(LOGIN, response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    key = (form.get("key") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/dashboard"])[0])
    principal = await run_in_threadpool(_lookup, key) if key else None
    if principal is None or not principal.has(ApiScope.READ):
        error = "invalid or revoked API key" if principal is None else "this key lacks 'read'"
        return templates.TemplateResponse(
            request,
            "login.html",
            {"principal": None, "next": target, "error": error},
            status_code=401 if principal is None else 403,
        )
    response = RedirectResponse(target, status_code=303)
    # Lax so that a link to the dashboard opens logged in; state changes are guarded by the
    # X-Requested-With check, not by the cookie's SameSite.
    response.set_cookie(
        auth.COOKIE,
        key,
        httponly=True,
        samesite="lax",
        secure=get_api_settings().cookie_secure,
        max_age=7 * 24 * 3600,
    )
    return response


@router.post("/dashboard/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse(LOGIN, status_code=303)
    response.delete_cookie(auth.COOKIE)
    return response


@router.get("/dashboard", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    def build(session) -> dict[str, Any]:
        stats = request.app.state.stats_cache.get(24, 60, get_api_settings().stats_cache_s)
        per_minute = stats.tasks_per_minute
        return {
            "stats": stats,
            "pass_rate_series": dashboard.pass_rate_series(stats),
            "tpm_series": dashboard.tasks_per_minute_series(stats),
            "tasks_last_minute": per_minute[-1].count if per_minute else 0,
            "tasks_last_hour": sum(p.count for p in per_minute),
            "training": adapters.running_training_run(session),
            "nav": "overview",
        }

    return _render(request, "overview.html", build)


@router.get("/dashboard/refinements", response_class=HTMLResponse)
def refinement_list(request: Request) -> Response:
    q = request.query_params
    validation = q.get("validation") or None

    def build(session) -> dict[str, Any]:
        if validation is not None and validation not in {v.value for v in ValidationOutcome}:
            allowed = ", ".join(v.value for v in ValidationOutcome)
            raise InvalidInput(f"validation must be one of: {allowed}")
        filters = refinements.RefinementFilter(
            validation=ValidationOutcome(validation) if validation else None,
            error_type=_text_or_none(q.get("error_type"), "error_type"),
            adapter_version=_int_or_none(q.get("adapter_version"), "adapter_version"),
        )
        page = refinements.list_refinements(session, filters, q.get("cursor") or None, 50)
        return {
            "page": page,
            "filters": {k: q.get(k, "") for k in ("validation", "error_type", "adapter_version")},
            "validations": [v.value for v in ValidationOutcome],
            "nav": "refinements",
        }

    return _render(request, "refinements.html", build)


@router.get("/dashboard/refinements/{refinement_id}", response_class=HTMLResponse)
def refinement_detail(
    request: Request, refinement_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> Response:
    def build(session) -> dict[str, Any]:
        ref = refinements.get_refinement(session, refinement_id)
        return {
            "ref": ref,
            "rows": side_by_side(ref.attempt_code, ref.code),
            "nav": "refinements",
        }

    return _render(request, "refinement.html", build)


@router.get("/dashboard/adapters", response_class=HTMLResponse)
def adapter_list(request: Request) -> Response:
    def build(session) -> dict[str, Any]:
        versions = adapters.list_adapters(session)
        return {
            "adapters": versions,
            "rows": {a.version: dashboard.adapter_row(a) for a in versions},
            "retention": {a.version: dashboard.set_cells(a.retention) for a in versions},
            "promotable": dashboard.PROMOTABLE_STATUSES,
            "nav": "adapters",
        }

    return _render(request, "adapters.html", build)


@router.get("/dashboard/adapters/{version}/retention", response_class=HTMLResponse)
def adapter_retention(
    request: Request, version: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> Response:
    def build(session) -> dict[str, Any]:
        adapter = adapters.get_version(session, version)
        view = retention.retention_view(session, adapter)
        return {
            "adapter": adapter,
            "view": view,
            "labels": [dashboard.point_label(p) for p in view.lineage],
            "retention_series": dashboard.retention_series(view),
            "drift_series": dashboard.drift_series(view),
            "lineage_rows": [(p, dashboard.set_cells(p)) for p in view.lineage],
            "measurement_rows": [(p, dashboard.set_cells(p)) for p in view.measurements],
            "names": {p.adapter_id: p.version_name for p in view.lineage},
            "titles": retention.task_titles(session, view.forgotten),
            "nav": "adapters",
        }

    return _render(request, "retention.html", build)


@router.get("/dashboard/training-runs", response_class=HTMLResponse)
def training_runs(request: Request) -> Response:
    q = request.query_params
    status = q.get("status") or None

    def build(session) -> dict[str, Any]:
        page = adapters.list_training_runs(
            session,
            TrainingRunStatus(status) if status in {s.value for s in TrainingRunStatus} else None,
            q.get("cursor") or None,
            20,
        )
        return {
            "page": page,
            "curves": {r.id: dashboard.loss_points(r.loss_curve) for r in page.items},
            "gates": {r.id: dashboard.gate_headline(r.gate) for r in page.items},
            "nav": "training",
        }

    return _render(request, "training_runs.html", build)


@router.get("/dashboard/experiments", response_class=HTMLResponse)
def experiment_list(request: Request) -> Response:
    def build(session) -> dict[str, Any]:
        return {"experiments": experiments.list_experiments(session), "nav": "experiments"}

    return _render(request, "experiments.html", build)


@router.get("/dashboard/experiments/{experiment_id}", response_class=HTMLResponse)
def experiment_detail(
    request: Request, experiment_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> Response:
    def build(session) -> dict[str, Any]:
        built = experiments.get_experiment(session, experiment_id)
        return {"report": built, "body": experiments.report_html(built), "nav": "experiments"}

    return _render(request, "experiment.html", build)


def _schema_name(schema: dict[str, Any]) -> str:
    """A short type for a parameter or body schema: a $ref's name, a type, or a union."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(_schema_name(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"list[{_schema_name(schema.get('items', {}))}]"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return str(schema.get("type", "any"))


@router.get("/docs", response_class=HTMLResponse)
def api_reference(request: Request) -> Response:
    """The REST API reference, rendered from the OpenAPI document without external scripts."""
    document = request.app.openapi()
    operations = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("description") or op.get("summary", ""),
                    "tags": op.get("tags", []),
                    "security": bool(op.get("security")),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": _schema_name(p.get("schema", {})),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": _schema_name(
                        op.get("requestBody", {})
                        .get("content", {})
                        .get("application/json", {})
                        .get("schema", {})
                    )
                    if "requestBody" in op
                    else None,
                    "responses": sorted(op.get("responses", {})),
                }
            )
    return templates.TemplateResponse(
        request,
        "api_docs.html",
        {"principal": None, "document": document, "operations": operations},
    )
