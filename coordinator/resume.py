"""A coordinator that survives itself: it journals what it cannot recompute
(``coordinator.journal``) and, resumed with ``agentd coordinator --resume RUN``, rebuilds the
run from the journal and ``metrics.jsonl``, binds its old endpoint and takes the processes
back as they reconnect (same keys, same ids). A part of ``coordinator.Coordinator``.

What it counts once across a resume: an episode (by the env step it ended at: the env server
reports each step once, and sends its latest reports again to a new epoch), a restart record
(by process and step), a bye (by process). Its own restarts and the time it was down go to
summary.json (``coordinator_restarts``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentd.runtime.keys import name_of
from coordinator.journal import Journal, Replayed
from coordinator.procs import Proc, RunEnded
from coordinator.summary import fold_tally

if TYPE_CHECKING:
    from coordinator.coordinator import Coordinator

log = logging.getLogger("agentd.coordinator")

PLACEHOLDER = b"\0journal-"
COUNTED_STEPS = 1 << 16     # far more than the reports a process keeps to send again     # a restored process's routing id until it is heard again


def proc_record(proc: Proc, secure: bool) -> dict[str, Any]:
    """What the journal keeps of an admitted process."""
    return {"role": proc.role, "id": proc.id, "pid": proc.pid, "host": proc.host,
            "endpoint": proc.endpoint, "want_id": proc.want_id, "hello_src": proc.hello_src,
            **({"key": name_of(proc.id)} if secure and proc.id is not None else {})}


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int, int]:
    """metrics.jsonl's whole records, the bytes they take (a torn last line is cut off the
    file) and how many torn lines were cut."""
    try:
        data = path.read_bytes()
    except OSError:
        return [], 0, 0
    records, offset, torn = [], 0, 0
    for raw in data.split(b"\n"):
        if offset + len(raw) >= len(data):       # the last piece: whole only if it ended
            if raw:
                torn = 1
            break
        try:
            records.append(json.loads(raw))
        except ValueError:
            torn = 1
            break
        offset += len(raw) + 1
    if offset < len(data):
        with open(path, "r+b") as f:
            f.truncate(offset)
    return records, offset, torn


class Resume:
    """The journal's side of the coordinator (mixed into ``Coordinator``)."""

    def open_journal(self: Coordinator) -> None:
        self.journal = Journal(self.run_dir)
        self.epoch = 0
        self.resumes: list[dict[str, Any]] = []       # this run's coordinator restarts
        # env step -> episodes counted there (the latest COUNTED_STEPS steps): a report sent
        # again is counted once, whatever the order it comes in
        self.counted: dict[int, int] = {}
        self.counted_order: deque[int] = deque()
        self.forgotten_below = -1
        self.resumed_at: float | None = None
        self._alive_at = 0.0
        self.tallied: set[int] = set()    # agents whose tally is in (and journaled)
        self.pending_end: tuple[str, str] | None = None   # resumed after the run had failed

    def journal_start(self: Coordinator) -> None:
        self.journal.write("start", run_id=self.run_id, endpoint=self.endpoint,
                           secure=self.transport.secure, wall=time.time(), n=self.n_procs)

    def journal_proc(self: Coordinator, kind: str, proc: Proc, **extra: Any) -> None:
        self.journal.write(kind, **proc_record(proc, self.transport.secure), **extra)

    def alive(self: Coordinator, now: float) -> None:
        """Once a second: the journal's mtime says when the coordinator was last alive (a
        resumed one reports the time it was down from it)."""
        if now - self._alive_at >= 1.0:
            self._alive_at = now
            os.utime(self.journal.path)

    def journal_phase(self: Coordinator, phase: str, reason: str = "") -> None:
        self.journal.write("phase", phase=phase, reason=reason,
                           metrics_offset=self.metrics.offset())

    # -- resuming ---------------------------------------------------------------------------
    def restore(self: Coordinator, j: Replayed, metrics: list[dict[str, Any]],
                metrics_torn: int) -> None:
        """The run as the journal and metrics.jsonl hold it; every process is waited for at
        its old id until it is heard again on a new connection."""
        start = j.first("start")
        assert start is not None
        self.run_id = start["run_id"]
        self.started = time.monotonic() - (time.time() - start["wall"])
        now = time.monotonic()
        procs: dict[int, dict[str, Any]] = {}
        for r in j.records:
            if r["r"] in ("admit", "rejoin"):
                procs[r["id"]] = r
            if r["r"] == "rejoin":
                self.restarts.count[r["id"]] = self.restarts.count.get(r["id"], 0) + 1
            elif r["r"] == "restart":
                self.restarts.records.append(r["record"])
        byes = {r["id"]: r["stats"] for r in j.all("bye")}
        for r in j.all("tally"):          # (an agent's counters after the ack)
            if r["id"] in byes:
                byes[r["id"]] = fold_tally(byes[r["id"]], r["stats"])
                self.tallied.add(r["id"])
        for r in procs.values():
            proc = Proc(PLACEHOLDER + str(r["id"]).encode(), r["role"], r["pid"], r["host"],
                        r["endpoint"], r["want_id"], now, r["hello_src"], r["id"],
                        stats=byes.get(r["id"]), unheard=True)
            self.procs[proc.identity] = proc
            if proc.role == "envserver":
                self.env_proc = proc
        # how the run ended, if it had ('written' only follows it: the summary was written)
        phase = next((p for p in reversed(j.all("phase")) if p["phase"] != "written"), None)
        ready = j.last("env_ready")
        if ready is not None:
            self.spaces, self.env_local = ready["spaces"], ready["local"]
        self.admitted = self.stepping = j.first("running") is not None
        self.resumes = [{k: v for k, v in r.items() if k != "r"} for r in j.all("resume")]
        if phase is not None and phase["phase"] != "done":
            self.pending_end = (phase["phase"], phase["reason"])
        self.epoch = len(self.resumes) + 1
        self._restore_metrics(metrics)
        last_alive = j.mtime              # see ``alive``
        record = {"epoch": self.epoch, "pid": os.getpid(), "at": round(time.time(), 3),
                  "down_s": round(max(0.0, time.time() - last_alive), 3),
                  "journal_torn": j.torn, "metrics_torn": metrics_torn,
                  "metrics_offset": self.metrics.offset(),
                  "phase": phase["phase"] if phase else ("running" if self.admitted
                                                         else "admitting")}
        self.resumes.append(record)
        self.journal.write("resume", **record)
        self.resumed_at = now
        torn = f"; {j.torn} torn journal record ignored" if j.torn else ""
        log.warning("coordinator resumed (epoch %d) after %.1f s down: %d processes, %d "
                    "episodes, phase %s%s", self.epoch, record["down_s"], len(self.procs),
                    len(self.metrics.returns), record["phase"], torn)

    def _restore_metrics(self: Coordinator, records: list[dict[str, Any]]) -> None:
        m = self.metrics
        for r in records:
            if "return" in r:
                m.returns.append(float(r["return"]))
                m.steps.append(int(r["step"]))
                self._count(int(r["step"]), self.counted.get(int(r["step"]), 0) + 1)
            elif "truncated" in r:
                m.truncated_episodes += 1

    def reconnected_after_resume(self: Coordinator, src: int, ident: bytes) -> Proc | None:
        """Plaintext, resumed: an admitted process on its new connection, by the id it sends
        as (secure mode matches it by its key in ``_reconnected``)."""
        proc = next((p for p in self.procs.values() if p.id == src and p.unheard), None)
        if proc is not None:
            del self.procs[proc.identity]
            proc.identity = ident
            self.procs[ident] = proc
        return proc

    def welcome_back(self: Coordinator, proc: Proc) -> None:
        """The first word from a process after the resume: a heartbeat with the new epoch,
        so it sends again its latest reports (what died with the old coordinator)."""
        proc.unheard = False
        self.send(proc, "heartbeat", {"epoch": self.epoch})
        log.info("%s reconnected to the resumed coordinator", proc.name())

    def end_if_ended(self: Coordinator) -> None:
        """Resumed after the run had ended (every bye in, or a failure): finish at once. The
        processes are acked as they come back (``back_at_the_end``) while their files are
        collected: a shipper tells a resumed coordinator its files again."""
        if self.pending_end is not None:
            raise RunEnded(*self.pending_end)
        members = [p for p in self.procs.values() if p.id is not None]
        if self.resumed_at is not None and members and \
                all(p.stats is not None for p in members):
            raise RunEnded("done", "")

    def back_at_the_end(self: Coordinator, proc: Proc) -> None:
        """A process heard again while the files are collected: welcomed back and acked
        (it may still be waiting for the ack the dead coordinator never sent)."""
        self.welcome_back(proc)
        if proc.id is not None:
            self.send(proc, "ack", {})

    # -- counted once -----------------------------------------------------------------------
    def new_episodes(self: Coordinator, step: int, n: int) -> int:
        """How many of the ``n`` episodes the env server reports at ``step`` are new (a report
        sent again to a resumed coordinator is counted once; it may come after later ones
        that were queued in the socket)."""
        if step <= self.forgotten_below:
            return 0
        counted = self.counted.get(step, 0)
        self._count(step, max(n, counted))
        return max(0, n - counted)

    def _count(self: Coordinator, step: int, n: int) -> None:
        if step not in self.counted:
            self.counted_order.append(step)
            if len(self.counted_order) > COUNTED_STEPS:
                old = self.counted_order.popleft()
                self.forgotten_below = max(self.forgotten_below, old)
                self.counted.pop(old, None)
        self.counted[step] = n

    def resume_summary(self: Coordinator) -> dict[str, Any]:
        return {"coordinator_restarts": self.resumes,
                "coordinator_down_s": round(sum(r["down_s"] for r in self.resumes), 3)}
