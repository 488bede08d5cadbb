"""Every route of the application, requested as the coordinator with every id the territory holds
in every path parameter: what must never come back is collected in one list of leaks."""

import itertools
import re
from collections.abc import Collection, Iterable
from typing import Any

import httpx
from fastapi import FastAPI

_PARAM = re.compile(r"\{([^}]+)\}")
# The stream tails events forever when allowed; the coordinator must be refused it (checked).
_SKIP_BODY = {"/api/v1/events/stream"}


def route_requests(app: FastAPI, ids: Collection[str]) -> Iterable[tuple[str, str]]:
    """(method, path) for every operation of the OpenAPI document, each path parameter filled
    with each of ``ids`` (and a made-up one)."""
    candidates = [*ids, "no-such-id"]
    for template, operations in sorted(app.openapi()["paths"].items()):
        names = _PARAM.findall(template)
        fillings: Iterable[tuple[str, ...]] = (
            itertools.product(candidates, repeat=len(names)) if names else [()]
        )
        for filling in fillings:
            path = template
            for name, value in zip(names, filling, strict=True):
                path = path.replace("{" + name + "}", value)
            for method in operations:
                yield method.upper(), path


async def walk(
    client: httpx.AsyncClient,
    app: FastAPI,
    *,
    headers: dict[str, str],
    ids: Collection[str],
    secrets: Collection[str],
    bodies: dict[str, Any] | None = None,
) -> tuple[int, list[str], dict[str, int]]:
    """(requests made, leaks: responses naming any of ``secrets`` the request did not carry,
    successes by path)."""
    leaks: list[str] = []
    successes: dict[str, int] = {}
    count = 0
    for method, path in route_requests(app, ids):
        body = (bodies or {}).get(path, {}) if method in ("POST", "PATCH", "PUT") else None
        response = await client.request(method, path, json=body, headers=headers)
        count += 1
        text = response.text
        for secret in secrets:
            # An id the request itself carried comes back in the problem's ``instance``.
            if secret in text and secret not in path:
                leaks.append(f"{method} {path} -> {response.status_code}: {secret}")
        if response.status_code < 300:
            successes[f"{method} {path}"] = response.status_code
    return count, leaks, successes
