"""The recovery checkpoint's format: data only (an .npz read without pickle plus a JSON
skeleton), loaded into a learner built afresh and refused when it does not fit it. A file
another host shipped -- with a wrong skeleton, a wrong dtype, a pickle under the expected name,
an object array, a compressed member -- is refused with a clear error, and no code runs."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from test_recovery import ENV_OF, _dac_info

from agentd.agent import recovery
from agentd.agent.core import AgentCore
from agentd.algorithms import ALGORITHMS, load_learner_class
from agentd.launch.inprocess import build_env, make_learners, run_in_process


def _contents(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(bytes(arrays.pop(recovery.SKELETON))), arrays


def _pack(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays,
             **{recovery.SKELETON: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    return buf.getvalue()


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_learner_round_trips_to_the_identical_state(algo):
    """Trained a little, saved, loaded into a fresh learner, saved again: the same skeleton
    and the same arrays, bit for bit (tables, networks, optimiser moments, buffers, RNGs)."""
    env_id = next((e for e, algos in ENV_OF.items() if algo in algos), "random-mdp")
    cls = load_learner_class(algo)
    env = build_env(env_id, 2, episode_len=5, seed=1,
                    obs_mode="state" if cls.wants_state else "local")
    fields = {f.name for f in dataclasses.fields(cls.Params)} \
        if dataclasses.is_dataclass(getattr(cls, "Params", None)) else set()
    small = {"buffer": 64, "start": 8, "batch": 8, "hidden": 8}
    params = {k: v for k, v in small.items() if k in fields}
    learners = make_learners(algo, env, 2, seed=1, params=params)
    run_in_process(env, learners, 12)
    info = {"config": {"episode_len": 5}, "controls": learners[0].spec.controls}
    data = recovery.snapshot(AgentCore(info, learners[0]))
    fresh = AgentCore(info, make_learners(algo, env, 2, seed=1, params=params)[0])
    again = recovery.snapshot(recovery.load(data, fresh))
    (h1, a1), (h2, a2) = _contents(data), _contents(again)
    assert h1 == h2 and h1["version"] == recovery.VERSION
    assert a1.keys() == a2.keys() and a1
    for name in a1:
        assert a1[name].dtype == a2[name].dtype and np.array_equal(a1[name], a2[name],
                                                                   equal_nan=True), name
    with zipfile.ZipFile(io.BytesIO(data)) as zf:   # every member a plain .npy, stored
        assert all(i.filename.endswith(".npy") and i.compress_type == zipfile.ZIP_STORED
                   for i in zf.infolist())


def _dac(tmp_path):
    env = build_env("random-mdp", 1, episode_len=5, seed=1)
    info = _dac_info(env)
    core = recovery.fresh_core(info)
    core.steps_done = 7
    return info, recovery.snapshot(core)


def _refused(data: bytes, info: dict, match: str) -> None:
    with pytest.raises(recovery.RecoveryError, match=match):
        recovery.load(data, recovery.fresh_core(info), "the file")


def test_a_file_that_does_not_fit_the_learner_is_refused_naming_the_first_mismatch(tmp_path):
    info, data = _dac(tmp_path)
    header, arrays = _contents(data)
    assert recovery.load(_pack(header, arrays), recovery.fresh_core(info)).steps_done == 7
    learner = header["core"]["attrs"]["learner"]
    # wrong dtype: a float32 array where the learner keeps float64 (consistent file)
    name, node = next((n["name"], n) for k, n in learner["attrs"].items()
                      if isinstance(n, dict) and n.get("t") == "arr"
                      and arrays[n["name"]].dtype == np.float64 and arrays[n["name"]].size)
    wrong = {**arrays, name: arrays[name].astype(np.float32)}
    node["dtype"] = "<f4"
    _refused(_pack(header, wrong), info, r"at core\.learner\.\w+: the file has a float32 array")
    node["dtype"] = "<f8"
    # the skeleton says another shape than the array it names
    node["shape"] = [1, 2, 3]
    _refused(_pack(header, arrays), info, "the skeleton says")
    node["shape"] = list(arrays[name].shape)
    # a missing attribute; an object of another class; a class named by the file
    gone = learner["attrs"].pop("spec")
    _refused(_pack(header, arrays), info, r"at core\.learner: the file lacks attribute 'spec'")
    learner["attrs"]["spec"] = gone
    learner["cls"] = "os.system"
    _refused(_pack(header, arrays), info, r"at core\.learner: the file has a os\.system")
    learner["cls"] = "agentd.algorithms.tabular.dac.DAC"
    learner["attrs"]["spec"] = {"t": "obj", "cls": "subprocess.Popen", "attrs": {}}
    _refused(_pack(header, arrays), info, r"at core\.learner\.spec: the file has a subprocess")
    # the loader's own methods are no node kinds; an object may not become None
    for kind in ("module", "expect", "rng", "__init__"):
        learner["attrs"]["spec"] = {"t": kind}
        _refused(_pack(header, arrays), info, f"unknown node kind '{kind}'")
    learner["attrs"]["spec"] = None
    _refused(_pack(header, arrays), info, r"at core\.learner\.spec: the file has None")
    learner["attrs"]["spec"] = gone
    # another learner; another version; another format
    _refused(_pack({**header, "learner": "x.IQL"}, arrays), info, "holds a 'x.IQL' learner")
    _refused(_pack({**header, "version": 1}, arrays), info, "of version 1")
    _refused(_pack({**header, "format": "x"}, arrays), info, "not an agentd recovery")
    _refused(_pack(header, arrays)[:200], info, "not a readable recovery checkpoint")


class _Payload:
    """What an attacker ships: unpickling it would create ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_pickle_is_never_loaded_whatever_its_name(tmp_path, caplog):
    info, data = _dac(tmp_path)
    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"format": recovery.FORMAT, "core": _Payload(str(marker))})
    directory = tmp_path / "checkpoints" / "agent-0"
    directory.mkdir(parents=True)
    # under the old name, the new name, and inside an .npz as an object array
    (directory / "recovery-9.pkl").write_bytes(payload)
    (directory / "restored-9.pkl").write_bytes(payload)
    (directory / "recovery-8.npz").write_bytes(payload)
    header, arrays = _contents(data)
    buf = io.BytesIO()
    np.savez(buf, **{**arrays, "a0": np.array([_Payload(str(marker))], dtype=object)},
             skeleton=np.frombuffer(json.dumps(header).encode(), np.uint8))
    (directory / "recovery-7.npz").write_bytes(buf.getvalue())
    for name, match in (("restored-9.pkl", "is a pickle"), ("recovery-8.npz", "is a pickle"),
                        ("recovery-7.npz", "Object arrays cannot be loaded")):
        with pytest.raises(recovery.RecoveryError, match=match):
            recovery.restore(directory / name, recovery.fresh_core(info))
    # a restart skips them all (the .pkl files are not even candidates) and starts afresh
    core, record = recovery.rejoin_core(tmp_path, 0, info)
    assert record["checkpoint"] is None and record["skipped"] == 2 and core.steps_done == 0
    assert "recovery-9.pkl is a pickle, never loaded" in caplog.text
    # a replay of a restart record naming the pickle (or any other path) refuses it
    for name in ("checkpoints/agent-0/restored-9.pkl", "../../etc/passwd",
                 "checkpoints/agent-0/../../x/restored-1.npz"):
        with pytest.raises(recovery.RecoveryError, match="not a restored recovery checkpoint"):
            recovery.core_for_replay(tmp_path, {"checkpoint": name}, info)
    assert not marker.exists()


def test_a_compressed_member_is_refused_before_it_is_expanded(tmp_path):
    """A deflated member could expand far beyond the file (a zip bomb)."""
    info, data = _dac(tmp_path)
    header, arrays = _contents(data)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, **{recovery.SKELETON: np.frombuffer(
        json.dumps(header).encode(), np.uint8)})
    _refused(buf.getvalue(), info, "compressed members")
