"""The end of a run: the bye barrier, stopping everyone, collecting the files of processes
that wrote them on another disk (``coordinator.collect``), the tallies sent after the ack, and
the summary. A part of ``coordinator.Coordinator``, kept here so the coordinator reads as its
loop, its watch over the run and its handlers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from agentd.runtime.keys import name_of
from coordinator.collect import free_space, limits, missing_files
from coordinator.procs import Proc, RunEnded
from coordinator.rundir import consensus_after_run
from coordinator.summary import fold_tally, report, tallies_due, write_summary
from protocols import Message

if TYPE_CHECKING:
    from coordinator.coordinator import Coordinator

log = logging.getLogger("agentd.coordinator")


class Ending:
    """The coordinator's end-of-run handlers and steps (mixed into ``Coordinator``)."""

    def on_files(self: Coordinator, proc: Proc, msg: Message) -> None:
        if self.not_shipping(proc, msg):
            return
        c, name = self.config, name_of(proc.id)
        shippers = 1 + len(self.collector.busy())
        lim = limits(c.steps, c.checkpoint_every, proc.stats, free_space(self.run_dir),
                     shippers)
        self.collector.announce(name, msg.body["files"], lim, 2 * c.heartbeat_timeout)

    def on_file_chunk(self: Coordinator, proc: Proc, msg: Message) -> None:
        if not self.not_shipping(proc, msg):
            self.collector.on_chunk(name_of(proc.id), msg.body)

    def on_tally(self: Coordinator, proc: Proc, msg: Message) -> None:
        """An agent's counters after the ack (``coordinator.summary.fold_tally``)."""
        if self.not_from(proc, msg, "agent"):
            return
        if not self.collector.accepting or proc.stats is None:
            self.refuse(proc, msg, "out_of_phase", "a tally comes after the ack")
            return
        if proc.id not in self.tallies:      # one tally per agent that said bye, no more
            self.refuse(proc, msg, "unexpected", "its tally is not due (one per agent)")
            return
        proc.stats = fold_tally(proc.stats, msg.body["stats"])
        self.tallies.discard(proc.id)
        self.tallied.add(proc.id)
        self.journal.write("tally", id=proc.id, stats=msg.body["stats"])

    def not_shipping(self: Coordinator, proc: Proc, msg: Message) -> bool:
        """File transfer is for the end of the run, or for a process that said it is failing;
        any other time it is refused (and counted with the transfer's refusals)."""
        if self.not_from(proc, msg, None):
            return True
        if self.collector.accepting or proc.failing:
            return False
        self.collector.refuse(name_of(proc.id), "out_of_phase", f"'{msg.kind}' during the run")
        return self.refuse(proc, msg, "out_of_phase", "file transfer is for the end of the run")

    def on_bye(self: Coordinator, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, None):
            return
        if proc.stats is None:        # (a bye sent again to a resumed coordinator: once)
            proc.stats = msg.body["stats"]
            self.journal.write("bye", id=proc.id, stats=proc.stats)
        members = [p for p in self.procs.values() if p.id is not None]
        if self.admitted and all(p.stats is not None for p in members):
            raise RunEnded("done", "")

    # -- the end ----------------------------------------------------------------------------
    def finish(self: Coordinator, status: str, reason: str) -> int:
        self.journal_phase(status, reason)
        if status != "done":
            self.stop_everyone(reason)
        for proc in self.procs.values():
            if proc.id is not None and not proc.unheard:
                self.send(proc, "ack", {})
        self.transport.flush()
        if self.progress is not None:
            self.progress.close()
        files = self.collect_files(status)
        consensus = consensus_after_run(self.run_dir, self.metrics) if status == "done" \
            else None
        summary = write_summary(self, status, reason, consensus, files)
        self.journal_phase("written", reason)
        self.journal.close()
        self.metrics.close()
        self.transport.close()
        report(self.run_dir, summary)
        return {"done": 0, "interrupted": 130}.get(status, 1)

    def stop_everyone(self: Coordinator, reason: str) -> None:
        """Tell every live process to stop and collect the byes that come within a moment."""
        for proc in self.procs.values():
            if proc.id is None:   # said hello, never admitted: it leaves without a bye
                self.send(proc, "stop", {"reason": reason})
        waiting = [p for p in self.procs.values()
                   if p.id is not None and p.stats is None and not p.unheard]
        for proc in waiting:
            self.send(proc, "stop", {"reason": reason})
        deadline = time.monotonic() + min(3.0, self.config.heartbeat_timeout)
        while time.monotonic() < deadline and any(p.stats is None for p in waiting):
            for _ in self.transport.poll(50):
                for msg, ident in self.transport.recv_all(self.link):
                    proc = self.procs.get(ident)
                    with self.transport.handling("control", msg):
                        if proc is not None and msg.kind == "bye" and proc.stats is None:
                            proc.stats = msg.body["stats"]
                            self.journal.write("bye", id=proc.id, stats=proc.stats)
                        elif proc is not None and msg.kind == "episodes":
                            self.on_episodes(proc, msg)

    def collect_files(self: Coordinator, status: str) -> dict[str, Any]:
        """Pull the files of processes that wrote them on another disk; list what is missing.
        Every shipper has ``2 x heartbeat_timeout`` to announce its files and each shipment
        its own deadline (``coordinator.collect``): heartbeats keep a process known to be
        alive, they do not keep the collection waiting."""
        shippers = {name_of(p.id) for p in self.procs.values()
                    if p.id is not None and (p.stats or {}).get("files") == "ship"}
        silence = 2 * self.config.heartbeat_timeout
        started = time.monotonic()
        self.tallies = tallies_due(self.procs.values()) - self.tallied if status == "done" \
            else set()
        self.collector.accepting = True
        late = {"files": self.on_files, "file_chunk": self.on_file_chunk,
                "security": self.on_security, "tally": self.on_tally}
        while True:
            self._give_up_late(shippers, started, silence)
            if self.tallies and time.monotonic() - started > silence:
                log.warning("no tally from agents %s: summary.json counts their messages up "
                            "to their bye only", sorted(self.tallies))
                self.tallies.clear()
            waiting = (shippers - set(self.collector.shipments)) | set(self.collector.busy())
            if not waiting and not self.tallies:
                break
            for _ in self.transport.poll(100):
                for msg, ident in self.transport.recv_all(self.link):
                    proc = self.procs.get(ident) or self._reconnected(msg.src, ident)
                    if proc is not None:
                        if proc.unheard:
                            self.back_at_the_end(proc)
                        proc.last_seen = time.monotonic()
                        if msg.kind in ("files", "file_chunk", "security", "tally"):
                            with self.transport.handling("control", msg):
                                late[msg.kind](proc, msg)
        shipped = {s.name: {"files": len(s.done), "bytes": s.bytes}
                   for s in self.collector.shipments.values()}
        if shipped:
            log.info("collected %d files (%d bytes) from %d processes in %.1f s",
                     sum(v["files"] for v in shipped.values()),
                     sum(v["bytes"] for v in shipped.values()), len(shipped),
                     time.monotonic() - started)
        return {"shipped": shipped,
                "missing": missing_files(self.run_dir, self.expected_files(status)),
                **self.collector.report()}

    def _give_up_late(self: Coordinator, shippers: set[str], started: float, silence: float) -> None:
        """Stop waiting for a shipper that is gone, silent, never announced in time, or whose
        shipment is past its deadline or has stalled."""
        now = time.monotonic()
        for name in sorted(shippers - set(self.collector.shipments)):
            proc = self._by_name(name)
            if proc is None or now - proc.last_seen > silence or now - started > silence:
                log.error("%s did not announce its files", proc.name() if proc else name)
                self.collector.refuse(name, "never_announced", f"nothing within {silence:.0f} s")
                shippers.discard(name)
        for name in self.collector.busy():
            proc = self._by_name(name)
            why = "it went silent" if proc is None or now - proc.last_seen > silence else \
                self.collector.overdue(name, now, silence)
            if why:
                log.error("%s: giving up the files still coming: %s", name, why)
                self.collector.abandon(name, why)
                shippers.discard(name)

    def expected_files(self: Coordinator, status: str) -> dict[str, list[str]]:
        """What the run directory should hold for each admitted process."""
        expected = {}
        shipments = {s.name: s for s in self.collector.shipments.values()}
        for proc in self.procs.values():
            if proc.id is None:
                continue
            name, stats = name_of(proc.id), proc.stats or {}
            paths = [f"logs/{name}.log"]
            if stats.get("files") == "ship":
                paths.append(f"logs/{name}.out")
            if proc.role == "agent" and status == "done":
                paths.append(f"checkpoints/{name}.npz")
            if name in shipments:
                paths += [p for p in shipments[name].files if p not in paths]
            expected[proc.name()] = paths
        return expected
