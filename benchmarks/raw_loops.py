"""Raw pyzmq loops: the transport's ceiling, measured with no learner, guard or log.

* joint step: an env ROUTER and N agent DEALER processes; per step the env waits for every
  agent's action, then replies to each (the shape of agentd's hot loop), in two flavours:
  sync sockets with a poller, and ``zmq.asyncio`` on uvloop.
* ring exchange: N processes on a ring, each sends a small message to both neighbours and waits
  for theirs, per step.
* the same joint step without ZeroMQ, for what a local fast path could reach at best: over
  pipes (``multiprocessing.Pipe``: one kernel object per agent, no I/O thread), and over
  shared memory (one slot per agent, a semaphore each way: only the futex wake-ups remain).
Everything binds to 127.0.0.1 (the pipe and shared-memory loops use no network). Each
function returns steps per second.
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


def _pipe_agent(conn, steps: int) -> None:
    conn.send_bytes(PAYLOAD)
    for _ in range(steps):
        conn.recv_bytes()
        conn.send_bytes(PAYLOAD)
    conn.recv_bytes()
    conn.close()


def joint_step_pipe(n: int, steps: int) -> float:
    """The joint step over one duplex pipe per agent: the kernel's cost without ZeroMQ's."""
    from multiprocessing.connection import wait

    ends = [mp.Pipe() for _ in range(n)]
    procs = [mp.Process(target=_pipe_agent, args=(child, steps)) for _, child in ends]
    for p in procs:
        p.start()
    conns = [parent for parent, _ in ends]
    try:
        for c in conns:
            c.recv_bytes()
        start = time.perf_counter()
        for _ in range(steps):
            for c in conns:
                c.send_bytes(PAYLOAD)
            pending = set(conns)
            while pending:
                for c in wait(list(pending)):
                    c.recv_bytes()
                    pending.discard(c)
        rate = steps / (time.perf_counter() - start)
        for c in conns:
            c.send_bytes(PAYLOAD)
    finally:
        _end(procs)
    return rate


def _shm_agent(name: str, i: int, go, done, steps: int) -> None:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=name)
    slot = shm.buf[i * len(PAYLOAD):(i + 1) * len(PAYLOAD)]
    for _ in range(steps):
        if not go.acquire(timeout=30):   # the env's step reply is in shared memory
            raise TimeoutError("shm joint step: no step from the env in 30 s")
        slot[:] = PAYLOAD              # the next action
        done.release()
    del slot
    shm.close()


def joint_step_shm(n: int, steps: int) -> float:
    """The joint step over shared memory: one action slot per agent, a semaphore per agent
    for "your reply is ready" and one counting semaphore for "an action is in"."""
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=n * len(PAYLOAD))
    gos = [mp.Semaphore(0) for _ in range(n)]
    done = mp.Semaphore(0)
    procs = [mp.Process(target=_shm_agent, args=(shm.name, i, gos[i], done, steps))
             for i in range(n)]
    try:
        for p in procs:
            p.start()
        start = time.perf_counter()
        for _ in range(steps):
            for go in gos:
                go.release()
            for _ in range(n):
                if not done.acquire(timeout=30):
                    raise TimeoutError("shm joint step: an agent sent no action in 30 s")
            bytes(shm.buf[:n * len(PAYLOAD)])   # the env reads every action
        rate = steps / (time.perf_counter() - start)
    finally:
        _end(procs)
        shm.close()
        shm.unlink()
    return rate


def _end(procs: list) -> None:
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()


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
              f"ring {ring_exchange(n, 5000):,.0f}/s  "
              f"pipe {joint_step_pipe(n, 5000):,.0f}/s  "
              f"shm {joint_step_shm(n, 5000):,.0f}/s", flush=True)
