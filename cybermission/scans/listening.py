"""Recording passive discovery: one run per capture import or listening session, stored in
batches as it goes (inventory, rules, findings through :func:`store_batch`, the scans' one path)
with the communication map beside it, whose conversations the rules judge too (``traffic``
documents: a write from a new client, a new talker, a login in clear, a zone crossed).

Nothing is sent and nothing is closed: traffic shows what talked, not what is gone.
"""

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.config import RunSettings, Settings
from cybermission.db import session_scope, utcnow
from cybermission.findings.service import FindingDraft, record_findings
from cybermission.guard import ScopeGuard
from cybermission.inventory.communications import (
    CommunicationSeen,
    RecordedCommunication,
    record_communications,
)
from cybermission.inventory.models import Device
from cybermission.probes import Observation
from cybermission.scans.control import LeaseThread, RunControl, StopRequest
from cybermission.scans.judging import asset_document, rule_drafts, traffic_subject
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import claim_run, this_process
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.probing import HostReport, ScanProgress
from cybermission.scans.recording import (
    WRITE_BATCH_HOSTS,
    RunState,
    finish_run,
    run_state,
    store_batch,
    store_reports,
)
from cybermission.scans.run_metrics import count_run_started
from cybermission.store_faults import retry_transient
from cybermission.store_links import store_deadline
from cybermission.traffic import Conversation

logger = logging.getLogger(__name__)


class PassiveRecorder:
    """The run of one passive source (``pcap:<file>``, ``listen:<interface>``), batch by batch."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        source: str,
        requested_by: str,
        run_id: str | None = None,
        guard: ScopeGuard | None = None,
        organization_id: str | None = None,
        site_id: str | None = None,
        owned: RunSettings | None = None,
        session: Session | None = None,
    ) -> None:
        """Start a run of ``source``, or go on with ``run_id`` (a site sensor's session whose
        recorder the centre dropped). ``guard`` places and partitions what is seen (a sensor's
        session: its site's scopes only); by default every scope of the store does.

        With ``session``, the run is created (or read) in the caller's transaction, not in one of
        its own: a sensor's session, its run and its first batch commit together or not at all.

        With ``owned`` (a new run executed by this process, a ``listen`` session), this process
        claims the run and renews its lease from a thread until :meth:`finish` or :meth:`fail`,
        as a scan's owner does: if the process dies the run is closed ``interrupted`` by the
        first process that notices (``ownership.reap_orphaned_runs``), and a cancel request or a
        lease taken by another process shows in :attr:`stop_request`."""
        self.engine = engine
        self.control = RunControl()
        self._lease: LeaseThread | None = None
        self._retry_s = settings.runs.store_retry_s
        owner = this_process() if owned is not None and run_id is None else None

        def begin(session: Session) -> RunState:
            """The run's row (made, unless ``run_id`` names it) and what storing it needs."""
            begun = run_id
            if begun is None:
                run = ScanRun(
                    targets=[source[:200]],
                    ports=[],
                    udp_ports=[],
                    requested_by=requested_by,
                    hosts_total=0,
                    status=ScanStatus.RUNNING,
                    started_at=utcnow(),
                    organization_id=organization_id,
                    site_id=site_id,
                )
                if owner is not None:
                    claim_run(run, owner)
                session.add(run)
                session.flush()
                count_run_started(session)
                begun = run.id
            return run_state(session, settings, begun, guard=guard)

        def attempt() -> RunState:
            # One transaction, bounded as a scan's start is: safe to run again.
            with store_deadline(engine, "start a passive run"), session_scope(engine) as own:
                return begin(own)

        self.state: RunState = (
            begin(session)
            if session is not None
            else retry_transient(attempt, horizon_s=self._retry_s, what="start a passive run")
        )
        run_id = self.state.run_id
        self.source = source
        self.addresses: set[str] = set()
        self.conversations = 0
        if owner is not None and owned is not None:
            self._lease = LeaseThread(
                engine, run_id, owner, interval_s=owned.heartbeat_s, control=self.control
            ).start()

    @property
    def stop_request(self) -> StopRequest | None:
        """Why the run must stop now (cancelled, or closed by another process), if it must."""
        return self.control.stop

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.stop()
            self._lease = None

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def record(
        self, observations: Iterable[Observation], conversations: Sequence[Conversation] = ()
    ) -> None:
        """Store one batch: hosts by address (inventory, rules, findings), then the map."""
        reports = self._reports(observations)
        with store_deadline(self.engine, "store a batch of what was heard"):
            for start in range(0, len(reports), WRITE_BATCH_HOSTS):
                store_batch(self.engine, self.state, reports[start : start + WRITE_BATCH_HOSTS])
            if conversations:
                with session_scope(self.engine) as session:
                    self._record_conversations(session, conversations)

    def record_in(
        self,
        session: Session,
        observations: Iterable[Observation],
        conversations: Sequence[Conversation] = (),
    ) -> None:
        """:meth:`record` inside the caller's transaction (a sensor's batch is applied once,
        with the key that says so)."""
        store_reports(session, self.state, self._reports(observations))
        if conversations:
            self._record_conversations(session, conversations)
        run = session.get(ScanRun, self.run_id)
        if run is not None:
            run.hosts_probed = self.state.progress.hosts_live
            run.observations = self.state.progress.observations
            run.findings = self.state.progress.findings

    def _reports(self, observations: Iterable[Observation]) -> list[HostReport]:
        by_address: dict[str, HostReport] = {}
        for observation in observations:
            report = by_address.setdefault(
                observation.address, HostReport(address=observation.address, open_ports=())
            )
            report.observations.append(observation)
        self.addresses.update(by_address)
        self.state.progress.hosts_live = len(self.addresses)
        return list(by_address.values())

    def _record_conversations(
        self, session: Session, conversations: Sequence[Conversation]
    ) -> None:
        recorded = record_communications(session, [self._placed(c) for c in conversations])
        self._judge(session, recorded)
        self.conversations += len(conversations)

    def _judge(self, session: Session, recorded: Sequence[RecordedCommunication]) -> None:
        """The rules over each conversation whose server is in the inventory (a finding is
        a device's); passive rules read who talked, how, and from where."""
        drafts: list[FindingDraft] = []
        devices: dict[str, Device | None] = {}
        for item in recorded:
            device_id = item.row.server_device_id
            if device_id is None:
                continue
            if device_id not in devices:
                devices[device_id] = session.get(Device, device_id)
            device = devices[device_id]
            if device is None:
                continue
            server = self.state.placement_of(self.state.guard.rule_for(item.row.server_address))
            client = self.state.placement_of(self.state.guard.rule_for(item.row.client_address))
            subject = traffic_subject(item, client, asset_document(device, server))
            drafts.extend(
                rule_drafts(self.state.rules, subject, device_id=device.id, service_id=None)
            )
        if drafts:
            result = record_findings(
                session,
                scan_run_id=self.run_id,
                drafts=drafts,
                now=utcnow(),
                place_of=finding_places(session=session),
            )
            self.state.progress.findings += len(result.created)

    def _placed(self, conversation: Conversation) -> CommunicationSeen:
        """A conversation belongs where its server is placed (its scope's site)."""
        rule = self.state.guard.rule_for(conversation.server)
        placement = self.state.placement_of(rule)
        return CommunicationSeen(
            organization_id=self.state.organization_of(rule),
            site_id=placement.site_id if placement else None,
            client_address=conversation.client,
            server_address=conversation.server,
            port=conversation.port,
            transport=str(conversation.transport),
            protocol=conversation.protocol,
            function=str(conversation.function),
            packets=conversation.packets,
            first_seen_at=conversation.first_seen_at,
            last_seen_at=conversation.last_seen_at,
        )

    def _count_hosts(self) -> None:
        with (
            store_deadline(self.engine, "end a passive run"),
            session_scope(self.engine) as session,
        ):
            run = session.get(ScanRun, self.run_id)
            if run is not None:
                # A recorder that went on with a run knows only the hosts seen since.
                run.hosts_total = max(run.hosts_total, len(self.addresses))

    def fail(self, reason: str) -> ScanRun:
        """End the run as failed (the capture could not start): ``reason`` says why."""
        self._release()
        self.state.add_errors([{"target": self.source, "stage": "listen", "error": reason}])
        return finish_run(self.engine, self.state, ScanStatus.FAILED, reason=reason)

    def finish(self, problems: Sequence[str] = ()) -> ScanRun:
        """End the run; ``problems`` (damage met, a capture that stopped) make it partial; a
        :attr:`stop_request` (cancelled, lease lost) decides its status and reason."""
        self._release()
        retry_transient(self._count_hosts, horizon_s=self._retry_s, what="end a passive run")
        self.state.add_errors(
            {"target": self.source, "stage": "import", "error": p} for p in problems
        )
        stopped = self.control.stop
        if stopped is not None:
            return finish_run(self.engine, self.state, stopped.status, reason=stopped.reason)
        status = ScanStatus.PARTIAL if problems else ScanStatus.SUCCEEDED
        return finish_run(self.engine, self.state, status)


def finish_stored_run(engine: Engine, run_id: str, problems: Sequence[str] = ()) -> bool:
    """End the passive run ``run_id`` from what the store holds (its counters), as
    :meth:`PassiveRecorder.finish` does, if it has not ended; True if this call ended it.

    For a run whose recorder is gone: a sensor's last batch committed, the run's end then failed
    on the store, and the batch, delivered again, is a duplicate that must still end the run."""
    with session_scope(engine) as session:
        run = session.get(ScanRun, run_id)
        if run is None or run.status.finished:
            return False
        run.hosts_total = max(run.hosts_total, run.hosts_probed)
        progress = ScanProgress(
            scan_run_id=run_id,
            hosts_total=run.hosts_total,
            hosts_live=run.hosts_probed,
            open_ports=run.open_ports,
            observations=run.observations,
            findings=run.findings,
        )
        source = run.targets[0] if run.targets else None
        stored_errors = list(run.errors or [])
    state = RunState.closing(run_id, progress)
    state.add_errors(stored_errors)
    state.add_errors({"target": source, "stage": "import", "error": p} for p in problems)
    finish_run(engine, state, ScanStatus.PARTIAL if problems else ScanStatus.SUCCEEDED)
    return True
