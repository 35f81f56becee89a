"""The console's pages, one module each; `ROUTES` is what the application serves."""

from __future__ import annotations

from kairos_console.views import accounts, auth, calendar, compose, dashboard, live, post_detail

ROUTES = [
    auth.routes,
    dashboard.routes,
    live.routes,
    accounts.routes,
    calendar.routes,
    compose.routes,
    post_detail.routes,
]
