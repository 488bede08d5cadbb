"""The scan pipeline, the one module that composes the domains (DESIGN.md §4).

targets --guard--> sweep --> probes by port --> observations --> inventory --> rules --> findings

Sweeping and probing stream: each host that answers is identified as soon as its sweep ends, by a
bounded number of identification workers (:mod:`~cybermission.scans.probing`, what a site sensor
runs too); results are written in batches by one writer (:mod:`~cybermission.scans.recording`)
that runs the blocking store work in a thread, so the event loop keeps connecting while the store
commits. Findings are drafted in :mod:`~cybermission.scans.judging`.
"""

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.errors import CybermissionError
from cybermission.findings.advisories.drafts import ADVISORY_PROTOCOL
from cybermission.findings.advisories.lookup import organization_index
from cybermission.findings.advisories.matching import AdvisoryIndex
from cybermission.findings.service import expire_acceptances
from cybermission.guard import ScopeGuard
from cybermission.probes import Observation, Probe, load_probes
from cybermission.rules.loader import RuleSet, load_rules
from cybermission.rules.packs import adopted_packs, rules_with_packs
from cybermission.scans.control import RunControl, StopRequest, keep_lease
from cybermission.scans.engines import BUILTIN_ENGINE, load_engine
from cybermission.scans.listening import PassiveRecorder
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import RunOwner, claim_run, this_process
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.placement import Placement, load_placements
from cybermission.scans.probe_processes import probe_specs, process_count
from cybermission.scans.probing import (
    HostReport,
    ProgressCallback,
    ScanProgress,
    prefer_engine_observations,
    select_probes,
)
from cybermission.scans.recording import (
    WRITE_BATCH_HOSTS,
    RunState,
    authority_ranks,
    finish_run,
)
from cybermission.scans.resume import FinishedHosts, finished_hosts
from cybermission.scans.run_metrics import count_run_started
from cybermission.scans.scopes import build_guard
from cybermission.scans.skipped import SKIPPED_STAGE
from cybermission.scans.sweep import HostResult
from cybermission.scans.sweep_handoff import probe_hosts
from cybermission.scans.targets import expand_targets
from cybermission.scans.writing import replay_left_spool, write_batches
from cybermission.store_faults import describe_store_error, retry_transient
from cybermission.store_links import store_deadline
from cybermission.traffic import Conversation

logger = logging.getLogger(__name__)


async def _replay(hosts: Sequence[HostResult]) -> AsyncIterator[HostResult]:
    for host in hosts:
        yield host


def _account(host: HostResult, state: RunState) -> None:
    """Count a swept host and keep its sweep errors; one refused by the scope is skipped whole."""
    state.progress.hosts_swept += 1
    if host.scope_refused:
        # Refused part-way or at once: skipped as a whole (skipped.py says why).
        state.skipped.add_refused(host)
    else:
        state.add_errors(
            {"target": host.address, "stage": "sweep", "error": e} for e in host.errors
        )
        if host.open_ports:
            state.progress.hosts_live += 1
            state.progress.open_ports += len(host.open_ports)
    state.tick()


@dataclass(frozen=True, slots=True)
class _Begun:
    """A run this process now owns, and what probing it needs from the store."""

    run: ScanRun
    guard: ScopeGuard
    # The hosts it finished before an interruption, when it is resumed (none otherwise).
    finished: FinishedHosts


def _begin(
    engine: Engine,
    settings: Settings,
    scan_run_id: str,
    owner: RunOwner,
    guard: ScopeGuard | None,
) -> "_Begun | ScanRun":
    """Mark the run running under ``owner`` (one transaction: safe to retry); the finished row
    instead when it was closed before it could start (cancelled while queued).

    Only what probing needs is read here: nothing is sent before this commits (the run is
    claimed first), and what only the writer needs is read while the probing side sweeps
    (:func:`_prepare_writing`).
    """
    with store_deadline(engine, "start a run"), session_scope(engine) as session:
        run = session.get(ScanRun, scan_run_id)
        if run is None:
            raise CybermissionError(f"no scan run with id {scan_run_id!r}")
        if run.finished_at is not None:
            return run
        now = utcnow()
        # A resumed run keeps its start: absence counts what was not seen since the run began.
        resumed = run.started_at is not None
        run.status = ScanStatus.RUNNING
        run.started_at = run.started_at or now
        # Each start counts, a resume's too: started minus finished is what is running.
        count_run_started(session)
        claim_run(run, owner, now=now)
        return _Begun(
            run=run,
            guard=guard or build_guard(session, settings, organization_id=run.organization_id),
            finished=finished_hosts(session, run.id) if resumed else FinishedHosts(),
        )


@dataclass(frozen=True, slots=True)
class _Judging:
    """What storing a run's hosts needs besides the guard: the rules (with the shared packs the
    run's organisation adopted, at the version that applies), the placements and the advisory
    index of the run's organisation."""

    rules: RuleSet
    placements: dict[str, Placement]
    advisories: AdvisoryIndex


def _prepare_writing(engine: Engine, settings: Settings, run: ScanRun) -> _Judging:
    """Read what only the writer needs (one transaction: safe to retry), and expire the finding
    acceptances that lapsed before the run judges anything.

    Read while the probing side sweeps: the advisory index, the rules and the placements took
    0.16 s of CPU and 0.25-0.35 s of wall time between a scan's claim and its first packet
    (loaded machine, issue 12).
    """
    with store_deadline(engine, "prepare a run's writing"), session_scope(engine) as session:
        expire_acceptances(session, now=utcnow(), place_of=finding_places(session=session))
        placements = load_placements(session)
        advisories = organization_index(session, organization_id=run.organization_id)
        packs = adopted_packs(session, organization_id=run.organization_id)
    rules = RuleSet(rules_with_packs(load_rules(settings.rules_dirs), packs))
    return _Judging(rules=rules, placements=placements, advisories=advisories)


async def _prepare_into(engine: Engine, settings: Settings, run: ScanRun, state: RunState) -> None:
    """:func:`_prepare_writing` into ``state``; a store or rules error raises
    :class:`CybermissionError`, and the run ends failed with it as its reason."""
    try:
        judging = await asyncio.to_thread(
            retry_transient,
            lambda: _prepare_writing(engine, settings, run),
            horizon_s=settings.runs.store_retry_s,
            what="prepare a run's writing",
        )
    except SQLAlchemyError as exc:
        raise CybermissionError(
            f"the store failed before the first results ({describe_store_error(exc)})"
        ) from exc
    state.rules = judging.rules
    state.placements = judging.placements
    state.advisories = judging.advisories


async def _write(
    engine: Engine,
    settings: Settings,
    run: ScanRun,
    state: RunState,
    queue: "asyncio.Queue[HostReport | None]",
    *,
    prepared: bool,
) -> None:
    """The run's writer: what it needs first (unless a resumed run read it before probing),
    then every host queued until the ``None`` that ends the run."""
    if not prepared:
        await _prepare_into(engine, settings, run, state)
    await write_batches(
        engine, state, queue, retry_s=settings.runs.store_retry_s, runs=settings.runs
    )


async def execute_scan(
    *,
    engine: Engine,
    settings: Settings,
    scan_run_id: str,
    progress: ProgressCallback | None = None,
    probes: Mapping[str, Probe] | None = None,
    guard: ScopeGuard | None = None,
    control: RunControl | None = None,
) -> ScanRun:
    """Run a stored scan to the end and return its final row; never raises for device trouble.

    The calling process owns the run while it executes: it renews the run's lease, and stops
    when ``control`` is told to (a signal, a shutdown), when a cancel request reaches it through
    the store, when its lease was taken, or when the store refuses the results. The run then ends
    in the status and with the reason of that stop, keeping every batch already written, and this
    returns; a cancellation nobody explained is recorded as an interruption and re-raised.
    """
    owner = this_process()
    control = control or RunControl()
    begun = await asyncio.to_thread(
        retry_transient,
        lambda: _begin(engine, settings, scan_run_id, owner, guard),
        horizon_s=settings.runs.store_retry_s,
        what="start a run",
    )
    if isinstance(begun, ScanRun):
        return begun  # cancelled (or closed) before it started: nothing to do
    run, guard = begun.run, begun.guard
    targets, ports, hosts_total = list(run.targets), tuple(run.ports), run.hosts_total
    udp_ports = tuple(run.udp_ports)
    organization_id = run.organization_id
    state = RunState(
        run_id=scan_run_id,
        scanned=tuple((p, "tcp") for p in ports) + tuple((p, "udp") for p in udp_ports),
        # The writer's own (rules, placements, advisories) are read while probing starts.
        rules=RuleSet(()),
        guard=guard,
        progress=ScanProgress(scan_run_id=scan_run_id, hosts_total=hosts_total),
        callback=progress,
        organization_id=organization_id,
        absent_after_scans=settings.absent_after_scans,
        record_hosts=True,
    )
    done = begun.finished
    _carry_over(state, done, run)
    logger.info(
        "scan resumed" if done else "scan started",
        extra={"scan_run_id": scan_run_id, "hosts": hosts_total, "finished": len(done)},
    )
    current = asyncio.current_task()
    if current is not None:
        control.bind(current)
    lease = asyncio.create_task(
        keep_lease(
            engine, scan_run_id, owner, interval_s=settings.runs.heartbeat_s, control=control
        )
    )
    status = ScanStatus.SUCCEEDED
    reason: str | None = None
    writing: asyncio.Task[None] | None = None
    queue: asyncio.Queue[HostReport | None] = asyncio.Queue(maxsize=WRITE_BATCH_HOSTS * 4)
    try:
        pacing = settings.pacing.effective()
        installed = probes if probes is not None else load_probes()
        state.authority = authority_ranks(installed)
        plan = select_probes(installed, settings, udp_ports=udp_ports)
        state.probes_run = frozenset(
            {p.protocol for ps in (*plan.tcp.values(), *plan.udp.values()) for p in ps}
            | {"tcp", ADVISORY_PROTOCOL}
        )
        # A resumed run first stores what its dead execution spooled (those hosts are not
        # probed again): its writer's needs are read before that, not while probing.
        prepared = bool(done or run.resumes)
        if prepared:
            await _prepare_into(engine, settings, run, state)
            done = await asyncio.to_thread(_replay_left_spool, engine, state, settings, done)
        writing = asyncio.create_task(
            _write(engine, settings, run, state, queue, prepared=prepared)
        )
        # A writer that dies stops the probing side at once: nothing waits on a full queue.
        writing.add_done_callback(lambda task: _writer_ended(task, scan_run_id, control))

        async def identified(report: HostReport) -> None:
            state.progress.hosts_identified += 1
            refused = [e for e in report.errors if e["stage"] == SKIPPED_STAGE]
            if refused:
                # The scope lapsed while probing it: skipped as a whole, nothing stored.
                state.skipped.add(report.address, str(refused[0]["error"]))
                return
            prefer_engine_observations(report, engine_observations)
            if not report.open_ports and not report.observations and not report.errors:
                return  # a silent address on every UDP port: nothing to write
            if not report.open_ports:
                state.progress.hosts_live += 1
            await queue.put(report)

        engine_observations: dict[tuple[str, int], Observation] = {}
        probed: AsyncGenerator[HostResult | HostReport, None]
        if settings.discovery_engine == BUILTIN_ENGINE:
            probed = probe_specs(
                targets,
                ports,
                guard=guard,
                pacing=pacing,
                plan=plan,
                processes=process_count(pacing, hosts_total - len(done)),
                skip=done.addresses,
            )
        else:
            hosts = (a for a in expand_targets(targets, guard=guard) if a not in done.addresses)
            found = await load_engine(settings.discovery_engine).discover(
                list(hosts),
                ports,
                guard=guard,
                pacing=pacing,
                script_ports=[p for p in ports if p not in plan.tcp],
            )
            engine_observations = {(o.address, o.port): o for o in found.observations}
            probed = probe_hosts(_replay(found.hosts), plan=plan, guard=guard, pacing=pacing)
        async with aclosing(probed):
            async for item in probed:
                if isinstance(item, HostReport):
                    await identified(item)
                else:
                    _account(item, state)
        await queue.put(None)
        await writing
    except CybermissionError as exc:
        logger.warning("scan failed", extra={"scan_run_id": scan_run_id, "error": str(exc)})
        state.add_errors([{"target": None, "stage": "run", "error": str(exc)}])
        status, reason = ScanStatus.FAILED, f"failed: {exc}"
    except asyncio.CancelledError:
        stop = control.stop or StopRequest(
            ScanStatus.INTERRUPTED, "interrupted: the process was stopped"
        )
        logger.warning("scan stopped", extra={"scan_run_id": scan_run_id, "reason": stop.reason})
        lease.cancel()
        await _wind_down(writing, queue, drain_s=settings.runs.store_retry_s)
        _count_unwritten(queue, state)
        state.add_errors([{"target": None, "stage": "run", "error": stop.reason}])
        state.errors[:0] = state.skipped.errors()
        run = await asyncio.shield(
            asyncio.to_thread(finish_run, engine, state, stop.status, reason=stop.reason)
        )
        if control.stop is None or current is None:
            raise  # nobody said why: the canceller expects the cancellation back
        current.uncancel()
        return run
    except Exception as exc:
        # Our bug, not the device's: the run must still end as failed, never stay "running".
        logger.exception("scan crashed", extra={"scan_run_id": scan_run_id})
        error = f"internal error: {exc.__class__.__name__}"
        state.add_errors([{"target": None, "stage": "run", "error": error}])
        status, reason = ScanStatus.FAILED, f"failed: {error}"
    finally:
        lease.cancel()
        # A heartbeat already in its thread may finish after the run is closed below and read
        # it as lost: it must not cancel the caller, which goes on.
        control.unbind()
    # Probing failed or crashed with the writer still at work: it stores what it was handed
    # before the run ends (otherwise the end was written without them, the writer left waiting
    # and what it held lost), bounded as a stop's wind-down is.
    await _wind_down(writing, queue, drain_s=settings.runs.store_retry_s)
    _count_unwritten(queue, state)
    # What the run could not scan comes first, whatever the error cap kept after it.
    state.errors[:0] = state.skipped.errors()
    if status is ScanStatus.SUCCEEDED and state.errors:
        status = ScanStatus.PARTIAL
    run = await asyncio.to_thread(finish_run, engine, state, status, reason=reason)
    logger.info("scan finished", extra={"scan_run_id": scan_run_id, "status": str(status)})
    return run


def _carry_over(state: RunState, done: FinishedHosts, run: ScanRun) -> None:
    """Start a resumed run's state from the hosts it finished before: counters (the run row's
    observations and findings were written with those hosts), errors, what was sent, and the
    devices it may auto-resolve on."""
    if not done:
        return
    state.progress.hosts_swept = state.progress.hosts_live = len(done)
    state.progress.open_ports = done.open_ports
    state.progress.observations = run.observations
    state.progress.findings = run.findings
    state.add_errors(done.errors)
    state.sent.add(done.sent)
    state.clean_devices |= done.clean_devices


def _replay_left_spool(
    engine: Engine, state: RunState, settings: Settings, done: FinishedHosts
) -> FinishedHosts:
    """Write the results a dead execution of this run left in its spool; the hosts finished now
    include them (they are not probed again), and the state counts them as it counts the
    hosts it finished before (:func:`_carry_over`)."""
    try:
        spooled = replay_left_spool(engine, state, settings.runs)
    except SQLAlchemyError as exc:
        raise CybermissionError(
            f"the store refused the results spooled before the interruption"
            f" ({describe_store_error(exc)}); they stay in the spool"
        ) from exc
    replayed = [r for r in spooled if r.address not in done.addresses]
    if not replayed:
        return done
    for report in replayed:
        state.progress.hosts_swept += 1
        state.progress.hosts_live += 1
        state.progress.open_ports += len(report.open_ports)
        state.add_errors(report.errors)
        state.sent.add(report.sent)
    logger.info(
        "spooled results of the interrupted execution stored",
        extra={"scan_run_id": state.run_id, "hosts": len(replayed)},
    )
    return dataclasses.replace(done, addresses=done.addresses | {r.address for r in replayed})


def _writer_ended(task: "asyncio.Task[None]", scan_run_id: str, control: RunControl) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    if isinstance(exc, SQLAlchemyError):
        why = f"failed: the store refused the results ({describe_store_error(exc)})"
    elif isinstance(exc, CybermissionError):
        # Written for people (rules that do not load, a store that failed before the first
        # batch, a spool that could not be written): as a run that fails otherwise says it.
        why = f"failed: {exc}"
    else:
        why = f"failed: the results could not be written ({exc.__class__.__name__}: {exc})"
    logger.error("scan writer stopped", extra={"scan_run_id": scan_run_id, "error": why})
    control.request_stop(ScanStatus.FAILED, why)


def _count_unwritten(queue: "asyncio.Queue[HostReport | None]", state: RunState) -> None:
    """Count what was sent to the hosts whose reports an ended writer never took (it stopped,
    or failed before its first batch): the run records every request it sent, stored or not."""
    while not queue.empty():
        report = queue.get_nowait()
        if report is not None:
            state.sent.add(report.sent)


async def _wind_down(
    writing: "asyncio.Task[None] | None",
    queue: "asyncio.Queue[HostReport | None]",
    *,
    drain_s: float,
) -> None:
    """Let the writer store the hosts already probed (the probes still going were cancelled
    with the run), bounded: a writer that cannot finish in ``drain_s`` is cancelled; what it
    committed stays."""
    if writing is None or writing.done():
        return
    try:
        async with asyncio.timeout(drain_s):
            await queue.put(None)
            await asyncio.shield(writing)
    except TimeoutError:
        logger.warning("scan writer not drained in time", extra={"drain_s": drain_s})
    except Exception:
        # Broad on purpose: whatever stopped the writer, the run must still be closed (the
        # writer's end already stopped the run with its reason).
        logger.exception("scan writer failed while draining")
    finally:
        if not writing.done():
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)


def import_observations(
    *,
    engine: Engine,
    settings: Settings,
    source: str,
    observations: Iterable[Observation],
    requested_by: str = "import",
    problems: Sequence[str] = (),
    conversations: Sequence[Conversation] = (),
) -> ScanRun:
    """Store observations read from a capture as a run of their own: inventory, rules, findings,
    and the conversations (filled while ``observations`` are read) into the communication map.

    Nothing is sent and nothing is closed: a capture shows what answered, not what is gone.
    ``problems`` (damage the reader met, filled while ``observations`` are read) make the run
    partial, each one an error of stage ``import``.
    """
    # Owned like a listening session: an import killed part-way is closed interrupted.
    recorder = PassiveRecorder(
        engine=engine,
        settings=settings,
        source=source,
        requested_by=requested_by,
        owned=settings.runs,
    )
    read = list(observations)  # the reader fills problems and conversations as it goes
    recorder.record(read, conversations)
    return recorder.finish(problems)
