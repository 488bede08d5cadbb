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
            )
        return self


# The OT port list swept by default: Modbus, S7/MMS, EtherNet/IP, DNP3, IEC 104, OPC UA,
# Niagara Fox (+TLS), FINS, PCWorx, ProConOS, CODESYS, Crimson, HART-IP, MQTT, web, FTP, Telnet,
# SSH.
DEFAULT_PORTS: tuple[int, ...] = (
    502,
    102,
    44818,
    20000,
    2404,
    4840,
    1911,
    4911,
    9600,
    1962,
    20547,
    2455,
    789,
    5094,
    1883,
    80,
    443,
    21,
    23,
    22,
)


DEFAULT_UDP_PORTS: tuple[int, ...] = (47808, 161, 3671, 5683, 44818, 9600)


class Settings(BaseSettings):
    """Every setting of the product. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="CYBERMISSION_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite:///var/cybermission.db"
    # Networks authorised when no scope is stored: loopback only.
    default_scope_cidrs: list[str] = Field(default_factory=lambda: ["127.0.0.0/8"])
    ports: list[int] = Field(default_factory=lambda: list(DEFAULT_PORTS))
    # UDP ports probed on every target (no sweep: UDP silence is ambiguous). BACnet/IP, SNMP,
    # KNXnet/IP, CoAP, EtherNet/IP, FINS; only ports that have a registered UDP probe are used.
    udp_ports: list[int] = Field(default_factory=lambda: list(DEFAULT_UDP_PORTS))
    pacing: PacingSettings = Field(default_factory=PacingSettings)
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
