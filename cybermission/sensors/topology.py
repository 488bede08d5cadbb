"""The broker's topology and its provisioning through the management API (no AMQP client here).

Site isolation is the broker's job (SCALE-OUT.md): each site has its own vhost ``site.<site id>``
with a ``scan`` queue (single active consumer: one chunk at a time per site) and a ``results``
exchange and queue, and a ``control`` fanout exchange with one notice queue per sensor (a run
cancelled: its chunks are not to be probed). A sensor's user may read ``scan`` and its own notice
queue and write ``results`` in its own vhost, and nothing else. A shovel per site moves
``results`` to the central vhost and stamps the site as the routing key, so where a result came
from is stated by the broker, never by the message.

Only HTTP is used here, so the API's ``/metrics`` can read queue depths without importing the
AMQP stack (import-linter: only the sensors' workers talk to Celery and AMQP).
"""

import logging
import re
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from cybermission.config import BrokerSettings
from cybermission.errors import CybermissionError, ValidationError

logger = logging.getLogger(__name__)

SCAN_QUEUE = "scan"
RESULTS = "results"  # exchange and queue in each site vhost
INGEST = "ingest"  # topic exchange and queue in the central vhost
# Fanout exchange in each site vhost: the centre's notices (a run cancelled) to every sensor of
# the site, each through its own queue (a standby sensor taking over the scan queue has its own
# copy: one sensor reading a notice never hides it from another).
CONTROL = "control"


def control_queue(sensor_id: str) -> str:
    """The queue of one sensor's notices in its site vhost."""
    return f"{CONTROL}.{sensor_id}"


class BrokerError(CybermissionError):
    """The broker refused or could not be reached; the message says which operation."""


def site_vhost(site_id: str) -> str:
    """The vhost of a site, named by the site's id: slugs are unique per organisation only, and
    vhosts (and the routing keys the shovels stamp) are one namespace for every organisation. An
    id has no '.', so the routing key ``site.<id>`` is one topic word after ``site``."""
    return f"site.{site_id}"


def vhost_url(url: str, vhost: str, *, username: str | None = None, password: str = "") -> str:
    """``url`` pointed at ``vhost`` (and, when given, logged in as ``username``)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if username is not None:
        netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{netloc}"
    elif "@" in parts.netloc:
        netloc = parts.netloc
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), "", ""))


def amqp_ssl(url: str, ca_pem: str | None) -> dict[str, Any] | bool:
    """py-amqp TLS options for ``url``: False for amqp://; for amqps:// a context that trusts
    ``ca_pem`` alone (pinned, not the system store) and checks the broker's host name.

    py-amqp builds the context from ``context`` with ``ssl.create_default_context``: given
    ``cadata``, it loads that CA only.
    """
    if not url.startswith("amqps"):
        return False
    if not ca_pem:
        raise ValidationError("broker: amqps needs the broker's CA to pin (a PEM)")
    return {
        "context": {"cadata": ca_pem, "check_hostname": True},
        "server_hostname": urlsplit(url).hostname,
    }


def central_ca(settings: BrokerSettings) -> Path | None:
    return settings.central_ca_file or settings.ca_file


def central_ssl(settings: BrokerSettings) -> dict[str, Any] | bool:
    """TLS options of the central service's own AMQP connections (``settings.url``)."""
    ca = central_ca(settings)
    try:
        pem = ca.read_text() if ca is not None else None
    except OSError as exc:
        raise ValidationError(f"broker: cannot read the CA file {ca}: {exc}") from exc
    return amqp_ssl(settings.url, pem)


@dataclass(frozen=True, slots=True)
class Permissions:
    configure: str
    write: str
    read: str


def sensor_permissions(sensor_id: str) -> Permissions:
    """Least privilege of a sensor (RabbitMQ access control: regexes on resource names): read
    the scan queue and its own notices, write results, declare nothing."""
    own = re.escape(control_queue(sensor_id))
    return Permissions(configure="^$", write=f"^{RESULTS}$", read=f"^({SCAN_QUEUE}|{own})$")


class Management:
    """A small client of the RabbitMQ management HTTP API (the provisioning side)."""

    def __init__(self, settings: BrokerSettings, *, timeout_s: float = 10.0) -> None:
        self._settings = settings
        ca = central_ca(settings)
        self._client = httpx.Client(
            base_url=settings.management_url.rstrip("/") + "/api",
            auth=(settings.management_user, settings.management_password.get_secret_value()),
            timeout=timeout_s,
            # https management: the pinned CA when one is set, else the system store.
            verify=ssl.create_default_context(cafile=str(ca)) if ca is not None else True,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Management":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BrokerError(f"management API {method} {path}: {exc}") from exc
        if response.status_code == 404 and method == "DELETE":
            return None
        if response.status_code >= 400:
            raise BrokerError(
                f"management API {method} {path}: {response.status_code} {response.text[:200]}"
            )
        return response.json() if response.content else None

    @staticmethod
    def _q(name: str) -> str:
        return quote(name, safe="")

    def central_user(self) -> str:
        return urlsplit(self._settings.url).username or "guest"

    def ensure_central(self) -> None:
        """The central vhost with its ingest exchange (topic, keyed by site) and queue."""
        vhost = self._q(self._settings.central_vhost)
        self._call("PUT", f"/vhosts/{vhost}", {})
        self.set_permissions(
            self._settings.central_vhost, self.central_user(), Permissions(".*", ".*", ".*")
        )
        self._call("PUT", f"/exchanges/{vhost}/{INGEST}", {"type": "topic", "durable": True})
        self._call("PUT", f"/queues/{vhost}/{INGEST}", {"durable": True})
        self._call("POST", f"/bindings/{vhost}/e/{INGEST}/q/{INGEST}", {"routing_key": "site.*"})

    def ensure_site(self, site_id: str) -> None:
        """A site's vhost, queues, exchange and the shovel to the central ingest exchange."""
        self.ensure_central()
        name = site_vhost(site_id)
        vhost = self._q(name)
        self._call("PUT", f"/vhosts/{vhost}", {})
        self.set_permissions(name, self.central_user(), Permissions(".*", ".*", ".*"))
        # One chunk at a time per site: the site's packet budget is global.
        self._call(
            "PUT",
            f"/queues/{vhost}/{SCAN_QUEUE}",
            {"durable": True, "arguments": {"x-single-active-consumer": True}},
        )
        self._call("PUT", f"/exchanges/{vhost}/{RESULTS}", {"type": "direct", "durable": True})
        self._call("PUT", f"/queues/{vhost}/{RESULTS}", {"durable": True})
        self._call("POST", f"/bindings/{vhost}/e/{RESULTS}/q/{RESULTS}", {"routing_key": RESULTS})
        # Direct (in-node) URIs: the shovel needs no credentials and no network.
        self._call(
            "PUT",
            f"/parameters/shovel/{vhost}/{RESULTS}-to-central",
            {
                "value": {
                    "src-protocol": "amqp091",
                    "src-uri": f"amqp:///{quote(name, safe='')}",
                    "src-queue": RESULTS,
                    "dest-protocol": "amqp091",
                    "dest-uri": f"amqp:///{quote(self._settings.central_vhost, safe='')}",
                    "dest-exchange": INGEST,
                    # The site, stamped by the broker: ingestion trusts this, not the body.
                    "dest-exchange-key": name,
                    "ack-mode": "on-confirm",
                }
            },
        )

    def ensure_sensor(self, site_id: str, sensor_id: str) -> None:
        """A sensor's notice queue, bound to its site's control exchange.

        Notices expire on their own (each says until when): a sensor away for long does not
        find a backlog of stale ones."""
        vhost = self._q(site_vhost(site_id))
        queue = self._q(control_queue(sensor_id))
        self._call("PUT", f"/exchanges/{vhost}/{CONTROL}", {"type": "fanout", "durable": True})
        self._call("PUT", f"/queues/{vhost}/{queue}", {"durable": True})
        self._call("POST", f"/bindings/{vhost}/e/{CONTROL}/q/{queue}", {"routing_key": ""})

    def delete_sensor(self, site_id: str, sensor_id: str) -> None:
        vhost = self._q(site_vhost(site_id))
        self._call("DELETE", f"/queues/{vhost}/{self._q(control_queue(sensor_id))}")

    def delete_site(self, site_id: str) -> None:
        self._call("DELETE", f"/vhosts/{self._q(site_vhost(site_id))}")

    def delete_vhost(self, vhost: str) -> None:
        self._call("DELETE", f"/vhosts/{self._q(vhost)}")

    def create_user(self, username: str, password: str) -> None:
        self._call("PUT", f"/users/{self._q(username)}", {"password": password, "tags": ""})

    def delete_user(self, username: str) -> None:
        self._call("DELETE", f"/users/{self._q(username)}")

    def set_permissions(self, vhost: str, username: str, perms: Permissions) -> None:
        self._call(
            "PUT",
            f"/permissions/{self._q(vhost)}/{self._q(username)}",
            {"configure": perms.configure, "write": perms.write, "read": perms.read},
        )

    def clear_permissions(self, vhost: str, username: str) -> None:
        self._call("DELETE", f"/permissions/{self._q(vhost)}/{self._q(username)}")

    def connections(self) -> list[dict[str, Any]]:
        """Open client connections: ``name``, ``user`` and ``vhost`` of each."""
        return list(self._call("GET", "/connections?columns=name,user,vhost") or [])

    def close_connections(self, username: str | None = None, *, vhost: str | None = None) -> int:
        """Close every connection of ``username`` (or of anyone in ``vhost``); returns how many.

        A connection that closed on its own meanwhile is not an error (404 on DELETE).
        """
        closed = 0
        for connection in self.connections():
            if username is not None and connection.get("user") != username:
                continue
            if vhost is not None and connection.get("vhost") != vhost:
                continue
            self._call("DELETE", f"/connections/{self._q(connection['name'])}")
            closed += 1
        return closed

    def consumer_connections(self, vhost: str) -> set[str]:
        """Names of the connections that hold a consumer in ``vhost`` (the workers' links).

        The management API lists connections and consumers from its statistics, a few seconds
        behind: a caller that must reach a consumer waits until it is listed here."""
        consumers = self._call("GET", f"/consumers/{self._q(vhost)}") or []
        return {
            str(c["channel_details"]["connection_name"])
            for c in consumers
            if c.get("channel_details", {}).get("connection_name")
        }

    def queue_depth(self, vhost: str, queue: str) -> int | None:
        try:
            info = self._call("GET", f"/queues/{self._q(vhost)}/{self._q(queue)}")
        except BrokerError:
            return None
        return int(info.get("messages", 0)) if info else None

    def queue_consumers(self, vhost: str, queue: str) -> int:
        """How many consumers ``queue`` has now (0 where the queue or its vhost is absent)."""
        try:
            info = self._call("GET", f"/queues/{self._q(vhost)}/{self._q(queue)}")
        except BrokerError:
            return 0
        return int(info.get("consumers", 0)) if info else 0


def new_password() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex
