"""A probe for tests of the probing side: the ``Probe`` protocol's declarations, on TCP 502,
with nothing sent unless a subclass's ``observe`` says so."""

from typing import ClassVar

from cybermission.probes import (
    IdentityAuthority,
    Intrusiveness,
    Manifest,
    Observation,
    ProbeTarget,
    Transport,
)


class FakeTcpProbe:
    name: ClassVar[str] = "fake"
    protocol: ClassVar[str] = "fake"
    default_ports: ClassVar[tuple[int, ...]] = (502,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    manifest: ClassVar[Manifest] = Manifest(entries=())
    optional: ClassVar[bool] = False
    order: ClassVar[int] = 100
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE

    def observation(self, target: ProbeTarget, facts: dict[str, object]) -> Observation:
        return Observation(
            probe=self.name,
            protocol=self.protocol,
            address=target.address,
            port=target.port,
            transport=Transport.TCP,
            facts=facts,  # type: ignore[arg-type]
        )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        raise NotImplementedError
