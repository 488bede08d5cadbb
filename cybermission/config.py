"""Settings: one pydantic-settings model, read from ``CYBERMISSION_*`` variables by a factory.

Secret settings (marked :data:`SECRET`) are also read from files, so a password never has to sit
in the environment of a process (``/proc/<pid>/environ``, ``docker inspect``, unit files):

- ``<NAME>_FILE``: the path of a file holding the value (Docker and Kubernetes secrets mounted
  under ``/run/secrets``), e.g. ``CYBERMISSION_ADMIN_TOKEN_FILE=/run/secrets/admin_token``;
- systemd credentials: a file named ``<NAME>`` in ``$CREDENTIALS_DIRECTORY``
  (``LoadCredential=CYBERMISSION_ADMIN_TOKEN:/etc/cybermission/admin-token``).

``<NAME>`` is the setting's variable (``CYBERMISSION_BROKER__MANAGEMENT_PASSWORD``). One trailing
newline is dropped. Precedence: explicit overrides, then the variable itself, then ``<NAME>_FILE``,
then the credentials directory; the variable and its ``_FILE`` together are refused as ambiguous.
"""

import os
from collections.abc import Iterator
from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cybermission.errors import ValidationError

ENV_PREFIX = "CYBERMISSION_"
NESTED_DELIMITER = "__"
FILE_SUFFIX = "_FILE"
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"  # set by systemd for units with LoadCredential=


def packaged_rules_dir() -> Path:
    """The rule packs installed with the package: ``rules/``, shipped as ``cybermission/rulepacks``.

    Found from the package, not the working folder, so ``scan`` and ``import`` work from anywhere.
    """
    return Path(str(files("cybermission") / "rulepacks")).resolve()


class SecretSetting:
    """Field marker: this setting holds a secret and may also be read from a file."""

    def __repr__(self) -> str:
        return "SECRET"


SECRET = SecretSetting()


class PacingProfile(StrEnum):
    """Named pacing presets: conservative for real plants, fast for the loopback lab."""

    SAFE = "safe"
    LAB = "lab"


class PacingSettings(BaseModel):
    """How fast the scanners may go. Defaults are for fragile OT devices."""

    profile: PacingProfile = PacingProfile.SAFE
    global_rate_per_s: float = Field(default=200.0, gt=0)
    per_host_rate_per_s: float = Field(default=2.0, gt=0)
    hosts_in_flight: int = Field(default=64, ge=1)
    sockets_in_flight: int = Field(default=512, ge=1)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    probe_timeout_s: float = Field(default=5.0, gt=0)
    # Hosts being identified at once. A probe's timeout starts when it starts talking to the
    # device, so this bounds how much the event loop (and the devices) juggle at a time; hosts
    # waiting for a slot wait untimed.
    probes_in_flight: int = Field(default=64, ge=1)
    # Resets, early closes and silences in a row that back a device off for the rest of the run.
    strikes_before_back_off: int = Field(default=3, ge=1)
    # Ask a device whose TCP identification went unanswered once more, at the end of the run
    # (not if it was backed off; within the probes' per-device request limits).
    retry_unanswered: bool = True
    # Processes that sweep and identify (one event loop each): 0 is one per core for a range of
    # at least 256 addresses per core; 1 keeps everything in this process.
    processes: int = Field(default=0, ge=0, le=64)

    def effective(self) -> "PacingSettings":
        """The lab profile lifts every limit for loopback benchmarks; safe keeps the values."""
        if self.profile is PacingProfile.LAB:
            return PacingSettings(
                profile=PacingProfile.LAB,
                global_rate_per_s=1_000_000.0,
                per_host_rate_per_s=1_000_000.0,
                hosts_in_flight=4096,
                sockets_in_flight=15_000,
                connect_timeout_s=self.connect_timeout_s if self.connect_timeout_s != 2.0 else 1.0,
                probe_timeout_s=self.probe_timeout_s if self.probe_timeout_s != 5.0 else 2.0,
                # Not lifted: more hosts in flight only lengthen each probe's wait for a busy
                # loop or device (measured: 256 lost 309 of 1,024 identities at load 10, 32
                # lost 4, in the same time), so the lab keeps the safe count.
                probes_in_flight=self.probes_in_flight,
                strikes_before_back_off=self.strikes_before_back_off,
                retry_unanswered=self.retry_unanswered,
                processes=self.processes,
            )
        return self


class BrokerSettings(BaseModel):
    """The RabbitMQ broker of the distributed mode (SCALE-OUT.md); unused in the embedded mode."""

    # The central service's AMQP account; the vhost part is replaced per site (``site.<site id>``:
    # ids, as slugs are unique per organisation only; sensors/topology.py site_vhost).
    url: Annotated[str, SECRET] = "amqp://guest:guest@127.0.0.1:5672/"
    # The management API provisions per-site vhosts, users, permissions and shovels.
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = "guest"
    management_password: Annotated[SecretStr, SECRET] = SecretStr("guest")
    # Address written into enrolment bundles: what a sensor dials (amqps://... in production).
    public_url: str = "amqp://127.0.0.1:5672/"
    # PEM file of the CA that signs the broker's certificate; pinned by every sensor.
    ca_file: Path | None = None
    # The CA the central service pins for its own amqps:// ``url`` and an https management_url,
    # when it reaches the broker under another name or CA than the sensors do; else ca_file.
    central_ca_file: Path | None = None
    central_vhost: str = "cybermission"
    confirm_timeout_s: float = Field(default=10.0, gt=0)
    # Chunks are sized to take about this long at the site's pacing (well under the 30-minute
    # consumer timeout of RabbitMQ 3.10), and never hold more hosts than chunk_max_hosts.
    chunk_target_s: float = Field(default=600.0, gt=0)
    chunk_max_hosts: int = Field(default=4096, ge=1)
    # A chunk not done this long after dispatch is re-dispatched, at most chunk_attempts times.
    chunk_deadline_s: float = Field(default=1800.0, gt=0)
    chunk_attempts: int = Field(default=3, ge=1)
    # Length of the scan window when a scan gives none: chunks queued longer are skipped.
    window_s: float = Field(default=4 * 3600.0, gt=0)


class RunSettings(BaseModel):
    """Ownership of scan runs: how often the owner proves it lives, and when others stop waiting.

    A run whose heartbeat is older than ``lease_s`` (or whose owner's process is gone from this
    host) is closed ``interrupted`` by the first process that notices: any service at start-up,
    and the reaper of ``serve`` every ``reaper_interval_s``.
    """

    heartbeat_s: float = Field(default=10.0, gt=0)
    lease_s: float = Field(default=90.0, gt=0)
    reaper_interval_s: float = Field(default=30.0, gt=0)
    # How long a transient store error (lost connection, SQLite busy) is retried before the
    # run fails with it; a permanent one (disk full, schema mismatch) fails the run at once.
    store_retry_s: float = Field(default=60.0, gt=0)
    # A scheduled run found interrupted (its service was stopped or died) is resumed by the next
    # tick, where it stopped, up to this many times; then, or with 0, the schedule's next run
    # starts over.
    scheduled_resumes: int = Field(default=3, ge=0)
    # Results the store refuses with a transient error for ``spool_after_s`` wait in a durable
    # local spool file under ``spool_dir`` (one per run, removed once written) while the run goes
    # on; the spool is retried every ``spool_flush_s``, and the run's end waits for it up to
    # ``spool_wait_s`` (then the run fails, its results still on disk).
    spool_dir: Path = Path("var/spool")
    spool_after_s: float = Field(default=5.0, ge=0)
    spool_flush_s: float = Field(default=2.0, gt=0)
    spool_wait_s: float = Field(default=3600.0, gt=0)


class StoreSettings(BaseModel):
    """The store's PostgreSQL connections: how a peer gone silent is noticed (libpq options, and
    a deadline on each unit of a run's store work; ``store_links.py``). SQLite has no
    connection to lose and ignores them.
    """

    # Seconds a new connection may take to be established.
    connect_timeout_s: int = Field(default=10, ge=1)
    # TCP keepalives: an idle connection is probed after keepalives_idle_s, every
    # keepalives_interval_s, and dropped after keepalives_count probes without an answer.
    keepalives_idle_s: int = Field(default=30, ge=1)
    keepalives_interval_s: int = Field(default=10, ge=1)
    keepalives_count: int = Field(default=3, ge=1)
    # Data sent and not acknowledged for this long drops the connection (TCP_USER_TIMEOUT)
    # instead of retransmitting for about 15 minutes; 0 keeps the system's behaviour.
    tcp_user_timeout_s: float = Field(default=30.0, ge=0)
    # A unit of store work (creating a run, a batch of its results, a heartbeat, its end,
    # reaping orphaned runs, reopening one to resume it, cancelling one and waiting for it, a
    # scheduler tick, a site sensor's part), its pre-ping included, that has not had an answer
    # for this long gives its connection up: the call fails as a lost connection does (retried,
    # then spooled), never hangs. Catches what TCP cannot see: a peer that still acknowledges
    # but no longer answers.
    stall_s: float = Field(default=120.0, gt=0)


class SensorSettings(BaseModel):
    """A site sensor's own settings (the bundle holds its broker address and credentials)."""

    journal_path: Path = Path("var/sensor-journal.db")
    # Results waiting for the broker's confirm are retried this often while the link is down.
    flush_interval_s: float = Field(default=5.0, gt=0)
    # The centre's notices (a run cancelled) are read before each chunk and this often during
    # one: a cancelled run's chunk under way stops within about this long.
    control_poll_s: float = Field(default=5.0, gt=0)


class AlertSettings(BaseModel):
    """How alert deliveries outlive a receiver's outage (cybermission/alerts/README.md)."""

    # A delivery is retried this long after it was planned (or redelivered) before it becomes a
    # dead letter: long enough for a night's maintenance of the receiver.
    retry_horizon_s: float = Field(default=24 * 3600.0, gt=0)
    # Exponential back-off between attempts: base doubling up to the cap, with jitter. The cap
    # bounds how long a receiver that came back waits for its backlog.
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)
    # A hole in the event ids (a transaction still open when later events committed) is waited
    # for this long before the outbox presumes it rolled back.
    outbox_gap_grace_s: float = Field(default=600.0, gt=0)
    poll_s: float = Field(default=1.0, gt=0)


class TerritorySettings(BaseModel):
    """What the coordinator may see of the territory (cybermission/territory/README.md)."""

    # An aggregate that fewer organisations than this hide a part of is withheld.
    threshold: int = Field(default=3, ge=2, le=1000)


class Settings(BaseSettings):
    """Every setting of the product. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER, extra="ignore"
    )

    # A PostgreSQL URL carries the database password.
    database_url: Annotated[str, SECRET] = "sqlite:///var/cybermission.db"
    # Networks authorised when no scope is stored: loopback only.
    default_scope_cidrs: list[str] = Field(default_factory=lambda: ["127.0.0.0/8"])
    # TCP ports swept. None: every TCP port the installed probes declare (``cybermission probes``
    # lists them), resolved when a run is created; a port no probe declares is swept only if
    # listed here.
    ports: list[int] | None = None
    # UDP ports probed on every target (no sweep: UDP silence is ambiguous); only ports with a UDP
    # probe are used. None: every UDP port the installed probes declare; []: no UDP.
    udp_ports: list[int] | None = None
    pacing: PacingSettings = Field(default_factory=PacingSettings)
    # "sweep" (built in) or an installed engine such as "nmap" (the optional nmap extra).
    discovery_engine: str = "sweep"
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    sensor: SensorSettings = Field(default_factory=SensorSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    runs: RunSettings = Field(default_factory=RunSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    territory: TerritorySettings = Field(default_factory=TerritorySettings)
    # Probes that may disturb a device (unit-id walk, ...) only run when named here.
    enabled_optional_probes: list[str] = Field(default_factory=list)
    # Consecutive complete scans of its scope that must miss a device (or an open port of a device
    # that answers) before it is marked unreachable (closed); one missed answer is not a departure.
    absent_after_scans: int = Field(default=2, ge=1, le=100)
    # How often the scheduler leader asks the store what is due (and a lost leader is replaced).
    schedule_tick_s: float = Field(default=15.0, gt=0)
    # The packaged rule packs by default; a site's own folders replace them (list both to add).
    rules_dirs: list[Path] = Field(default_factory=lambda: [packaged_rules_dir()])
    admin_token: Annotated[SecretStr | None, SECRET] = None
    # Lifetime of a dashboard sign-in (browser session cookie); sign in again afterwards.
    session_ttl_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600.0)
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: overrides, the variables, then the secret files.
        return (init_settings, env_settings, SecretFileSource(settings_cls), dotenv_settings)


def secret_settings(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """The path of every setting marked :data:`SECRET` (``("broker", "url")``), nested too."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        if any(isinstance(m, SecretSetting) for m in field.metadata):
            yield path
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from secret_settings(field.annotation, path)


def secret_values(settings: Settings) -> list[str]:
    """The configured secrets themselves (a URL's password, not the URL), for log redaction."""
    values: list[str] = []
    for path in secret_settings(Settings):
        node: object = settings
        for part in path:
            node = getattr(node, part)
        if node is None:
            continue
        text = node.get_secret_value() if isinstance(node, SecretStr) else str(node)
        if "://" in text:
            password = urlsplit(text).password
            if password:
                values.append(unquote(password))
                values.append(password)
        elif text:
            values.append(text)
    return values


def setting_variable(path: tuple[str, ...]) -> str:
    """The environment variable of a setting: ``CYBERMISSION_BROKER__URL``."""
    return ENV_PREFIX + NESTED_DELIMITER.join(path).upper()


class SecretFileSource(PydanticBaseSettingsSource):
    """Secret settings read from ``<NAME>_FILE`` or ``$CREDENTIALS_DIRECTORY/<NAME>``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole (nested) mapping

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        credentials = os.environ.get(CREDENTIALS_DIRECTORY)
        for path in secret_settings(Settings):
            value = _secret_from_files(setting_variable(path), credentials)
            if value is None:
                continue
            node = found
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        return found


def _secret_from_files(variable: str, credentials: str | None) -> str | None:
    pointer = os.environ.get(variable + FILE_SUFFIX)
    if pointer is not None:
        if variable in os.environ:
            raise ValidationError(
                f"{variable} and {variable}{FILE_SUFFIX} are both set: keep one of them"
            )
        return _read_secret(Path(pointer), variable + FILE_SUFFIX)
    if credentials:
        candidate = Path(credentials) / variable
        if candidate.is_file():
            return _read_secret(candidate, f"${CREDENTIALS_DIRECTORY}/{variable}")
    return None


def _read_secret(path: Path, source: str) -> str:
    # The error names the variable and the path, never the content.
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"{source}: cannot read {path} ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{source}: {path} is not UTF-8 text") from exc
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValidationError(f"{source}: {path} is empty")
    return value


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top (tests, CLI flags)."""
    return Settings(**overrides)  # type: ignore[arg-type]
