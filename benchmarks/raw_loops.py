"""Raw pyzmq loops: the transport's ceiling, measured with no learner, guard or log.

* joint step: an env ROUTER and N agent DEALER processes; per step the env waits for every
  agent's action, then replies to each (the shape of agentd's hot loop), in two flavours:
  sync sockets with a poller, and ``zmq.asyncio`` on uvloop.
* ring exchange: N processes on a ring, each sends a small message to both neighbours and waits
  for theirs, per step.
Everything binds to 127.0.0.1. Each function returns steps per second.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import zmq

PAYLOAD = b"x" * 64


def _sync_agent(endpoint: str, steps: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(PAYLOAD)
    for _ in range(steps):
        sock.recv()
        sock.send(PAYLOAD)
    sock.recv()
    sock.close(linger=0)
    ctx.term()


def joint_step_sync(n: int, steps: int) -> float:
    ctx = zmq.Context()
    env = ctx.socket(zmq.ROUTER)
    port = env.bind_to_random_port("tcp://127.0.0.1")
    procs = [mp.Process(target=_sync_agent, args=(f"tcp://127.0.0.1:{port}", steps))
             for _ in range(n)]
    for p in procs:
        p.start()
    try:
        ids = [env.recv_multipart()[0] for _ in range(n)]
        start = time.perf_counter()
        for _ in range(steps):
            for ident in ids:
                env.send_multipart([ident, PAYLOAD])
            for _ in range(n):
                env.recv_multipart()
        rate = steps / (time.perf_counter() - start)
        for ident in ids:
            env.send_multipart([ident, PAYLOAD])
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        env.close(linger=0)
        ctx.term()
    return rate


def _async_agent(endpoint: str, steps: int) -> None:
    import uvloop
    import zmq.asyncio

    async def main() -> None:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.connect(endpoint)
        await sock.send(PAYLOAD)
        for _ in range(steps):
            await sock.recv()
            await sock.send(PAYLOAD)
        await sock.recv()
        sock.close(linger=0)
        ctx.term()

    uvloop.run(main())


def joint_step_asyncio(n: int, steps: int) -> float:
    import uvloop
    import zmq.asyncio

    async def main() -> float:
        ctx = zmq.asyncio.Context()
        env = ctx.socket(zmq.ROUTER)
        port = env.bind_to_random_port("tcp://127.0.0.1")
        procs = [mp.Process(target=_async_agent, args=(f"tcp://127.0.0.1:{port}", steps))
                 for _ in range(n)]
        for p in procs:
            p.start()
        try:
            ids = [(await env.recv_multipart())[0] for _ in range(n)]
            start = time.perf_counter()
            for _ in range(steps):
                for ident in ids:
                    await env.send_multipart([ident, PAYLOAD])
                for _ in range(n):
                    await env.recv_multipart()
            rate = steps / (time.perf_counter() - start)
            for ident in ids:
                await env.send_multipart([ident, PAYLOAD])
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
            env.close(linger=0)
            ctx.term()
        return rate

    return uvloop.run(main())


def _ring_node(i: int, n: int, ports: list[int], steps: int, out: mp.Queue) -> None:
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.ROUTER)
    inbox.bind(f"tcp://127.0.0.1:{ports[i]}")
    outs = []
    for j in sorted({(i - 1) % n, (i + 1) % n} - {i}):
        sock = ctx.socket(zmq.DEALER)
        sock.connect(f"tcp://127.0.0.1:{ports[j]}")
        outs.append(sock)
    time.sleep(0.5)   # let every connection come up before timing
    start = time.perf_counter()
    for _ in range(steps):
        for sock in outs:
            sock.send(PAYLOAD)
        for _ in outs:
            inbox.recv_multipart()
    out.put(steps / (time.perf_counter() - start))
    time.sleep(0.2)
    for sock in outs:
        sock.close(linger=0)
    inbox.close(linger=0)
    ctx.term()


def ring_exchange(n: int, steps: int) -> float:
    import socket

    ports = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_ring_node, args=(i, n, ports, steps, out)) for i in range(n)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    return min(rates)


if __name__ == "__main__":
    for n in (5, 16):
        print(f"n={n}: sync {joint_step_sync(n, 5000):,.0f}/s  "
              f"asyncio {joint_step_asyncio(n, 5000):,.0f}/s  "
              f"ring {ring_exchange(n, 5000):,.0f}/s")
