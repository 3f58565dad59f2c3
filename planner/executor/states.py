"""The executor's vocabulary: the journal's events and operations (closed sets, written to disk as
their values, which never change: old journals must still resume), a host's outcome, and the
states of the work under way (one VM's migration, one host's pipeline) with their records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # hooks imports the journal, which imports this
    from planner.executor.hooks import Running


class Ev(StrEnum):
    """A journal record's `ev`: every step is an intent, then done or failed; notes are facts."""

    HEADER = "header"
    INTENT = "intent"
    DONE = "done"
    FAILED = "failed"
    NOTE = "note"


class Op(StrEnum):
    """A journal record's `op`. Steps (intent, then done or failed) and notes."""

    # steps
    WAVE = "wave"
    MIGRATE = "migrate"
    DISABLE = "disable"  # also a note: already disabled by someone else
    ENABLE = "enable"
    STOP = "stop"  # also a note: nothing to stop
    START = "start"
    UPGRADE = "upgrade"  # the upgrade command
    WAIT = "wait"  # the service back at the target version after it
    ROLLBACK = "rollback"  # the rollback command
    RBWAIT = "rbwait"  # the service back at the old version after it
    HEALTH = "health"  # the health command on a canary host
    CANARY = "canary"  # also a note: its verdict
    FORCE = "force"  # Nova's force-complete of a live migration with a planned force
    # notes
    RUN = "run"  # start, resume, stop, end
    CHECK = "check"  # the re-check of the remaining plan at a wave's start
    REPLAN = "replan"  # the waves from here on, re-planned from the live state
    RETARGET = "retarget"  # one VM sent to another host
    SKIP = "skip"  # one VM left where it is
    VERSION = "version"  # a host's version before the run touched it
    HOST = "host"  # a host's outcome
    ETA = "eta"
    HEADROOM = "headroom"  # a headroom breach seen during the run
    FALLBACK = "fallback"  # a force-complete refused or without effect: what is done instead
    WINDOW = "window"  # a wave waits for a maintenance window, or starts in one
    ADMIT = "admit"  # pipelined: a host admitted into maintenance, or why it waits
    VM_ERROR = "vm-error"  # a VM seen in ERROR during the run (not one of the run's moves)


class RunEvent(StrEnum):
    """A `run` note's `what`."""

    START = "start"
    RESUME = "resume"
    STOP = "stop"
    END = "end"


class RunStatus(StrEnum):
    """How a run ended (`RunResult.status`; a `run` note's `status`)."""

    COMPLETED = "completed"  # every host upgraded
    INCOMPLETE = "incomplete"  # ended, with hosts not upgraded
    STOPPED = "stopped"  # on purpose, safely (drift, a host failure, ...)
    INTERRUPTED = "interrupted"  # Ctrl-C
    ERROR = "error"  # the cloud failed (only in the journal: the run raises CloudError)


class HostStatus(StrEnum):
    """A host's outcome (`host` notes)."""

    UPGRADED = "upgraded"
    NOT_UPGRADED = "not-upgraded"  # back in service at its old version (rolled back, or kept)
    FAILED = "failed"  # not back in service: left disabled or down, with the reason


# What the run does next, per VM and per host: in memory only (the journal is the memory).
class VmState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    RETRY = "retry"  # failed; tried again at `next_try`
    DONE = "done"
    GAVE_UP = "gave-up"  # could not be moved: it stays, its host is not upgraded
    SKIPPED = "skipped"  # its host is not upgraded (another VM's failure): it stays
    GONE = "gone"  # deleted during the run


# Tuples, not sets: membership by identity, without Enum's hash (a Python call) on every poll.
TERMINAL_VM = (VmState.DONE, VmState.GAVE_UP, VmState.SKIPPED, VmState.GONE)
STILL_TO_MOVE = (VmState.PENDING, VmState.RUNNING, VmState.RETRY)


class HostState(Enum):
    DRAINING = "draining"  # its VMs are moving off
    STOPPING = "stopping"  # the VMs the plan stops are shutting down
    UPGRADING = "upgrading"  # the upgrade command runs
    WAITING = "waiting"  # for the service, at the target version
    ROLLING_BACK = "rolling-back"
    RB_WAITING = "rollback-waiting"  # for the service, at the old version
    ENABLING = "enabling"
    STARTING = "starting"  # the VMs stopped by the run start again
    FINISHED = "finished"


# A host at work, as the progress says it; these must finish before the run can stop cleanly.
DOING = {
    HostState.STOPPING: "stopping its VMs",
    HostState.UPGRADING: "upgrading",
    HostState.WAITING: "coming back",
    HostState.ROLLING_BACK: "rolling back",
    HostState.RB_WAITING: "coming back from its rollback",
    HostState.ENABLING: "enabling",
    HostState.STARTING: "starting its VMs",
}
BUSY = tuple(DOING)


@dataclass
class VmRun:
    """One VM's migration in the wave under way (or the canary)."""

    vm: str
    label: str
    src: str
    dst: str
    method: str
    wave: int
    expect_status: str
    state: VmState = VmState.PENDING
    step: str | None = None
    t0: float = 0.0
    next_try: float = 0.0
    fails_here: int = 0
    known: set[int] = field(default_factory=set)  # its migration records before this attempt
    tried: set[str] = field(default_factory=set)  # destinations tried
    aborting: bool = False
    confirmed_resize: bool = False
    t_confirm: float = 0.0
    # A planned force-complete (live only): this long after t0, or earlier once the remaining
    # memory has not reached a new low for --force-stall seconds.
    force_after_s: float | None = None
    cold_ok: bool = False  # the fallback may cold-migrate it (policy and VM allow it)
    low: int | None = None  # the lowest remaining memory seen (bytes), and when
    t_low: float = 0.0
    forced_t: float | None = None  # when Nova accepted the force
    force_tries: int = 0
    fallback: str | None = None  # "cold" or "stay": the live migration is being aborted
    # A shelve's hard affinity mates (planner.executor.moves_nova): unshelved once all are off.
    mates: tuple[str, ...] = ()
    unshelving: bool = False  # its unshelve was asked (a VM still offloaded after it: refused)


@dataclass
class HostRun:
    """One host's pipeline in the wave under way (or a canary's rollback)."""

    host: str
    compute: bool
    wave: int
    version_before: str | None  # observed before the wave (None: not observable)
    state: HostState = HostState.DRAINING
    hook: Running | None = None
    t0: float = 0.0
    last_poll: float = 0.0
    abandoned: str | None = None  # why it is not upgraded (its VMs stay)
    failure: str | None = None  # why the upgrade failed (rollback path)
    rolled_back: bool = False
    stopping: dict[str, str] = field(default_factory=dict)  # vm -> step
    starting: dict[str, str] = field(default_factory=dict)
    verified_empty: bool = False

    @property
    def busy(self) -> bool:
        """Work under way that must finish before the run can stop cleanly."""
        return self.state in BUSY
