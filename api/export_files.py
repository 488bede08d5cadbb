"""The API's exports written to a file, for ``cybermission export KIND``: the very routes of
``/api/v1/exports``, called as the global admin, their streamed bodies drained in order."""

import asyncio
from collections.abc import Callable, Mapping
from typing import IO

from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from api.routes.exports import (
    export_assets_csv,
    export_assets_json,
    export_cyclonedx,
    export_findings_csv,
    export_findings_json,
    export_findings_ocsf,
)
from cybermission.auth.roles import Role
from cybermission.auth.service import Principal
from cybermission.scans.placed_findings import FindingFilters

CLI = Principal(name="cli", role=Role.ADMIN)

# KIND -> the route's response, every finding unfiltered (the file name of the API's route).
EXPORTS: Mapping[str, Callable[[Engine], StreamingResponse]] = {
    "assets.csv": lambda engine: export_assets_csv(engine, CLI),
    "assets.json": lambda engine: export_assets_json(engine, CLI),
    "findings.csv": lambda engine: export_findings_csv(engine, CLI, FindingFilters()),
    "findings.json": lambda engine: export_findings_json(engine, CLI, FindingFilters()),
    "findings.ocsf.json": lambda engine: export_findings_ocsf(engine, CLI, FindingFilters()),
    "inventory.cdx.json": lambda engine: export_cyclonedx(engine, CLI),
}


def write_export(engine: Engine, kind: str, sink: IO[bytes]) -> None:
    """Write export ``kind`` (a key of :data:`EXPORTS`) to ``sink`` as the API streams it."""
    response = EXPORTS[kind](engine)

    async def drain() -> None:
        async for chunk in response.body_iterator:
            sink.write(chunk.encode() if isinstance(chunk, str) else bytes(chunk))

    asyncio.run(drain())
