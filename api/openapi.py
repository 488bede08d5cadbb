"""The OpenAPI document as integrators read it: named operationIds and problem-details errors.

FastAPI names operations after the function, path and method
(``get_scan_api_v1_scans__scan_run_id__get``); a generated client then has methods of that name.
Here each operation is named after its route function in camelCase, with the verb an integrator
expects (``post_scope`` -> ``createScope``, ``patch_finding`` -> ``updateFinding``,
``remove_scope`` -> ``deleteScope``); a route that reads better otherwise sets ``operation_id``.

Every 4xx answer is RFC 9457 problem details (``api/errors.py``); the document says so with one
``Problem`` schema under ``application/problem+json`` for each documented 4xx, adds 404 to each
operation with a path parameter (an unknown id, or another organisation's), and drops FastAPI's
``HTTPValidationError`` (never sent).
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX

# The function-name verb -> the operation verb a client reads.
_VERBS = {"post": "create", "patch": "update", "remove": "delete"}
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")
PROBLEM_REF = "#/components/schemas/Problem"


class FieldProblem(BaseModel):
    """One invalid field of a 422 (RFC 9457 §3.2 extension member ``errors``)."""

    field: str = Field(description="Dotted path of the field, e.g. `targets[3]`")
    in_: str = Field(alias="in", description="Where it was: body, query, path or header")
    message: str
    type: str = Field(description="Machine-readable reason, e.g. `missing`")


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error answer."""

    type: str = Field(description=f"A stable identifier: `{PROBLEM_TYPE_PREFIX}<slug>`")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path")
    errors: list[FieldProblem] | None = Field(
        default=None, description="422 only: each invalid field"
    )


def operation_id(route: APIRoute) -> str:
    """``get_asset_history`` -> ``getAssetHistory``; ``post_scope`` -> ``createScope``."""
    first, *rest = route.name.split("_")
    words = [_VERBS.get(first, first), *rest]
    return words[0] + "".join(word[:1].upper() + word[1:] for word in words[1:])


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the document described above, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _with_problems(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_problems(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ERRORS:
        schemas.pop(name, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if "{" in path and "404" not in responses:
                responses["404"] = {"description": "No such resource (or not the caller's)"}
            for code, response in responses.items():
                if code.startswith("4"):
                    response["content"] = dict(content)
    return document
