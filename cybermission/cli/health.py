"""``cybermission health``: exit 0 when what this process needs answers (container healthchecks).

The API has ``/readyz``; the central worker and a sensor have no HTTP side, so their
healthcheck runs this: the store answers at this code's revision, and (``--broker``) the broker
accepts a TLS login with the pinned CA; ``--bundle`` checks a sensor's broker only (a sensor has
no store). Exit 2 with the reason otherwise.
"""

from pathlib import Path
from typing import Annotated

import typer

from cybermission.cli.runtime import err, fail, open_store, start

# A healthcheck must answer before the container runtime's own timeout (compose: 10 s).
TIMEOUT_S = 5.0


def health(
    broker: Annotated[
        bool, typer.Option(help="Also log in to the broker of the settings (central).")
    ] = False,
    bundle: Annotated[
        Path | None,
        typer.Option(help="A sensor's enrolment bundle: check its broker only, no store."),
    ] = None,
) -> None:
    """Check the store (and the broker); exit 0 when they answer."""
    from sqlalchemy import text

    from cybermission.errors import CybermissionError
    from cybermission.sensors.agent import Bundle
    from cybermission.sensors.broker import check_broker
    from cybermission.sensors.topology import amqp_ssl, central_ssl

    settings = start()
    try:
        if bundle is not None:
            loaded = Bundle.load(bundle)
            ssl = amqp_ssl(loaded.broker_url, loaded.ca_pem)
            check_broker(loaded.broker_url, timeout_s=TIMEOUT_S, ssl=ssl)
            err().print("broker: ok")
            return
        engine = open_store(settings)  # exit 2 when the store is behind this code
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
        err().print("store: ok")
        if broker:
            ssl = central_ssl(settings.broker)
            check_broker(settings.broker.url, timeout_s=TIMEOUT_S, ssl=ssl)
            err().print("broker: ok")
    except CybermissionError as exc:
        raise fail(exc) from exc
