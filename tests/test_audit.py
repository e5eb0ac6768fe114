"""``agentd audit``: its figures match the raw log bytes, a clean run loses nothing in flight,
dac sends nothing on peer edges, the probe finds nothing without messages (and something with
informative ones), rejections on a live run are attributed, and damaged input is handled."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np
import pytest
from conftest import AGENTD, Runs, read_json, send_raw, wait_for
from rawlog import items, raw_log

from agentd.cli import audit_cmd
from agentd.runtime.msglog import LogRecord, open_log
from agentd.tools.audit import PROBE_LABEL, Collected, audit_run, leakage_probe
from protocols import Codec, encode, peer_identity


# -- the raw log format, parsed without any agentd code (tests/rawlog.py) -----------------------
def raw_header(frame: bytes) -> dict:
    if frame[:2] == b"\xff\xff":   # the fixed layout of act / step: u8 version, u8 kind code
        return {"k": {1: "act", 2: "step"}[frame[3]]}
    hlen = int.from_bytes(frame[:2], "little")
    return msgpack.unpackb(frame[2:2 + hlen], raw=False)


def raw_counts(run_dir: Path) -> tuple[Counter, Counter]:
    """(process, direction, kind) -> messages and -> bytes, straight from the log bytes."""
    msgs, nbytes = Counter(), Counter()
    for path in (run_dir / "logs").glob("*.log"):
        meta, records = raw_log(path)
        for direction, _, _, _, frames in records:
            if direction == "rej":              # the audit counts refused frames by reason
                msgs[meta["process"], "rej", "?"] += 1
                continue
            kind = raw_header(frames[0])["k"]
            msgs[meta["process"], direction, kind] += 1
            nbytes[meta["process"], direction, kind] += len(frames[0])
    return msgs, nbytes


def audit_counts(report: dict) -> tuple[Counter, Counter]:
    msgs, nbytes = Counter(), Counter()
    for e in report["edges"]:
        for who, direction, n, b in ((e["src"], "out", e["sent"], e["sent_bytes"]),
                                     (e["dst"], "in", e["received"], e["received_bytes"])):
            if n:
                msgs[who, direction, e["kind"]] += n
                nbytes[who, direction, e["kind"]] += b
    for r in report["rejections"]:
        msgs[r["receiver"], "rej", "?"] += r["count"]
    return msgs, nbytes


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    runs = Runs()
    try:
        run_dir = tmp_path_factory.mktemp("audit") / "run"
        done = runs.launch(run_dir, "--n", "3", "--steps", "200", "--episode-len", "20")
        assert done.returncode == 0, done.stdout
        yield run_dir
    finally:
        runs.cleanup()


# -- a clean run ------------------------------------------------------------------------------
def test_cli_writes_the_reports_and_figures_match_the_raw_logs(clean_run):
    done = subprocess.run([*AGENTD, "audit", str(clean_run)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Messages per edge and kind" in done.stdout and PROBE_LABEL in done.stdout
    assert "only permitted peer kinds left any agent: YES" in done.stdout
    assert "# Audit of" in (clean_run / "audit.md").read_text()
    report = read_json(clean_run / "audit.json")
    msgs, nbytes = raw_counts(clean_run)
    assert audit_counts(report) == (msgs, nbytes)
    assert msgs["agent 0", "out", "act"] == 200
    assert msgs["envserver", "in", "act"] == 600
    assert sum(e["records"] for e in report["logs"].values()) == sum(msgs.values())


def test_clean_run_loses_nothing_in_flight(clean_run):
    report = audit_run(clean_run)
    assert report["sent_not_received"] == []
    assert all(e["sent"] == e["received"] > 0 for e in report["edges"])
    assert all(e["sent_bytes"] == e["received_bytes"] for e in report["edges"])
    assert report["rejections"] == []
    # every process is named; nothing is left as "unassigned"
    assert {e["src"] for e in report["edges"]} == {"agent 0", "agent 1", "agent 2",
                                                   "coordinator", "envserver"}


def test_dac_sends_nothing_on_peer_edges(clean_run):
    peer = audit_run(clean_run)["peer"]
    assert peer["permitted"] == []
    assert len(peer["edges"]) == 6                     # a 3-ring: every ordered pair
    assert all(e["kinds"] == [] for e in peer["edges"])
    assert peer["only_permitted"] is True
    assert peer["not_permitted"] == [] and peer["not_peer_plane"] == []


def test_probe_learns_nothing_without_peer_messages(clean_run):
    probe = audit_run(clean_run)["probe"]
    assert probe["label"] == PROBE_LABEL
    assert [a["agent"] for a in probe["agents"]] == ["agent 0", "agent 1", "agent 2"]
    for a in probe["agents"]:
        assert a["note"] == "no peer messages: nothing to learn from"
        assert a["steps"] == 200 and a["peer_messages"] == 0
        # Constant features: the classifier can only guess the first half's commonest action,
        # exactly the message-free baseline, which never beats the hindsight chance rate.
        assert a["accuracy"] == a["baseline"] <= a["chance"]


# -- the probe on synthetic records -----------------------------------------------------------
def record(direction: str, plane: str, kind: str, src: int, dst: int, t: int,
           body: dict) -> LogRecord:
    header = {"v": 1, "k": kind, "s": src, "d": dst, "t": t, "q": 0}
    return LogRecord(direction, 0.0, plane, None, [b"x"], header, body)


def test_probe_finds_actions_that_peer_messages_reveal():
    rng = np.random.default_rng(0)
    c = Collected({})
    for t in range(400):
        action = int(rng.integers(3))
        c.add(0, record("out", "env", "act", 0, -2, t, {"t": t, "a": np.array([[action]])}))
        c.add(0, record("out", "peer", "latent", 0, 1, t,
                        {"z": np.array([action + rng.normal(0, 0.1), 0.0])}))
        c.add(1, record("out", "env", "act", 1, -2, t, {"t": t, "a": np.array([[0.5]])}))
    leaky, continuous = leakage_probe(c)["agents"]
    assert leaky["peer_messages"] == 400
    assert leaky["accuracy"] > 0.95 > leaky["chance"] + 0.5
    assert "may reveal actions" in leaky["note"]
    assert continuous["accuracy"] is None and "continuous" in continuous["note"]


# -- damaged input ----------------------------------------------------------------------------
def test_truncated_log_is_reported_and_the_audit_completes(clean_run, tmp_path, capsys):
    run_dir = tmp_path / "cut"
    shutil.copytree(clean_run, run_dir)
    log = run_dir / "logs" / "agent-0.log"
    last = items(log)[0][-1][1]                 # the records of the last chunk go with it
    log.write_bytes(log.read_bytes()[:-5])
    assert audit_cmd.run([str(run_dir)]) == 0
    assert "truncated last record skipped in: agent-0.log" in capsys.readouterr().out
    report = read_json(run_dir / "audit.json")
    assert report["logs"]["agent-0.log"]["truncated_tail"] is True
    full = read_json(clean_run / "audit.json")["logs"]["agent-0.log"]["records"]
    assert last and report["logs"]["agent-0.log"]["records"] == full - len(last)
    assert audit_counts(report) == raw_counts(run_dir)


def test_not_a_run_directory_exits_2(tmp_path, capsys):
    done = subprocess.run([*AGENTD, "audit", "/nonexistent"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 2
    assert "agentd audit: /nonexistent is not a run directory" in done.stderr
    (tmp_path / "config.toml").write_text('algo = "dac"\n')
    assert audit_cmd.run([str(tmp_path)]) == 2
    assert "has no message logs" in capsys.readouterr().err


# -- rejections on a live run -----------------------------------------------------------------
def inject(endpoint: str, frames: list[bytes]) -> None:
    """Send single-frame messages to an agent's peer socket as (non-neighbour) agent 2."""
    send_raw(endpoint, peer_identity(2), [[frame] for frame in frames])


def test_rejections_are_counted_by_reason_and_claimed_sender(runs, tmp_path):
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "4",
                       "--steps", "10000000", "--episode-len", "20"], run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and
             (run_dir / "metrics.jsonl").stat().st_size > 0, 60, "the first episodes")
    codec = Codec()
    body = {"t": 1, "r": 0, "idx": np.arange(4), "x": np.zeros(4)}
    inject(read_json(run_dir / "endpoints.json")["agents"]["0"]["endpoint"], [
        b"\x00\x01garbage bytes\xff",                               # malformed, sender unknown
        b"\x07",                                                    # malformed, sender unknown
        encode(codec, "gossip", 2, 0, 5, 1, {}),                    # unknown_kind
        encode(codec, "consensus", 2, 0, 5, 2, body),               # not_a_neighbour
    ])
    log = run_dir / "logs" / "agent-0.log"

    def four_rejections() -> bool:
        assert proc.poll() is None, f"the run ended early: {proc.stdout.read().decode()}"
        return sum(r.direction == "rej" for r in open_log(log)) >= 4

    wait_for(four_rejections, 60, "four rejections in agent 0's log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130

    assert audit_cmd.run([str(run_dir)]) == 0
    report = json.loads((run_dir / "audit.json").read_text())
    got = {(r["receiver"], r["sender"], r["reason"], r["plane"]): r["count"]
           for r in report["rejections"]}
    assert got == {("agent 0", "unknown", "malformed", "peer"): 2,
                   ("agent 0", "agent 2", "unknown_kind", "peer"): 1,
                   ("agent 0", "agent 2", "not_a_neighbour", "peer"): 1}
    assert audit_counts(report) == raw_counts(run_dir)
    assert report["peer"]["only_permitted"] is True      # refused frames never crossed
    assert "| agent 0 | unknown | malformed | peer | 2 |" in (run_dir / "audit.md").read_text()
