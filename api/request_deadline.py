"""Every request's store work under the store's stall deadline, until its response starts.

A store gone silent (a half-open PostgreSQL connection, a server that still acknowledges but no
longer answers) left a request waiting for ever; a lost or locked one became a bare 500. FastAPI
runs a request's dependencies, its route and its session's commit in different threads of its
pool, so a deadline kept per thread would cover none of them. This pure ASGI middleware opens
:func:`~cybermission.store_links.store_deadline` in the request's own task instead: the threads
it hands work to run in a copy of its context and check their connections out under that one
deadline. A connection that has not answered within ``StoreSettings.stall_s`` of the request's
start is shut down; the call waiting on it fails as a lost connection, which
:mod:`api.errors` answers with a 503 (``store-unavailable``) whose transaction was never
committed. The deadline ends when the response starts: a streamed body (an export, the event
stream) reads on as before, unbounded.
"""

from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cybermission.store_links import store_deadline


class RequestDeadline:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The engine exists once the lifespan started it (api/app.py); before, nothing to bound.
        engine: Engine | None = (
            getattr(scope["app"].state, "engine", None) if scope["type"] == "http" else None
        )
        if engine is None:
            await self.app(scope, receive, send)
            return
        with store_deadline(engine, f"{scope['method']} {scope['path']}") as end:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    end()
                await send(message)

            await self.app(scope, receive, sending)
