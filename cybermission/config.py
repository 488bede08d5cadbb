"""Settings: one pydantic-settings model, read from ``CYBERMISSION_*`` variables by a factory."""

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Sweep processes (one event loop per core) for large ranges; 1 keeps everything in-process.
    processes: int = Field(default=1, ge=1, le=64)

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
                probes_in_flight=self.probes_in_flight if self.probes_in_flight != 64 else 256,
                strikes_before_back_off=self.strikes_before_back_off,
                processes=self.processes,
            )
        return self


class BrokerSettings(BaseModel):
    """The RabbitMQ broker of the distributed mode (SCALE-OUT.md); unused in the embedded mode."""

    # The central service's AMQP account; the vhost part is replaced per site (``site.<slug>``).
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The management API provisions per-site vhosts, users, permissions and shovels.
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = "guest"
    management_password: SecretStr = SecretStr("guest")
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


class SensorSettings(BaseModel):
    """A site sensor's own settings (the bundle holds its broker address and credentials)."""

    journal_path: Path = Path("var/sensor-journal.db")
    # Results waiting for the broker's confirm are retried this often while the link is down.
    flush_interval_s: float = Field(default=5.0, gt=0)


class Settings(BaseSettings):
    """Every setting of the product. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="CYBERMISSION_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite:///var/cybermission.db"
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
    # Probes that may disturb a device (unit-id walk, ...) only run when named here.
    enabled_optional_probes: list[str] = Field(default_factory=list)
    rules_dirs: list[Path] = Field(default_factory=lambda: [Path("rules")])
    admin_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top (tests, CLI flags)."""
    return Settings(**overrides)  # type: ignore[arg-type]
