"""``cybermission serve`` and ``demo``: the API and its scheduler; the demo adds the lab, a scan.

Both bring the store to head first: the service is what an upgrade starts.
"""

from typing import Annotated

import typer

from cybermission.cli.lab import VAR, lab_down, lab_pid, lab_start
from cybermission.cli.runtime import err, open_store, start

# How long a stopping service waits for open requests and streams before closing them.
SHUTDOWN_GRACE_S = 15


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the API (and the in-process scheduler).

    SIGTERM or SIGINT stop it cleanly: its running scans end ``interrupted`` with the signal's
    name, then the process ends by that signal (uvicorn re-raises it: status 143 or 130 in a
    shell), as supervisors expect."""
    import signal
    from types import FrameType

    import uvicorn

    from api.app import create_app
    from cybermission.config import secret_values
    from cybermission.logs import install_redaction

    settings = start()
    open_store(settings, migrate=True).dispose()
    application = create_app(settings, background=True)

    class SignalledServer(uvicorn.Server):
        """uvicorn's server, telling the application which signal stops it: the reason its
        running scans record."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            application.state.stop_signal = signal.Signals(sig).name
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        # Open streams (the dashboard's events) must not hold a stopping service for ever.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    # After uvicorn configured its loggers: access lines lose credential query values and tokens.
    install_redaction(secret_values(settings))
    server = SignalledServer(config)
    server.run()
    if not server.started:  # as uvicorn.run: the port was taken, the app failed to start
        raise typer.Exit(code=3)


def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """What `make run` does: the lab, the store under ./var, a first scan, and the service."""
    import secrets
    import signal
    import socket
    from types import FrameType

    import uvicorn
    from pydantic import SecretStr

    from api.app import create_app
    from cybermission.config import secret_values
    from cybermission.db import session_scope
    from cybermission.logs import install_redaction
    from cybermission.scans.scopes import build_guard
    from cybermission.scans.service import create_scan_run

    settings = start()
    if settings.admin_token is None:
        token_file = VAR / "admin-token"
        VAR.mkdir(exist_ok=True)
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(32))
            token_file.chmod(0o600)
        settings = settings.model_copy(
            update={"admin_token": SecretStr(token_file.read_text().strip())}
        )
    engine = open_store(settings, migrate=True)
    started_lab = lab_pid() is None  # a lab someone started by hand stays up after the demo
    devices = lab_start()
    lab_hosts = sorted({d["address"] for d in devices})
    with session_scope(engine) as session:
        run = create_scan_run(
            session,
            guard=build_guard(session, settings),
            targets=lab_hosts,
            ports=None,
            settings=settings,
            requested_by="demo",
        )
        run_id = run.id
    err().print(f"lab: {len(devices)} devices on {len(lab_hosts)} addresses; first scan {run_id}")
    err().print(
        f"API: http://{host}:{port}/docs  token: {VAR / 'admin-token'} "
        "(Authorization: Bearer <token>)"
    )
    engine.dispose()
    application = create_app(settings, background=True)

    def stop_lab() -> None:
        if started_lab and lab_pid() is not None:
            lab_down()

    class DemoServer(uvicorn.Server):
        """uvicorn's server, running the first scan among the application's scans (a SIGTERM or
        Ctrl-C ends it ``interrupted`` with the signal's name, as ``serve`` ends its scans) and
        stopping the lab once the application has stopped: uvicorn then ends the process by
        the signal it caught, so nothing after :meth:`run` runs (the scan was left "running"
        and the lab up)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            application.state.stop_signal = signal.Signals(sig).name
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                application.state.scan_tasks.start(run_id)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().shutdown(sockets)
            finally:
                stop_lab()

    config = uvicorn.Config(application, host=host, port=port, log_level="info")
    install_redaction(secret_values(settings))
    try:
        DemoServer(config).run()
    finally:
        stop_lab()  # it did not start, or stopped without a signal
