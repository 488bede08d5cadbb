"""First step of deploy/compose.yaml: the stack's secrets and the broker's TLS, made once.

``python stack_init.py OUT`` writes, only where missing (a restart keeps what the database and
the broker already hold):

- ``OUT/postgres/password``: the database password (read by postgres through
  ``POSTGRES_PASSWORD_FILE``);
- ``OUT/rabbitmq/``: a private CA, the broker's certificate for the name ``rabbitmq``, its key,
  and ``rabbitmq.conf`` (TLS listeners only: AMQP 5671, management 15671; the service user);
- ``OUT/app/``: what cybermission reads through ``CYBERMISSION_*_FILE`` variables: the
  database URL, the broker URL and management password, the admin token, and the broker's CA
  to pin.

Each consumer gets its own volume and owner (postgres and rabbitmq run as uid 999 in their
images, cybermission as 10001), files mode 0400. Run as root in the cybermission image, which
has Python and ``cryptography``. A production site brings its own CA and secret store instead.
"""

import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BROKER_NAME = "rabbitmq"  # the compose service name: what the certificate must carry
DB_USER = "cybermission"
BROKER_USER = "cybermission"
OWNERS = {"postgres": 999, "rabbitmq": 999, "app": 10001}
VALID_DAYS = 825  # the longest a TLS server certificate is accepted by common clients

RABBITMQ_CONF = """\
# Written by deploy/stack_init.py. TLS only: nothing listens in clear.
listeners.tcp = none
listeners.ssl.default = 5671
ssl_options.cacertfile = /run/rabbitmq/ca.pem
ssl_options.certfile = /run/rabbitmq/broker.pem
ssl_options.keyfile = /run/rabbitmq/broker.key
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
management.tcp.port = 15672
management.tcp.ip = 127.0.0.1
management.ssl.port = 15671
management.ssl.cacertfile = /run/rabbitmq/ca.pem
management.ssl.certfile = /run/rabbitmq/broker.pem
management.ssl.keyfile = /run/rabbitmq/broker.key
default_user = {user}
default_pass = {password}
default_vhost = cybermission
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
default_user_tags.administrator = true
loopback_users = none
"""


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def broker_tls(name: str) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, broker certificate for ``name``, broker key), PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cybermission stack CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    encoding = serialization.Encoding.PEM
    return ca.public_bytes(encoding), cert.public_bytes(encoding), _pem(key)


def _write(path: Path, content: bytes, owner: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    if os.geteuid() == 0:
        os.chown(path, owner, owner)


def _read_or_make(path: Path, make: bytes, owner: int) -> bytes:
    if not path.exists():
        _write(path, make, owner)
    return path.read_bytes()


def initialise(out: Path) -> list[Path]:
    """Write whatever is missing under ``out``; returns the files written."""
    before = {p for p in out.rglob("*") if p.is_file()}
    pg_password = _read_or_make(
        out / "postgres" / "password", secrets.token_urlsafe(24).encode(), OWNERS["postgres"]
    ).decode()
    rabbit = out / "rabbitmq"
    if not (rabbit / "broker.key").exists():
        ca, cert, key = broker_tls(BROKER_NAME)
        _write(rabbit / "ca.pem", ca, OWNERS["rabbitmq"])
        _write(rabbit / "broker.pem", cert, OWNERS["rabbitmq"])
        _write(rabbit / "broker.key", key, OWNERS["rabbitmq"])
    broker_password = _read_or_make(
        out / "app" / "broker-management-password",
        secrets.token_urlsafe(24).encode(),
        OWNERS["app"],
    ).decode()
    conf = RABBITMQ_CONF.format(user=BROKER_USER, password=broker_password)
    _read_or_make(rabbit / "rabbitmq.conf", conf.encode(), OWNERS["rabbitmq"])
    app = out / "app"
    database_url = (
        f"postgresql+psycopg://{DB_USER}:{quote(pg_password, safe='')}@postgres:5432/cybermission"
    )
    _read_or_make(app / "database-url", database_url.encode(), OWNERS["app"])
    broker_url = (
        f"amqps://{BROKER_USER}:{quote(broker_password, safe='')}@{BROKER_NAME}:5671/cybermission"
    )
    _read_or_make(app / "broker-url", broker_url.encode(), OWNERS["app"])
    _read_or_make(app / "admin-token", secrets.token_urlsafe(32).encode(), OWNERS["app"])
    _read_or_make(app / "broker-ca.pem", (rabbit / "ca.pem").read_bytes(), OWNERS["app"])
    return sorted(p for p in out.rglob("*") if p.is_file() and p not in before)


if __name__ == "__main__":
    written = initialise(Path(sys.argv[1]))
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} files written; the others were kept")
