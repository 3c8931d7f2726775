"""The console's pages: server-rendered HTML, one view per page, every form CSRF-checked.

Roles: ``finance`` (runs, breaks, alerts, reports, channels) and ``operator`` (channels and
payouts in manual review). A finance session never reaches an operator action, and the other
way round; each view names the roles it serves.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from services.kit.auth import constant_time_equal
from services.kit.errors import REQUEST_ID_KEY, ProblemError
from services.kit.logging import get_logger
from services.recon.console import breaks as breaks_mod
from services.recon.console import charts
from services.recon.console import session as sessions
from services.recon.console.html import (
    badge,
    csrf_field,
    esc,
    layout,
    query,
    select,
    table,
    text_input,
)
from services.recon.console.keys import console_http_key, console_settings_key
from services.recon.console.session import Session
from services.recon.domain.lines import StatementFormatError
from services.recon.keys import service_key, settings_key
from services.recon.parsers.amounts import to_minor
from services.recon.reports import source
from services.recon.reports.money import grouped, ppm_percent, rate_ppm
from services.recon.reports.views import date_range

log = get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
form_key = web.RequestKey("console_form", dict)
View = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _keys(request: web.Request) -> dict[str, str]:
    return {
        "finance": request.app[settings_key].finance_key,
        "operator": request.app[console_settings_key].operator_key,
    }


def current_session(request: web.Request) -> Session | None:
    return sessions.read(
        request.cookies.get(sessions.SESSION_COOKIE),
        request.app[console_settings_key].session_secret,
        _keys(request),
    )


def home_of(role: str) -> str:
    return "/runs" if role == "finance" else "/channels"


def page(*roles: str) -> Callable[[View], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Signed-in people with one of ``roles`` only; POST forms must carry the CSRF token."""

    def wrap(view: View) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            sess = current_session(request)
            if sess is None:
                if request.method == "GET":
                    return redirect("/" + query(next=request.path_qs))
                return html(
                    layout(
                        "Signed out",
                        '<p><a href="/">Sign in</a></p>',
                        session=None,
                        error="Your session has ended. Sign in again.",
                    ),
                    401,
                )
            if sess.role not in roles:
                return html(
                    layout(
                        "Not allowed",
                        f'<p><a href="{home_of(sess.role)}">Back</a></p>',
                        session=sess,
                        error=f"This page is for the {' or '.join(roles)} role; "
                        f"you are signed in as {sess.role}.",
                    ),
                    403,
                )
            if request.method == "POST":
                form = dict(await request.post())
                if not sessions.csrf_ok(sess.csrf, _str(form.get("csrf"))):
                    return html(
                        layout(
                            "Form refused",
                            f'<p><a href="{esc(request.path)}">Reload</a></p>',
                            session=sess,
                            error="The form did not come from this console session "
                            "(CSRF check failed). Reload the page and try again.",
                        ),
                        403,
                    )
                request[form_key] = form
            return await view(request, sess)

        return handler

    return wrap


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def form_value(request: web.Request, name: str) -> str:
    return (_str(request[form_key].get(name)) or "").strip()


# -- sign in ----------------------------------------------------------------------------


def _safe_next(value: str | None, role: str) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return home_of(role)


def _signin_page(
    request: web.Request, error: str | None = None, status: int = 200, name: str = ""
) -> web.Response:
    token = request.cookies.get(sessions.LOGIN_CSRF_COOKIE)
    if not token or not re.fullmatch(r"[A-Za-z0-9_\-]{20,64}", token):
        token = secrets.token_urlsafe(24)
    nxt = request.query.get("next", "")
    body = (
        '<form method="post" action="/signin" class="signin">'
        f'<input type="hidden" name="csrf" value="{esc(token)}">'
        f'<input type="hidden" name="next" value="{esc(nxt)}">'
        f"{text_input('name', 'Your name', name, required='required', maxlength=100)}"
        f"{text_input('key', 'Finance or operator key', '', kind='password', required='required')}"
        '<button type="submit">Sign in</button>'
        '<p class="muted">The key decides your role: finance staff see runs, breaks, alerts '
        "and reports; operators see channels and payouts in manual review.</p></form>"
    )
    response = html(layout("Sign in", body, session=None, error=error), status)
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=request.app[console_settings_key].cookie_secure,
        path="/",
        max_age=3600,
    )
    return response


async def index(request: web.Request) -> web.StreamResponse:
    sess = current_session(request)
    if sess is not None:
        return redirect(home_of(sess.role))
    return _signin_page(request)


async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    cookie = request.cookies.get(sessions.LOGIN_CSRF_COOKIE, "")
    if not cookie or not sessions.csrf_ok(cookie, _str(form.get("csrf"))):
        return _signin_page(
            request, "The sign-in form expired (CSRF check failed). Please try again.", 403
        )
    name = (_str(form.get("name")) or "").strip()
    key = _str(form.get("key")) or ""
    if not name or len(name) > 100 or any(ord(ch) < 32 for ch in name):
        return _signin_page(request, "Enter your name (1 to 100 printable characters).", 422)
    role = next((r for r, k in _keys(request).items() if key and constant_time_equal(key, k)), None)
    if role is None:
        log.warning("console_signin_refused")
        return _signin_page(request, "That key is not a finance or operator key.", 401, name)
    settings = request.app[console_settings_key]
    cookie_value, _ = sessions.issue(
        settings.session_secret, _keys(request)[role], role, name, settings.session_ttl_s
    )
    log.info("console_signed_in", role=role)
    response = redirect(_safe_next(_str(form.get("next")), role))
    response.set_cookie(
        sessions.SESSION_COOKIE,
        cookie_value,
        httponly=True,
        samesite="Strict",
        secure=settings.cookie_secure,
        path="/",
        max_age=settings.session_ttl_s,
    )
    response.del_cookie(sessions.LOGIN_CSRF_COOKIE, path="/")
    return response


@page("finance", "operator")
async def signout(request: web.Request, sess: Session) -> web.StreamResponse:
    response = redirect("/")
    response.del_cookie(sessions.SESSION_COOKIE, path="/")
    return response


# -- runs -------------------------------------------------------------------------------


def _pool(request: web.Request) -> Any:
    return request.app[service_key].pool


def _rows_max(request: web.Request) -> int:
    return request.app[console_settings_key].page_rows_max


@page("finance")
async def runs_page(request: web.Request, sess: Session) -> web.StreamResponse:
    error = None
    channel = request.query.get("channel", "").strip() or None
    try:
        start, end = date_range(request.query)
        if channel is not None:
            breaks_mod.BreakFilter.parse({"channel": channel})
    except ProblemError as exc:
        error = exc.detail or exc.title
        start, end = datetime.now(UTC).date() - timedelta(days=30), datetime.now(UTC).date()
        channel = None
    async with _pool(request).acquire() as conn:
        daily = await source.daily(conn, start, end)
        runs = await conn.fetch(
            """SELECT run_id, channel, business_date, line_count, record_count, matched_lines,
                      break_count, finished_at, superseded_by
               FROM recon_runs WHERE business_date BETWEEN $1 AND $2
                 AND ($3::text IS NULL OR channel = $3)
               ORDER BY business_date DESC, channel, finished_at DESC LIMIT $4""",
            start,
            end,
            channel,
            _rows_max(request),
        )
    days = sorted({r["business_date"] for r in daily})
    series: dict[str, list[int | None]] = {}
    for r in daily:
        if channel is not None and r["channel"] != channel:
            continue
        values = series.setdefault(r["channel"], [None] * len(days))
        values[days.index(r["business_date"])] = rate_ppm(r["matched_lines"], r["line_count"])
    chart = charts.line_chart(
        "Match rate per channel",
        [d.isoformat()[5:] for d in days],
        series,
        y_max=1_000_000,
        y_format=lambda ppm: f"{ppm // 10_000}%",
    )
    range_q = query(**{"from": start.isoformat(), "to": end.isoformat()})
    filters = (
        '<form method="get" class="filters">'
        f"{text_input('from', 'From', start.isoformat(), kind='date')}"
        f"{text_input('to', 'To', end.isoformat(), kind='date')}"
        f"{text_input('channel', 'Channel', channel)}"
        '<button type="submit">Show</button>'
        f'<a href="/summary/daily.csv{esc(range_q)}">Daily summary (CSV)</a></form>'
    )
    rows = [
        [
            f'<a href="/runs/{esc(r["run_id"])}">{esc(r["run_id"])}</a>',
            esc(r["business_date"]),
            esc(r["channel"]),
            esc(f"{r['line_count']:,}"),
            esc(f"{r['matched_lines']:,}"),
            esc(ppm_percent(rate_ppm(r["matched_lines"], r["line_count"]))),
            esc(f"{r['break_count']:,}"),
            badge("superseded", "low") if r["superseded_by"] else badge("current", "closed"),
            esc(r["finished_at"].strftime("%Y-%m-%d %H:%M")),
        ]
        for r in runs
    ]
    body = (
        filters
        + f"<h2>Match rate per channel, {esc(start)} to {esc(end)}</h2>"
        + chart
        + "<h2>Runs</h2>"
        + table(
            [
                "Run",
                "Business date",
                "Channel",
                "Lines",
                "Matched",
                "Match rate",
                "Breaks",
                "State",
                "Finished (UTC)",
            ],
            rows,
            numeric=(3, 4, 5, 6),
        )
    )
    return html(
        layout("Runs", body, session=sess, active="/runs", error=error), 400 if error else 200
    )


@page("finance")
async def run_page(request: web.Request, sess: Session) -> web.StreamResponse:
    run_id = request.match_info["run_id"]
    async with _pool(request).acquire() as conn:
        row = await source.run_row(conn, run_id) if _ID.match(run_id) else None
        if row is None:
            return html(
                layout("Run not found", "", session=sess, active="/runs", error=f"No run {run_id}"),
                404,
            )
        figures = await conn.fetch(
            """SELECT code, currency, count(*) AS n,
                      count(*) FILTER (WHERE status = 'open') AS open_n,
                      coalesce(sum(amount_minor), 0) AS amount
               FROM recon_breaks WHERE run_id = $1 GROUP BY code, currency ORDER BY code""",
            run_id,
        )
        currencies = await source.run_currencies(conn, row)
    summary = json.loads(row["summary"])
    currency = currencies[0] if len(currencies) == 1 else None
    rate = rate_ppm(row["matched_lines"], row["line_count"])
    cards = "".join(
        f'<div class="card">{esc(label)}<b>{esc(value)}</b></div>'
        for label, value in (
            ("Lines", f"{row['line_count']:,}"),
            ("Records", f"{row['record_count']:,}"),
            ("Matched lines", f"{row['matched_lines']:,}"),
            ("Match rate", ppm_percent(rate)),
            ("Breaks", f"{row['break_count']:,}"),
        )
    )
    passes = summary.get("passes", {})
    pass_rows = [
        [
            esc(name),
            esc(f"{p['lines']:,}"),
            esc(f"{p['records']:,}"),
            esc(grouped(p["amount_minor"], currency) if currency else f"{p['amount_minor']:,}"),
        ]
        for name, p in sorted(passes.items())
    ]
    break_rows = [
        [
            f'<a href="/breaks{esc(query(run_id=run_id, code=f["code"]))}">'
            f"{badge(f['code'], 'code')}</a>",
            esc(f["currency"]),
            esc(f"{f['n']:,}"),
            esc(f"{f['open_n']:,}"),
            esc(grouped(int(f["amount"]), f["currency"])),
        ]
        for f in figures
    ]
    pass_chart = charts.bar_chart(
        "Matched lines per pass",
        [(n, p["lines"], f"{p['lines']:,} lines") for n, p in sorted(passes.items())],
    )
    break_chart = charts.bar_chart(
        "Breaks per type",
        [
            (f["code"], int(f["n"]), f"{f['n']:,} · {grouped(int(f['amount']), f['currency'])}")
            for f in figures
        ],
    )
    downloads = " · ".join(
        f'<a href="/runs/{esc(run_id)}/{p}" download>{label}</a>'
        for p, label in (
            ("report.xlsx", "Report (XLSX)"),
            ("summary.csv", "Summary (CSV)"),
            ("breaks.csv", "Breaks (CSV)"),
            ("matched.csv", "Matched (CSV)"),
        )
    )
    superseded = (
        f'<p class="notice">Superseded by <a href="/runs/{esc(row["superseded_by"])}">'
        f"{esc(row['superseded_by'])}</a> (new inputs).</p>"
        if row["superseded_by"]
        else ""
    )
    body = (
        f'<p class="muted">{esc(row["channel"])} · business date {esc(row["business_date"])} · '
        f"rules {esc(row['rules_version'])} · finished "
        f"{esc(row['finished_at'].strftime('%Y-%m-%d %H:%M:%S'))} UTC</p>"
        f"{superseded}<div class=cards>{cards}</div><p>{downloads} · "
        f'<a href="/breaks{query(run_id=run_id)}">Breaks of this run</a></p>'
        '<div class="grid2"><section><h2>Per pass</h2>'
        + pass_chart
        + table(["Pass", "Lines", "Records", "Amount"], pass_rows, numeric=(1, 2, 3))
        + "</section><section><h2>Per break type</h2>"
        + break_chart
        + table(
            ["Break type", "Currency", "Count", "Open", "Amount"], break_rows, numeric=(2, 3, 4)
        )
        + "</section></div>"
    )
    return html(layout(f"Run {run_id}", body, session=sess, active="/runs"))


# -- breaks -----------------------------------------------------------------------------


def _break_filter(q: Any) -> tuple[breaks_mod.BreakFilter, dict[str, str]]:
    """The page's filter: amounts are typed in major units with a currency, turned into exact
    minor units with the currency's exponent."""
    values = {
        k: (q.get(k) or "").strip()
        for k in (
            "run_id",
            "channel",
            "code",
            "status",
            "date_from",
            "date_to",
            "amount_min",
            "amount_max",
            "currency",
        )
    }
    api_query = {
        k: values[k]
        for k in ("run_id", "channel", "code", "status", "date_from", "date_to", "currency")
    }
    if (values["amount_min"] or values["amount_max"]) and not values["currency"]:
        raise breaks_mod.invalid("choose a currency for the amount range")
    if values["currency"] and not _CURRENCY.match(values["currency"]):
        raise breaks_mod.invalid("currency must be three capital letters (ISO 4217)")
    for name in ("amount_min", "amount_max"):
        raw = values[name]
        if raw:
            negative = raw.startswith("-")
            try:
                minor = to_minor(raw.lstrip("-"), values["currency"])
            except StatementFormatError as exc:
                raise breaks_mod.invalid(f"{name.replace('_', ' ')}: {exc}") from None
            api_query[f"{name}_minor"] = str(-minor if negative else minor)
    return breaks_mod.BreakFilter.parse(api_query), values


def _break_row(r: Any) -> list[str]:
    return [
        f'<a href="/breaks/{esc(r["break_id"])}">{esc(r["break_id"])}</a>',
        esc(r["business_date"]),
        esc(r["channel"]),
        badge(r["code"], "code"),
        badge(r["severity"]),
        badge(r["status"]),
        esc(grouped(r["amount_minor"], r["currency"])),
        esc(grouped(r["expected_amount_minor"], r["currency"])),
        esc(r["attempt_id"] or ""),
        esc(r["statement_id"] and f"{r['statement_id']}:{r['line_number']}"),
        esc((r["detail"] or "")[:120]),
    ]


@page("finance")
async def breaks_page(request: web.Request, sess: Session) -> web.StreamResponse:
    error = None
    rows: list[Any] = []
    next_cursor = None
    values: dict[str, str] = {k: (request.query.get(k) or "").strip() for k in request.query}
    try:
        flt, values = _break_filter(request.query)
        after = breaks_mod.decode_cursor(request.query.get("cursor"))
        async with _pool(request).acquire() as conn:
            rows, next_cursor = await breaks_mod.search(
                conn, flt, after=after, limit=_rows_max(request)
            )
    except ProblemError as exc:
        error = exc.detail or exc.title
    v = values.get
    filters = (
        '<form method="get" class="filters" id="break-filters">'
        f"{text_input('run_id', 'Run', v('run_id'))}"
        f"{text_input('channel', 'Channel', v('channel'))}"
        f"{select('code', 'Type', breaks_mod.BREAK_CODES, v('code'))}"
        f"{select('status', 'Status', breaks_mod.STATUSES, v('status'))}"
        f"{text_input('date_from', 'Business date from', v('date_from'), kind='date')}"
        f"{text_input('date_to', 'to', v('date_to'), kind='date')}"
        f"{text_input('amount_min', 'Amount from', v('amount_min'), inputmode='decimal')}"
        f"{text_input('amount_max', 'to', v('amount_max'), inputmode='decimal')}"
        f"{text_input('currency', 'Currency', v('currency'), maxlength=3, size=4)}"
        '<button type="submit">Filter</button><a href="/breaks">Clear</a></form>'
    )
    pager = ""
    if next_cursor:
        params = {k: x for k, x in values.items() if x and k != "cursor"}
        href = "/breaks" + query(**params, cursor=next_cursor)
        pager = f'<p class="pager"><a href="{esc(href)}" id="next-page">Next page →</a></p>'
    body = (
        filters
        + table(
            [
                "Break",
                "Business date",
                "Channel",
                "Type",
                "Severity",
                "Status",
                "Amount",
                "Expected",
                "Attempt",
                "Line",
                "Detail",
            ],
            [_break_row(r) for r in rows],
            numeric=(6, 7),
        )
        + pager
    )
    return html(
        layout("Breaks", body, session=sess, active="/breaks", error=error),
        400 if error else 200,
    )


async def _break_detail(
    request: web.Request,
    sess: Session,
    break_id: str,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    comment: str = "",
) -> web.Response:
    async with _pool(request).acquire() as conn:
        row = await breaks_mod.get(conn, break_id)
        if row is None:
            return html(
                layout(
                    "Break not found",
                    "",
                    session=sess,
                    active="/breaks",
                    error=f"No break {break_id}",
                ),
                404,
            )
        trail = await breaks_mod.audit(conn, break_id)
    facts = table(
        ["Field", "Value"],
        [
            [esc(k), esc(v)]
            for k, v in (
                ("Run", row["run_id"]),
                ("Channel", row["channel"]),
                ("Business date", row["business_date"]),
                ("Type", row["code"]),
                ("Severity", row["severity"]),
                ("Status", row["status"]),
                ("Amount", grouped(row["amount_minor"], row["currency"])),
                ("Expected amount", grouped(row["expected_amount_minor"], row["currency"])),
                ("Fee", grouped(row["fee_minor"], row["currency"])),
                ("Expected fee", grouped(row["expected_fee_minor"], row["currency"])),
                (
                    "Statement line",
                    row["statement_id"] and f"{row['statement_id']}:{row['line_number']}",
                ),
                ("Attempt", row["attempt_id"]),
                ("Payout", row["payout_id"]),
                ("Value date", row["value_date"]),
                ("Record date", row["record_date"]),
                ("Detail", row["detail"]),
                ("Closed", row["closed_reason"]),
            )
        ],
    )
    audit_rows = [
        [
            esc(a["created_at"].strftime("%Y-%m-%d %H:%M:%S")),
            esc(a["actor"]),
            esc(a["role"]),
            esc(a["action"]),
            esc(a["comment"]),
        ]
        for a in trail
    ]
    form = ""
    if row["status"] == "open":
        form = (
            f'<h2>Resolve</h2><form method="post" action="/breaks/{esc(break_id)}/resolve" '
            f'id="resolve-form">{csrf_field(sess)}'
            f"<label>Comment (what you checked and why this break is settled)"
            f'<textarea name="comment" maxlength="2000">{esc(comment)}</textarea></label>'
            f'<p class="muted">Recorded as {esc(sess.actor)} ({esc(sess.role)}).</p>'
            '<button type="submit">Resolve break</button></form>'
        )
    body = (
        f'<p><a href="/breaks{query(run_id=row["run_id"])}">← Breaks of run '
        f"{esc(row['run_id'])}</a></p>"
        + facts
        + form
        + "<h2>Audit trail</h2>"
        + table(["When (UTC)", "Who", "Role", "Action", "Comment"], audit_rows)
    )
    return html(
        layout(
            f"Break {break_id}", body, session=sess, active="/breaks", error=error, notice=notice
        ),
        status,
    )


@page("finance")
async def break_page(request: web.Request, sess: Session) -> web.StreamResponse:
    notice = "Break resolved." if request.query.get("resolved") == "1" else None
    return await _break_detail(request, sess, request.match_info["break_id"], notice=notice)


@page("finance")
async def resolve_break(request: web.Request, sess: Session) -> web.StreamResponse:
    break_id = request.match_info["break_id"]
    comment = form_value(request, "comment")
    try:
        await breaks_mod.resolve(
            _pool(request),
            break_id,
            comment=comment,
            actor=sess.actor,
            role=sess.role,
            request_id=request.get(REQUEST_ID_KEY),
        )
    except ProblemError as exc:
        return await _break_detail(
            request,
            sess,
            break_id,
            error=exc.detail or exc.title,
            status=exc.status,
            comment=comment,
        )
    return redirect(f"/breaks/{quote(break_id)}?resolved=1")


# -- alerts -----------------------------------------------------------------------------

ALERT_STATUSES = ("open", "acknowledged", "closed")
SEVERITIES = ("critical", "high", "medium", "low")


@page("finance")
async def alerts_page(request: web.Request, sess: Session) -> web.StreamResponse:
    return await _alerts(request, sess)


async def _alerts(
    request: web.Request,
    sess: Session,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    state = (request.query.get("status") or "").strip() or None
    severity = (request.query.get("severity") or "").strip() or None
    if state is not None and state not in ALERT_STATUSES:
        error, status, state = f"status must be one of {', '.join(ALERT_STATUSES)}", 400, None
    if severity is not None and severity not in SEVERITIES:
        error, status, severity = f"severity must be one of {', '.join(SEVERITIES)}", 400, None
    if notice is None and request.query.get("done") in ("acknowledged", "closed"):
        notice = f"Alert {request.query['done']}."
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(
            """SELECT * FROM recon_alerts
               WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR severity = $2)
               ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1
                        WHEN 'medium' THEN 2 ELSE 3 END, last_seen_at DESC, alert_id
               LIMIT $3""",
            state,
            severity,
            _rows_max(request),
        )
    back = request.path_qs if request.method == "GET" else "/alerts"

    def actions(r: Any) -> str:
        out = ""
        for target, label, allowed in (
            ("ack", "Acknowledge", r["status"] == "open"),
            ("close", "Close", r["status"] != "closed"),
        ):
            if allowed:
                out += (
                    f'<form method="post" action="/alerts/{esc(r["alert_id"])}/{target}" '
                    f'class="inline">{csrf_field(sess)}<input type="hidden" name="back" '
                    f'value="{esc(back)}"><button type="submit" class="secondary">{label}'
                    "</button></form> "
                )
        return out

    filters = (
        '<form method="get" class="filters">'
        f"{select('status', 'Status', ALERT_STATUSES, state)}"
        f"{select('severity', 'Severity', SEVERITIES, severity)}"
        '<button type="submit">Filter</button></form>'
    )
    body = filters + table(
        [
            "Severity",
            "Code",
            "Message",
            "Channel",
            "Business date",
            "Status",
            "Seen",
            "Last seen (UTC)",
            "",
        ],
        [
            [
                badge(r["severity"]),
                esc(r["code"]),
                esc(r["message"]),
                esc(r["channel"]),
                esc(r["business_date"]),
                badge(r["status"]),
                esc(r["occurrences"]),
                esc(r["last_seen_at"].strftime("%Y-%m-%d %H:%M")),
                actions(r),
            ]
            for r in rows
        ],
        numeric=(6,),
    )
    return html(
        layout("Alerts", body, session=sess, active="/alerts", error=error, notice=notice),
        status,
    )


def _transition(target: str) -> View:
    async def view(request: web.Request, sess: Session) -> web.StreamResponse:
        alert_id = request.match_info["alert_id"]
        try:
            if not _ID.match(alert_id):
                raise ProblemError(404, "alert_not_found", "Alert not found", alert_id)
            await request.app[service_key].transition_alert(alert_id, target)
        except ProblemError as exc:
            return await _alerts(request, sess, error=exc.detail or exc.title, status=exc.status)
        log.info("console_alert_transition", alert_id=alert_id, target=target, role=sess.role)
        back = form_value(request, "back")
        location = back if back.startswith("/alerts") else "/alerts"
        sep = "&" if "?" in location else "?"
        return redirect(f"{location}{sep}done={target}")

    return view


# -- channels (router) and payouts (payout admin API) ----------------------------------


async def _upstream(
    request: web.Request, method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    """(status, JSON body) from another service; raises ProblemError 502 when unreachable."""
    session = request.app[console_http_key]
    headers = {**headers, "Request-Id": request.get(REQUEST_ID_KEY, "")}
    try:
        async with session.request(method, url, headers=headers, json=body) as response:
            text = await response.text()
            try:
                data = json.loads(text) if text else None
            except ValueError:
                data = {"detail": text[:300]}
            return response.status, data
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProblemError(
            502,
            "upstream_unavailable",
            "Service unavailable",
            f"{url.split('?')[0]}: {type(exc).__name__} {exc}".strip(),
        ) from None


def _problem_text(status: int, data: Any) -> str:
    if isinstance(data, dict):
        return f"{data.get('title') or status}: {data.get('detail') or data.get('code') or ''}"
    return f"HTTP {status}"


@page("finance", "operator")
async def channels_page(request: web.Request, sess: Session) -> web.StreamResponse:
    settings = request.app[settings_key]
    error = None
    channels: list[dict[str, Any]] = []
    try:
        status, data = await _upstream(
            request,
            "GET",
            settings.router_url.rstrip("/") + "/v1/channels",
            {"X-Service-Token": settings.service_token},
        )
        if status != 200:
            error = "Router answered " + _problem_text(status, data)
        else:
            channels = list(data.get("channels", []))
    except ProblemError as exc:
        error = f"The router cannot be reached: {exc.detail}"
    rows = []
    for c in channels:
        h = c.get("health", {})
        q = c.get("quota", {})
        rows.append(
            [
                esc(c.get("id")),
                esc(c.get("bank")),
                esc(c.get("currency")),
                badge(
                    "enabled" if c.get("enabled") else "disabled",
                    "closed" if c.get("enabled") else "critical",
                ),
                badge(h.get("breaker_state", "?"), h.get("breaker_state")),
                esc(ppm_percent(int(h.get("success_rate_ppm", 0)))),
                esc(h.get("samples")),
                esc("" if h.get("latency_ms_p95") is None else f"{h['latency_ms_p95']:.0f} ms"),
                esc(grouped(q.get("consumed_minor"), c.get("currency"))),
                esc(grouped(q.get("daily_quota_minor"), c.get("currency"))),
                esc(", ".join(k for k, v in (c.get("kill_switches") or {}).items() if v) or "—"),
            ]
        )
    success_chart = charts.bar_chart(
        "Success rate per channel",
        [
            (
                c["id"],
                int(c["health"]["success_rate_ppm"]),
                ppm_percent(int(c["health"]["success_rate_ppm"])),
            )
            for c in channels
        ],
    )
    latency_chart = charts.bar_chart(
        "Latency p95 per channel",
        [
            (
                c["id"],
                int(c["health"].get("latency_ms_p95") or 0),
                f"{(c['health'].get('latency_ms_p95') or 0):.0f} ms",
            )
            for c in channels
        ],
    )
    body = (
        '<div class="grid2"><section><h2>Success rate</h2>'
        + success_chart
        + "</section><section><h2>Latency (p95)</h2>"
        + latency_chart
        + "</section></div>"
        + "<h2>Channels</h2>"
        + table(
            [
                "Channel",
                "Bank",
                "Currency",
                "Enabled",
                "Breaker",
                "Success rate",
                "Samples",
                "Latency p95",
                "Quota used",
                "Daily quota",
                "Kill switches",
            ],
            rows,
            numeric=(5, 6, 7, 8, 9),
        )
    )
    return html(
        layout("Channels", body, session=sess, active="/channels", error=error),
        502 if error and not channels else 200,
    )


async def _payouts(
    request: web.Request,
    sess: Session,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    settings = request.app[console_settings_key]
    payouts: list[dict[str, Any]] = []
    try:
        code, data = await _upstream(
            request,
            "GET",
            settings.payout_url.rstrip("/") + "/admin/payouts?status=manual_review&limit=100",
            {"Authorization": f"Bearer {settings.payout_admin_key}"},
        )
        if code != 200:
            error = error or "Payout service answered " + _problem_text(code, data)
        else:
            payouts = list(data.get("data", []))
    except ProblemError as exc:
        error = error or f"The payout service cannot be reached: {exc.detail}"
    if notice is None and request.query.get("done"):
        notice = f"Payout {request.query.get('payout', '')} marked {request.query['done']}."

    def actions(p: dict[str, Any]) -> str:
        pid = esc(p["id"])
        return (
            f'<form method="post" action="/payouts/{pid}/mark_paid" class="inline">'
            f'{csrf_field(sess)}<input name="evidence" placeholder="bank evidence" '
            'maxlength="1000" required> <button type="submit">Mark paid</button></form> '
            f'<form method="post" action="/payouts/{pid}/mark_failed" class="inline">'
            f'{csrf_field(sess)}<input name="reason" placeholder="reason" maxlength="1000" '
            'required> <button type="submit" class="secondary">Mark failed</button></form>'
        )

    rows = [
        [
            esc(p["id"]),
            badge(p["status"], "medium"),
            esc(grouped(p.get("amount"), p.get("currency"))),
            esc(p.get("channel")),
            esc(p.get("failure_code") or ""),
            esc(str(p.get("updated_at", ""))[:19]),
            actions(p),
        ]
        for p in payouts
    ]
    body = table(
        ["Payout", "Status", "Amount", "Channel", "Failure", "Updated (UTC)", "Resolve"],
        rows,
        numeric=(2,),
    )
    return html(
        layout(
            "Payouts in manual review",
            body,
            session=sess,
            active="/payouts",
            error=error,
            notice=notice,
        ),
        status,
    )


@page("operator")
async def payouts_page(request: web.Request, sess: Session) -> web.StreamResponse:
    return await _payouts(request, sess)


def _payout_action(action: str) -> View:
    field, label = ("evidence", "bank evidence") if action == "mark_paid" else ("reason", "reason")

    async def view(request: web.Request, sess: Session) -> web.StreamResponse:
        payout_id = request.match_info["payout_id"]
        value = form_value(request, field)
        if not value or len(value) > 1000:
            return await _payouts(
                request, sess, error=f"Enter the {label} (1 to 1000 characters).", status=422
            )
        if not _ID.match(payout_id):
            return await _payouts(request, sess, error=f"No payout {payout_id}", status=404)
        settings = request.app[console_settings_key]
        body: dict[str, Any] = {field: value}
        if action == "mark_paid":
            body["note"] = f"by {sess.actor} (recon console)"[:1000]
        try:
            code, data = await _upstream(
                request,
                "POST",
                f"{settings.payout_url.rstrip('/')}/admin/payouts/{quote(payout_id)}/{action}",
                {"Authorization": f"Bearer {settings.payout_admin_key}"},
                body,
            )
        except ProblemError as exc:
            return await _payouts(request, sess, error=exc.detail, status=502)
        if code != 200:
            return await _payouts(
                request,
                sess,
                error="Payout service refused: " + _problem_text(code, data),
                status=code if 400 <= code < 500 else 502,
            )
        log.info("console_payout_action", payout_id=payout_id, action=action, role=sess.role)
        done = "paid" if action == "mark_paid" else "failed"
        return redirect(f"/payouts?done={done}&payout={quote(payout_id)}")

    return view


# -- downloads through the session ------------------------------------------------------


def download(view: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> View:
    async def wrapped(request: web.Request, sess: Session) -> web.StreamResponse:
        try:
            return await view(request)
        except ProblemError as exc:
            return html(
                layout("Download failed", "", session=sess, error=exc.detail or exc.title),
                exc.status,
            )

    return wrapped


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in {"console.css"}:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "public, max-age=3600"})


def add_routes(app: web.Application) -> None:
    from services.recon.reports import views as reports

    r = app.router
    r.add_get("/", index)
    r.add_post("/signin", signin)
    r.add_post("/signout", signout)
    r.add_get("/static/{name}", static)
    r.add_get("/runs", runs_page)
    r.add_get("/runs/{run_id}", run_page)
    r.add_get("/runs/{run_id}/report.xlsx", page("finance")(download(reports.run_xlsx)))
    r.add_get("/runs/{run_id}/{part}.csv", page("finance")(download(reports.run_csv)))
    r.add_get("/summary/daily.csv", page("finance")(download(reports.daily_csv)))
    r.add_get("/breaks", breaks_page)
    r.add_get("/breaks/{break_id}", break_page)
    r.add_post("/breaks/{break_id}/resolve", resolve_break)
    r.add_get("/alerts", alerts_page)
    r.add_post("/alerts/{alert_id}/ack", page("finance")(_transition("acknowledged")))
    r.add_post("/alerts/{alert_id}/close", page("finance")(_transition("closed")))
    r.add_get("/channels", channels_page)
    r.add_get("/payouts", payouts_page)
    r.add_post("/payouts/{payout_id}/mark_paid", page("operator")(_payout_action("mark_paid")))
    r.add_post("/payouts/{payout_id}/mark_failed", page("operator")(_payout_action("mark_failed")))
