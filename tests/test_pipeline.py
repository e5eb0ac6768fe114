"""The transport's pipeline: each layer alone (a hand-made ``down``/``up`` on the other side of
it), then composed in real Transports over real ZeroMQ sockets on loopback."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from agentd.privacy.dp import DpLayer, DpSettings, KindNoise
from agentd.runtime.layers import (
    Arrival,
    Boundary,
    CodecLayer,
    GuardLayer,
    Layer,
    LogLayer,
    Parcel,
    TallyLayer,
    Unhandled,
    chain_receive,
    chain_send,
    unreachable_top,
)
from agentd.runtime.linkshim import DelayShim, DropShim
from agentd.runtime.msglog import MessageLog, open_log
from agentd.runtime.sockets import Link
from agentd.runtime.tally import Tally
from agentd.runtime.transport import Transport
from protocols import COORDINATOR, Codec, Guard, ProtocolError, encode
from protocols.errors import KindNotPermitted, NotANeighbour, Oversize

PEER = Link(sock=object(), plane="peer", router=False, endpoint="tcp://x:1", server=1)
CONTROL = Link(sock=object(), plane="control", router=False, endpoint="tcp://x:2",
               server=COORDINATOR)


def pr_values(rows: int = 2) -> dict:
    return {"qid": 1, "states": np.arange(rows, dtype=np.int64),
            "values": np.ones((rows, 2), dtype=np.float32)}


def parcel(link: Link = PEER, kind: str = "pr_values", dst: int = 1, body: dict | None = None,
           step: int = 0, **kw) -> Parcel:
    return Parcel(link, kind, 0, dst, pr_values() if body is None else body, step, **kw)


def frame(kind: str = "pr_values", src: int = 1, dst: int = 0, body: dict | None = None) -> bytes:
    return encode(Codec(), kind, src, dst, 0, 1, pr_values() if body is None else body)


def everything(batch: list[Parcel]) -> list[Parcel]:
    return batch


# -- each layer alone ------------------------------------------------------------------------
def test_the_guard_layer_skips_and_counts_a_refused_peer_message_and_raises_for_control():
    tally = Tally(0)
    layer = GuardLayer(Guard(0, {1}, {"pr_values"}), tally)
    passed: list[Parcel] = []
    sent = layer.send([parcel(dst=1), parcel(dst=2)], lambda b: passed.extend(b) or b)
    assert [p.dst for p in passed] == [1] and [p.dst for p in sent] == [1]
    assert tally.stats["peer"].refused_out == {"not_a_neighbour": 1}
    with pytest.raises(KindNotPermitted):      # a peer kind on the control plane: our bug
        layer.send([parcel(CONTROL, dst=COORDINATOR)], everything)
    msg = layer.receive(Arrival(PEER, [frame()]), unreachable_top)
    assert msg.kind == "pr_values" and msg.src == 1
    with pytest.raises(NotANeighbour):
        layer.receive(Arrival(PEER, [frame(src=3)]), unreachable_top)


def test_the_codec_numbers_its_frames_and_refuses_an_oversize_control_message():
    codec = CodecLayer(max_bytes=1 << 10)
    out = codec.send([parcel(), parcel()], everything)
    assert codec.seq == 2 and all(p.frame for p in out) and out[0].frame != out[1].frame
    assert CodecLayer(1 << 10, seq=codec.seq).send([parcel()], everything) and codec.seq == 2
    big = {"message": "x" * 4000}
    with pytest.raises(Oversize, match="--max-msg-bytes"):
        codec.send([parcel(CONTROL, "error", COORDINATOR, big)], everything)
    # an oversize peer message is the receiver's guard's to refuse and count
    assert codec.send([parcel(body=pr_values(200))], everything)


def test_the_boundary_turns_anything_but_a_refusal_into_one_and_counts_it():
    tally = Tally(0)
    boundary = Boundary(tally)

    def broken(arrival: Arrival):
        raise ValueError("truth value of an array is ambiguous")

    def refused(arrival: Arrival):
        raise NotANeighbour("no")

    with pytest.raises(NotANeighbour):
        boundary.receive(Arrival(PEER, [b"x"]), refused)
    assert tally.stats["peer"].catch_all == 0
    with pytest.raises(Unhandled, match="ValueError") as caught:
        boundary.receive(Arrival(PEER, [b"x"]), broken)
    assert caught.value.reason == "unhandled" and tally.stats["peer"].catch_all == 1


def test_the_log_layer_records_what_went_out_came_in_and_was_refused(tmp_path):
    log = MessageLog("agent 0", tmp_path / "a.log")
    layer = LogLayer(log)
    good, lost, first = parcel(), parcel(dst=2), parcel(CONTROL, "heartbeat", COORDINATOR, {},
                                                        first=True)
    for p in (good, lost, first):
        p.frame = b"F%d" % p.dst
    # only what went out is logged; a 'first' message is logged before it leaves
    assert layer.send([good, lost, first], lambda b: [good]) == [good]
    guard = GuardLayer(Guard(0, {1}, {"pr_values"}), Tally(0))
    layer.receive(Arrival(PEER, [frame()]), lambda a: guard.receive(a, unreachable_top))
    with pytest.raises(ProtocolError):
        layer.receive(Arrival(PEER, [frame(src=3)]), lambda a: guard.receive(a, unreachable_top))
    layer.close()
    layer.send([good], everything)          # closed: nothing more is written
    records = [(r.direction, r.reason) for r in open_log(tmp_path / "a.log")]
    assert records == [("out", None), ("out", None), ("in", None), ("rej", "not_a_neighbour")]


def test_the_tally_layer_counts_and_ends_a_refusal():
    tally = Tally(0)
    layer = TallyLayer(tally)
    p = parcel()
    p.frame = b"12345"
    layer.send([p, parcel()], lambda b: b[:1])
    assert (tally.stats["peer"].msgs_sent, tally.stats["peer"].bytes_sent) == (1, 5)

    def refuse(arrival):
        raise NotANeighbour("no")

    assert layer.receive(Arrival(PEER, [b"x"]), refuse) is None
    assert tally.stats["peer"].rejected == {"not_a_neighbour": 1}


def test_the_dp_layer_noises_peer_bodies_and_counts_only_releases_that_went_out():
    settings = DpSettings({"pr_values": KindNoise(sigma=1.0, clip=1.0)}, 1e-5)
    layer = DpLayer.for_agent(settings, seed=7, agent=0)
    body = pr_values()
    out = layer.send([parcel(body=body, dst=1), parcel(body=body, dst=2)], lambda b: b[:1])
    assert len(out) == 1 and not np.array_equal(out[0].body["values"], body["values"])
    assert np.array_equal(body["values"], np.ones((2, 2), dtype=np.float32))   # not touched
    assert layer.releases == {(1, 1.0, 1.0): 1} and layer.distinct == {(1.0, 1.0): 1}
    assert layer.on_receive is False         # left out of the receive chain


def test_the_drop_shim_loses_peer_messages_of_its_steps_and_says_they_went():
    tally = Tally(0)
    shim = DropShim("0-1@5-9", tally)
    wire: list[Parcel] = []
    batch = [parcel(dst=1, step=4), parcel(dst=1, step=5), parcel(dst=2, step=5)]
    sent = shim.send(batch, lambda b: wire.extend(b) or b)
    assert sent == batch and [(p.dst, p.step) for p in wire] == [(1, 4), (2, 5)]
    assert tally.stats["peer"].refused_out == {"test_link_drop": 1}
    assert shim.meta() == {"test_link_drop": "0-1@5-9"}


def test_the_delay_shim_holds_a_plane_until_it_is_due_and_keeps_the_order():
    shim = DelayShim("peer=30:0")
    wire: list[Parcel] = []
    a, b, c = parcel(step=1), parcel(step=2), parcel(CONTROL, "heartbeat", COORDINATOR, {})
    assert shim.send([a, b, c], lambda batch: wire.extend(batch) or batch) == [a, b, c]
    assert wire == [c] and 0 < shim.due() <= 0.03
    time.sleep(0.04)
    assert shim.due() is None and wire == [c, a, b]


def test_chains_leave_out_the_sides_a_layer_does_not_act_on():
    calls: list[str] = []

    class Note(Layer):
        def __init__(self, name: str, on_receive: bool = True) -> None:
            self.name, self.on_receive = name, on_receive    # type: ignore[misc]

        def send(self, batch, down):
            calls.append(f"send {self.name}")
            return down(batch)

        def receive(self, arrival, up):
            calls.append(f"receive {self.name}")
            return up(arrival)

    layers = [Note("app"), Note("mid", on_receive=False), Note("wire")]
    chain_send(layers, everything)([parcel()])
    chain_receive(layers, lambda a: "msg")(Arrival(PEER, []))
    assert calls == ["send app", "send mid", "send wire", "receive wire", "receive app"]


# -- composed, over real sockets ---------------------------------------------------------------
def serve_until(t: Transport, predicate, timeout: float = 10.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate(got):
        for link in t.poll(50):
            got += t.recv_all(link)
    return got


class Exploding(Layer):
    """A policy layer whose receive side fails on a marked message (a bug in a layer)."""

    on_send = False

    def receive(self, arrival, up):
        msg = up(arrival)
        if msg.body.get("qid") == 666:
            raise KeyError("a layer's own bug")
        return msg


def test_the_composed_pipeline_over_real_sockets(tmp_path):
    """Agent 1 (DP on) sends to agent 0 (a policy layer that fails on one message) over a real
    ROUTER/DEALER pair; a raw socket sends malformed frames. What arrives is noised, what is
    refused is counted and logged by reason, and the catch-all is reached only for the bug."""
    receiver = Transport(0, Guard(0), MessageLog("agent 0", tmp_path / "r.log"))
    sender = Transport(1, Guard(1), MessageLog("agent 1", tmp_path / "s.log"))
    ctx = zmq.Context()
    try:
        receiver.enter_run(Guard(0, {1}, {"pr_values"}), [Exploding()])
        settings = DpSettings({"pr_values": KindNoise(sigma=0.5, clip=1.0)}, 1e-5)
        dp = DpLayer.for_agent(settings, seed=3, agent=1)
        sender.enter_run(Guard(1, {0}, {"pr_values"}), [dp])
        with pytest.raises(RuntimeError, match="only once"):
            sender.enter_run(Guard(1, {0}, {"pr_values"}))
        server = receiver.bind_router("tcp://127.0.0.1:*", "peer")
        link = sender.connect_dealer(server.endpoint, "peer", 0, b"a1")
        assert sender.send(link, "pr_values", 0, pr_values(), step=3)
        assert not sender.send(link, "pr_values", 2, pr_values())     # not a neighbour
        assert sender.send(link, "pr_values", 0, {**pr_values(), "qid": 666})
        raw = ctx.socket(zmq.DEALER)
        raw.linger, raw.routing_id = 0, b"a7"
        raw.connect(server.endpoint)
        malformed = [b"", b"\x00" * 7, frame()[:-3], frame(src=1, dst=0)[:9] + b"\xff" * 30]
        for f in malformed:
            raw.send(f)
        got = serve_until(receiver, lambda g: False, timeout=1.5)
        assert [m.body["qid"] for m, _ in got] == [1]
        assert not np.array_equal(got[0][0].body["values"], pr_values()["values"])
        peer = receiver.stats["peer"]
        assert peer.catch_all == 1 and peer.rejected["unhandled"] == 1
        assert sum(peer.rejected.values()) == 1 + len(malformed)
        assert sender.stats["peer"].refused_out == {"not_a_neighbour": 1}
        assert dp.releases == {(0, 0.5, 1.0): 2}
        assert receiver.summary()["catch_all"] == 1
        assert receiver.security_meta() == {"secure": False, "insecure": False}
    finally:
        ctx.destroy(linger=0)
        sender.close()
        receiver.close()
    rej = [r.reason for r in open_log(tmp_path / "r.log") if r.direction == "rej"]
    assert "unhandled" in rej and len(rej) == 1 + len(malformed)
    out = [r for r in open_log(tmp_path / "s.log") if r.direction == "out"]
    assert len(out) == 2            # the refused send is not logged


def test_a_handler_that_raises_is_a_counted_rejection_not_the_end(tmp_path):
    t = Transport(0, Guard(0), None)
    guard = GuardLayer(Guard(0, {1}, {"pr_values"}), Tally(0))
    msg = guard.receive(Arrival(PEER, [frame()]), unreachable_top)

    class Stop(Exception):
        pass

    try:
        with t.handling("peer", msg):
            raise TypeError("Object of type bytes is not JSON serializable")
        assert t.stats["peer"].rejected == {"unhandled": 1} and t.stats["peer"].catch_all == 1
        with pytest.raises(Stop), t.handling("peer", msg, passing=(Stop,)):
            raise Stop()
        assert t.stats["peer"].catch_all == 1
    finally:
        t.close()


def test_the_welcome_assigns_the_id_without_losing_the_sequence():
    t = Transport(-3, Guard(-3, max_bytes=1 << 20), None)
    try:
        codec = t.layer(CodecLayer)
        assert codec is not None
        codec.seq = 41
        t.assign(4)
        assert t.me == t.guard.me == t.tally.me == 4 and t.guard.max_bytes == 1 << 20
        assert t.layer(CodecLayer) is codec
        t.enter_run(Guard(4, {1}, {"pr_values"}, 1 << 21))
        assert t.layer(CodecLayer).seq == 41 and t.layer(CodecLayer).max_bytes == 1 << 21
    finally:
        t.close()


# -- the receive loops of the coordinator and the env server ----------------------------------
def test_the_coordinators_loop_survives_a_handler_that_raises(tmp_path, monkeypatch):
    """A handler bug (here injected: the heartbeat's handler raises) was the end of the
    coordinator: no summary.json. Now the loop's boundary counts it and the run ends as it
    would have."""
    import json
    import threading

    from agentd.config import resolve
    from coordinator import coordinator as coordinator_module

    def buggy(coord, proc, msg):
        raise ValueError("a handler's own bug")

    monkeypatch.setitem(coordinator_module.HANDLERS, "heartbeat", buggy)
    cfg = resolve({}, {"run_dir": str(tmp_path), "n": 2, "steps": 10, "join_timeout": 2.0})
    coord = coordinator_module.Coordinator(cfg, "tcp://127.0.0.1:*", quiet=True)
    coord.write_start_files()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(coord.endpoint)
    codec = Codec()

    def client() -> None:
        hello = {"role": "agent", "pid": 1, "host": "h", "endpoint": "tcp://127.0.0.1:9",
                 "want_id": None, "caps": {}}
        sock.send(encode(codec, "hello", -3, COORDINATOR, 0, 1, hello))
        for seq in range(2, 5):
            sock.send(encode(codec, "heartbeat", -3, COORDINATOR, 0, seq, {}))

    threading.Thread(target=client).start()
    try:
        assert coord.serve() == 1          # nobody else joined within join_timeout
    finally:
        ctx.destroy(linger=0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    own = summary["coordinator"]
    assert own["rejected"] == {"unhandled": 3} and own["catch_all"] == 3
    assert "only 1 of 2 agent processes joined" in summary["error"]


def test_the_env_servers_loop_survives_a_handler_that_raises():
    """The same for the env server: a join whose handling raises (an injected bug) is counted
    and the server goes on until the coordinator stops it."""
    import threading

    from agentd.envs import make_env
    from agentd.runtime.control import ControlPlane
    from coordinator.envserver import EnvServer, StopRequested
    from protocols import ENVSERVER, peer_identity

    class Buggy(EnvServer):
        def _on_join(self, msg, ident, link):
            raise AttributeError("a handler's own bug")

    coord = Transport(COORDINATOR, Guard(COORDINATOR), None)
    t = Transport(ENVSERVER, Guard(ENVSERVER), None)
    ctx = zmq.Context()
    try:
        control_link = coord.bind_router("tcp://127.0.0.1:*", "control")
        control = ControlPlane(t, control_link.endpoint, interval=0.1, timeout=30.0)
        env_link = t.bind_router("tcp://127.0.0.1:*", "env")
        env = make_env("random-mdp", n_agents=1, num_envs=1, episode_len=5, seed=0,
                       env_kwargs={})
        info = {"config": {"steps": 5}, "seeds": {"env_reset": 0}, "controllers": {"0": [0]}}
        server = Buggy(t, control, env_link, info, env)
        agent = ctx.socket(zmq.DEALER)
        agent.linger, agent.routing_id = 0, peer_identity(0)
        agent.connect(env_link.endpoint)
        for seq in (1, 2):
            agent.send(encode(Codec(), "join", 0, ENVSERVER, 0, seq, {}))
        control.send("heartbeat", {})       # so the coordinator's side knows whom to stop
        ident = None
        deadline = time.monotonic() + 10
        while ident is None and time.monotonic() < deadline:
            for _, who in coord.recv_all(control_link) if control_link in coord.poll(50) else []:
                ident = who
        assert ident is not None
        stop = threading.Timer(1.0, coord.send, (control_link, "stop", ENVSERVER,
                                                 {"reason": "test over"}), {"to": ident})
        stop.start()             # once the joins have been served
        with pytest.raises(StopRequested):
            server.run()
        stop.join()
        assert t.stats["env"].rejected == {"unhandled": 2} and t.stats["env"].catch_all == 2
    finally:
        ctx.destroy(linger=0)
        t.close()
        coord.close()


def test_real_validation_refuses_the_known_crashers_and_the_catch_all_stays_at_zero():
    """The frames that once killed the coordinator (issue 30: an array as header 'v', a
    zero-element array with a dimension >= 2**63, body keys that do not sort), sent over a
    real socket: each refused by the guard with its own reason; none reaches the net."""
    import struct

    import msgpack

    from protocols.envelope import VERSION

    codec = Codec()

    def envelope(head: dict, body: bytes) -> bytes:
        packed = codec.pack(head)
        return struct.pack("<H", len(packed)) + packed + body

    head = {"v": VERSION, "k": "heartbeat", "s": 0, "d": COORDINATOR, "t": 0, "q": 1}
    huge = msgpack.ExtType(1, struct.pack("<BB2Q", 7, 2, 0, 1 << 63))
    frames = [envelope({**head, "v": np.array([1, 1])}, msgpack.packb({})),
              envelope({**head, "v": True}, msgpack.packb({})),
              envelope({**head, "k": "metrics"}, msgpack.packb({"step": 0, "scalars": {},
                                                                  "x": huge})),
              envelope({**head, "k": "metrics"}, msgpack.packb({"step": 1, "scalars": {},
                                                                  0: 1, "x": 1})),
              envelope(head, msgpack.packb({None: 1, b"k": 2, 1.5: 3}))]
    coord = Transport(COORDINATOR, Guard(COORDINATOR), None)
    ctx = zmq.Context()
    try:
        link = coord.bind_router("tcp://127.0.0.1:*", "control")
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(link.endpoint)
        for f in frames:
            raw.send(f)
        control = coord.stats["control"]
        serve_until(coord, lambda g: sum(control.rejected.values()) >= len(frames))
        assert sum(control.rejected.values()) == len(frames) and control.msgs_recv == 0
        assert set(control.rejected) <= {"malformed", "schema_mismatch"}
        assert control.catch_all == 0
    finally:
        ctx.destroy(linger=0)
        coord.close()
