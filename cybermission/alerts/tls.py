"""TLS for the alert channels that speak it (syslog over TLS, MQTT over TLS): one client context.

A channel's certificates are stored in its config as PEM text, not as paths: the API manages
channels, every replica of the service sends, and none of them shares a file system with the
person who configured it. The server certificate is always verified, name included (RFC 5425
§5.2 allows no weaker check for syslog; MQTT brokers get the same); ``ca_pem`` names a private CA,
otherwise the system's trust store is used. A client certificate (mutual TLS) is optional.
"""

import ssl
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from cybermission.private_files import write_private_file

# A PEM bundle of a few certificates; bounded so a config stays a config.
MAX_PEM_CHARS = 64_000


class TlsOptions(BaseModel):
    """What a channel's TLS needs beyond the host and port it already has."""

    ca_pem: str | None = Field(default=None, max_length=MAX_PEM_CHARS)
    client_cert_pem: str | None = Field(default=None, max_length=MAX_PEM_CHARS)
    # Secret: never returned by the API (SECRET_KEYS in channels.py).
    client_key_pem: str | None = Field(default=None, max_length=MAX_PEM_CHARS)

    @model_validator(mode="after")
    def _pems_parse(self) -> "TlsOptions":
        if (self.client_cert_pem is None) != (self.client_key_pem is None):
            raise ValueError("client_cert_pem and client_key_pem go together")
        if self.ca_pem is not None or self.client_cert_pem is not None:
            # A PEM that does not load is refused when the channel is stored, not at each send.
            try:
                client_context(self)
            except ssl.SSLError as exc:
                raise ValueError(f"a certificate or key does not load: {exc}") from exc
        return self

    def tls_options_given(self) -> bool:
        return any(v is not None for v in (self.ca_pem, self.client_cert_pem, self.client_key_pem))


class _SelfClosingSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails. paho-mqtt (2.2, ``_ssl_wrap_socket``) drops the
    socket of a failed handshake without closing it: a refused broker certificate would leak
    one socket per retry."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError:
            self.close()
            raise


def client_context(options: TlsOptions) -> ssl.SSLContext:
    """A TLS 1.2+ client context that verifies the server (``ssl.SSLError`` for a bad PEM)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.sslsocket_class = _SelfClosingSocket
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.ca_pem is not None:
        try:
            context.load_verify_locations(cadata=options.ca_pem)
        except ValueError as exc:  # "no certificate found" and friends
            raise ssl.SSLError(f"ca_pem: {exc}") from exc
    if options.client_cert_pem is not None and options.client_key_pem is not None:
        # The ssl module loads a chain only from files: a private (0600) one, removed at once.
        with tempfile.TemporaryDirectory(prefix="cybermission-tls-") as folder:
            chain = Path(folder) / "client.pem"
            write_private_file(chain, options.client_key_pem + "\n" + options.client_cert_pem)
            context.load_cert_chain(chain)
    return context
