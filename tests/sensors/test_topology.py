"""TLS to the broker with a pinned CA (sensors' bundles, the central service's ``central_ca_file``):
a TLS-terminating proxy on 127.30.250.2 in front of the machine's RabbitMQ stands in for an amqps
listener; a certificate from another CA, or for another name, is refused."""

import asyncio
import datetime as dt
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cybermission.errors import ValidationError
from cybermission.sensors.agent import Bundle
from cybermission.sensors.broker import INGEST_TASK, SCAN_TASK, publish_task
from cybermission.sensors.topology import (
    RESULTS,
    SCAN_QUEUE,
    BrokerError,
    Management,
    amqp_ssl,
    central_ssl,
    vhost_url,
)
from tests.sensors.conftest import Cluster
from tests.timing import scaled

PROXY = "127.30.250.2"
OTHER_NAME = "127.30.250.3"  # the same proxy, under a name its certificate does not carry


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], tmp: Path, address: str
) -> ssl.SSLContext:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "broker.pem", tmp / "broker.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    """An amqps endpoint: TLS on the proxy address, plain AMQP to 127.0.0.1:5672 behind it."""
    ca = _ca("cybermission test broker CA")
    context = _server_cert(ca, tmp_path, PROXY)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5672)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(relay, PROXY, 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    alias = await asyncio.start_server(relay, OTHER_NAME, port, ssl=context)
    try:
        yield port, _pem(ca[1])
    finally:
        server.close()
        alias.close()


async def test_sensor_publishes_over_tls_pinned_to_its_bundles_ca_and_refuses_another(
    cluster: Cluster, tls_broker: tuple[int, str]
) -> None:
    port, ca_pem = tls_broker
    a = cluster.site("a", ["127.30.17.0/29"])
    _, path = cluster.enroll(a)
    plain = cluster.bundle(path)
    url = (
        str(plain["broker_url"])
        .replace("amqp://", "amqps://")
        .replace("127.0.0.1:5672", f"{PROXY}:{port}")
    )
    pinned = Bundle(plain["sensor_id"], a, url, (), ca_pem=ca_pem)
    other = Bundle(plain["sensor_id"], a, url, (), ca_pem=_pem(_ca("someone else's CA")[1]))

    def publish(bundle: Bundle) -> None:
        publish_task(
            bundle.broker_url,
            exchange=RESULTS,
            routing_key=RESULTS,
            task_name=INGEST_TASK,
            args=[{}],
            task_id=str(uuid.uuid4()),
            timeout_s=scaled(5),
            ssl=bundle.ssl_options(),
        )

    await asyncio.to_thread(publish, pinned)  # confirmed by the broker through TLS
    with pytest.raises(BrokerError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await asyncio.to_thread(publish, other)
    with pytest.raises(ValidationError, match=r"bundle: .*CA"):
        Bundle(plain["sensor_id"], a, url, (), ca_pem=None).ssl_options()
    # The certificate names the proxy's address: the same CA under another name is refused.
    renamed = Bundle(plain["sensor_id"], a, url.replace(PROXY, OTHER_NAME), (), ca_pem=ca_pem)
    with pytest.raises(BrokerError, match=r"mismatch|doesn't match"):
        await asyncio.to_thread(publish, renamed)
    assert amqp_ssl(str(plain["broker_url"]), None) is False  # amqp:// on loopback: no TLS


async def test_central_relay_connects_over_tls_with_its_own_ca_file(
    cluster: Cluster, tls_broker: tuple[int, str], tmp_path: Path
) -> None:
    port, ca_pem = tls_broker
    a = cluster.site("a", ["127.30.18.0/29"])
    cluster.enroll(a, approve=False)
    ca_file = tmp_path / "central-ca.pem"
    ca_file.write_text(ca_pem)
    broker = cluster.settings.broker.model_copy(
        update={"url": f"amqps://guest:guest@{PROXY}:{port}/", "central_ca_file": ca_file}
    )
    tls = central_ssl(broker)
    assert tls is not False

    def publish() -> None:
        publish_task(
            vhost_url(broker.url, cluster.vhost(a)),
            exchange="",
            routing_key=SCAN_QUEUE,
            task_name=SCAN_TASK,
            args=[{}],
            task_id=str(uuid.uuid4()),
            timeout_s=scaled(5),
            ssl=tls,
        )

    await asyncio.to_thread(publish)
    with Management(cluster.settings.broker) as mgmt:
        await cluster.wait_for(lambda: mgmt.queue_depth(cluster.vhost(a), SCAN_QUEUE) == 1)
    missing = broker.model_copy(update={"central_ca_file": tmp_path / "absent.pem"})
    with pytest.raises(ValidationError, match="cannot read the CA file"):
        central_ssl(missing)
