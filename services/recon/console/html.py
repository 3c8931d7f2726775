"""HTML for the console: escaping, the page layout and small building blocks.

Every value goes through ``esc``; the only unescaped markup is what these helpers build.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from services.recon.console.session import Session

NAV = (
    ("/runs", "Runs", ("finance",)),
    ("/breaks", "Breaks", ("finance",)),
    ("/alerts", "Alerts", ("finance",)),
    ("/channels", "Channels", ("finance", "operator")),
    ("/payouts", "Payouts in review", ("operator",)),
)


def esc(value: Any) -> str:
    return "" if value is None else escape(str(value), quote=True)


def query(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return ("?" + urlencode(kept)) if kept else ""


def layout(
    title: str,
    body: str,
    *,
    session: Session | None,
    active: str = "",
    error: str | None = None,
    notice: str | None = None,
) -> str:
    nav = ""
    if session is not None:
        links = "".join(
            f'<a href="{href}"{" class=active" if href == active else ""}>{esc(label)}</a>'
            for href, label, roles in NAV
            if session.role in roles
        )
        nav = (
            f'<nav><span class="brand">Recon console</span>{links}'
            f'<span class="who">{esc(session.actor)} · {esc(session.role)}</span>'
            f'<form method="post" action="/signout" class="inline">{csrf_field(session)}'
            '<button type="submit" class="link">Sign out</button></form></nav>'
        )
    banner = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    banner += f'<p class="notice" role="status">{esc(notice)}</p>' if notice else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Recon console</title>"
        '<link rel="stylesheet" href="/static/console.css"></head>'
        f"<body>{nav}<main><h1>{esc(title)}</h1>{banner}{body}</main></body></html>"
    )


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">'


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()
) -> str:
    """``rows`` hold markup already escaped by the caller (cells are often links)."""
    head = "".join(
        f"<th{' class=num' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">Nothing here.</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def select(name: str, label: str, options: Sequence[str], value: str | None) -> str:
    opts = '<option value="">any</option>' + "".join(
        f"<option{' selected' if o == value else ''}>{esc(o)}</option>" for o in options
    )
    return f'<label>{esc(label)} <select name="{name}">{opts}</select></label>'


def text_input(
    name: str, label: str, value: str | None, *, kind: str = "text", **attrs: Any
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return (
        f'<label>{esc(label)} <input type="{kind}" name="{name}" value="{esc(value)}"{extra}>'
        "</label>"
    )


def badge(text: str, kind: str | None = None) -> str:
    return f'<span class="badge {esc(kind or text)}">{esc(text)}</span>'
