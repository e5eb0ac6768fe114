"""The levers that lower the ε a DP run spends: Poisson subsampling of releases (q), one noised
release shared by its copies (broadcast), and the per-agent account over all its out-edges;
the accountant against independent computations, live runs against their logs."""

from __future__ import annotations

import math
from collections import Counter

import dp_accounting
import numpy as np
import pytest
from conftest import read_json
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from scipy.optimize import brentq
from scipy.stats import norm

from agentd.config import ConfigError, resolve
from agentd.privacy.accountant import agent_report, epsilon
from agentd.privacy.dp import DP_STREAM, DpLayer, DpSettings, KindNoise
from agentd.runtime.msglog import open_log
from agentd.tools.audit import audit_run

DELTA = 1e-5


# -- the accountant with subsampling -------------------------------------------------------
def exact_sampled_gaussian_epsilon(sigma: float, q: float, delta: float) -> float:
    """ε(δ) of ONE Poisson-subsampled Gaussian (sensitivity 1, add/remove), from its privacy
    loss in closed form: P = (1-q) N(0, σ²) + q N(1, σ²) against Q = N(0, σ²), both
    directions, δ(ε) = sup_S P(S) - e^ε Q(S). Written from the definitions, not the library."""
    def delta_of(eps: float) -> float:
        x1 = 0.5 + sigma**2 * math.log((math.exp(eps) - 1 + q) / q)
        d1 = ((1 - q) * norm.sf(x1 / sigma) + q * norm.sf((x1 - 1) / sigma)
              - math.exp(eps) * norm.sf(x1 / sigma))
        d2 = 0.0
        if math.exp(-eps) > 1 - q:
            x2 = 0.5 + sigma**2 * math.log((math.exp(-eps) - 1 + q) / q)
            d2 = norm.cdf(x2 / sigma) - math.exp(eps) * ((1 - q) * norm.cdf(x2 / sigma)
                                                         + q * norm.cdf((x2 - 1) / sigma))
        return max(d1, d2)

    return brentq(lambda e: delta_of(e) - delta, 1e-9, 50.0, xtol=1e-10)


@pytest.mark.parametrize(("sigma", "q"), [(1.0, 0.1), (0.8, 0.3), (2.0, 0.5)])
def test_one_sampled_release_matches_the_closed_form(sigma, q):
    exact = exact_sampled_gaussian_epsilon(sigma, q, DELTA)
    got = epsilon({(sigma, q): 1}, DELTA, "pld")
    assert exact - 1e-6 <= got <= exact + 2e-3 * (1 + exact)   # PLD rounds pessimistically
    assert got < epsilon({sigma: 1}, DELTA, "pld")             # sampling amplifies


@pytest.mark.parametrize(("sigma", "q", "count"), [(1.0, 0.01, 20_000), (2.0, 0.1, 5_000),
                                                   (4.0, 0.5, 2_000)])
def test_many_sampled_releases_match_the_rdp_accountant_and_pld_is_tighter(sigma, q, count):
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(event, count=count)
    rdp = acc.get_epsilon(DELTA)
    assert epsilon({(sigma, q): count}, DELTA, "rdp") == pytest.approx(rdp, rel=1e-5)
    assert epsilon({(sigma, q): count}, DELTA, "pld", live=True) == pytest.approx(rdp, rel=1e-5)
    pld = epsilon({(sigma, q): count}, DELTA, "pld")
    assert 0.7 * rdp < pld < rdp                 # the tight one below the bound, not far off
    fine = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    fine.compose(event, count=count)
    assert fine.get_epsilon(DELTA) <= pld <= fine.get_epsilon(DELTA) * 1.005
    assert pld < epsilon({sigma: count}, DELTA, "pld") / 2    # what the sampling bought


def test_q_one_is_the_gaussian_and_keys_merge():
    exact = dp_accounting.get_epsilon_gaussian(3.0 / math.sqrt(400), DELTA)
    assert epsilon({(3.0, 1.0): 400}, DELTA) == epsilon({3.0: 400}, DELTA)
    assert epsilon({(3.0, 1.0): 150, 3.0: 250}, DELTA) == pytest.approx(exact, rel=1e-3)


# -- per-agent accounting --------------------------------------------------------------------
def test_the_agent_composes_every_release_on_every_edge_or_its_distinct_ones():
    releases = Counter({(1, 2.0, 0.2): 300, (2, 2.0, 0.2): 300, (3, 4.0, 1.0): 50})
    r = agent_report(releases, DELTA, "pld")
    edge_max = max(e["epsilon"] for e in r["edges"].values())
    assert r["epsilon"] == epsilon({(2.0, 0.2): 600, (4.0, 1.0): 50}, DELTA) > edge_max
    assert r["edges"]["1"]["epsilon"] == epsilon({(2.0, 0.2): 300}, DELTA)
    shared = agent_report(releases, DELTA, "pld", distinct=Counter({(2.0, 0.2): 300,
                                                                    (4.0, 1.0): 50}))
    assert shared["edges"] == r["edges"] and shared["releases"] == 350
    assert edge_max <= shared["epsilon"] == epsilon({(2.0, 0.2): 300, (4.0, 1.0): 50}, DELTA)


# -- the layer -------------------------------------------------------------------------------
def settings(q: float = 1.0, broadcast: bool = False, sigma: float = 1.0) -> DpSettings:
    return DpSettings({"pr_values": KindNoise(sigma, 10.0, q)}, DELTA, broadcast=broadcast)


def body(values: np.ndarray) -> dict:
    return {"qid": 1, "states": np.arange(len(values)), "values": values}


def test_an_unsampled_release_is_the_noise_alone_and_the_rate_is_q():
    dp = DpLayer.for_agent(settings(q=0.3), 4, 0)
    twin = np.random.default_rng([4, 0, DP_STREAM])     # the same stream, read by hand
    values = np.full((2, 3), 2.0)
    carried = 0
    n = 3000
    for _ in range(n):
        out = dp.privatise("pr_values", body(values))["values"]
        sampled = twin.random() < 0.3
        noise = twin.normal(0.0, 10.0, (2, 3))
        assert np.array_equal(out, (values if sampled else 0.0) + noise)
        carried += sampled
    assert abs(carried - 0.3 * n) <= 4 * math.sqrt(n * 0.3 * 0.7)
    assert np.array_equal(values, np.full((2, 3), 2.0))      # the input is not touched


def test_broadcast_sends_one_noised_release_to_each_neighbour_and_counts_it_once():
    dp = DpLayer.for_agent(settings(broadcast=True), 0, 0)
    values = np.ones((2, 2))
    shared = body(values)
    a, b = (dp.release("pr_values", shared, j) for j in (1, 2))
    assert a[1] is b[1] and np.array_equal(a[0]["values"], b[0]["values"])
    for j, (_, share) in zip((1, 2), (a, b)):
        dp.sent("pr_values", j, share)
    # a second send to a neighbour already served, or new values: a new release
    c = dp.release("pr_values", shared, 1)
    values[0, 0] = 0.5                           # changed in place: noised afresh
    d = dp.release("pr_values", shared, 2)
    assert c[1] is not a[1] and d[1] is not c[1]
    assert not np.array_equal(c[0]["values"], a[0]["values"])
    assert dp.releases == {(1, 1.0, 1.0): 1, (2, 1.0, 1.0): 1} and dp.distinct == {(1.0, 1.0): 1}
    off = DpLayer.for_agent(settings(broadcast=False), 0, 0)
    x, y = (off.release("pr_values", shared, j) for j in (1, 2))
    assert x[1] is None and not np.array_equal(x[0]["values"], y[0]["values"])


# -- config ----------------------------------------------------------------------------------
def test_the_levers_are_config_options_checked_with_the_field_named():
    c = resolve({"dp_sigma": 2.0, "dp_sample_rate": 0.25, "dp_broadcast": "on",
                 "dp_kinds": {"pr_values": {"q": 0.5, "clip": 3}}},
                {"algo": "pr", "env": "digital"})
    s = DpSettings.from_config(c.to_dict())
    assert s is not None and s.broadcast and s.kinds["pr_values"] == KindNoise(2.0, 3.0, 0.5)
    assert s.kinds["consensus"] == KindNoise(2.0, 1.0, 0.25)
    assert DpSettings.from_meta(s.to_meta()) == s
    for values, field in [({"dp_sigma": 1.0, "dp_sample_rate": 0.0}, "dp_sample_rate"),
                          ({"dp_sigma": 1.0, "dp_sample_rate": 1.5}, "dp_sample_rate"),
                          ({"dp_sample_rate": 0.5}, "dp_sample_rate"),
                          ({"dp_sigma": 1.0, "dp_broadcast": "yes"}, "dp_broadcast"),
                          ({"dp_broadcast": "on"}, "dp_broadcast"),
                          ({"dp_sigma": 1.0, "dp_kinds": {"latent": {"q": 2}}},
                           "dp_kinds.latent.q")]:
        with pytest.raises(ConfigError, match=f"'{field}'"):
            resolve(values, {})


# -- live runs -------------------------------------------------------------------------------
RUN = ["--algo", "pr", "--env", "digital", "--n", "3", "--steps", "150", "--episode-len", "20",
       "--seed", "5", "--dp-sigma", "1.5", "--dp-clip", "4"]


def sent_values(run_dir, agent):
    return [(r.header["d"], r.body["values"]) for r in open_log(run_dir / f"logs/agent-{agent}.log")
            if r.direction == "out" and r.kind == "pr_values"]


def test_a_subsampled_run_carries_values_at_rate_q_and_accounts_for_it(tmp_path, runs):
    q = 0.3
    res = runs.launch(tmp_path / "run", *RUN, "--dp-sample-rate", str(q))
    assert res.returncode == 0, res.stdout
    dp = read_json(tmp_path / "run/summary.json")["dp"]
    for agent in range(3):
        twin = np.random.default_rng([5, agent, DP_STREAM])   # the agent's noise stream
        carried = total = 0
        for _, values in sent_values(tmp_path / "run", agent):
            sampled = twin.random() < q
            noise = twin.normal(0.0, 1.5 * 4, values.shape)
            if not sampled:
                assert np.array_equal(values, noise)    # the noise alone, nothing else
            carried += sampled
            total += 1
        assert total == 300
        assert abs(carried - q * total) <= 4 * math.sqrt(total * q * (1 - q))
    edge = epsilon({(1.5, q): 150}, DELTA)
    assert all(e["releases"] == 150 and e["epsilon"] == edge for e in dp["edges"])
    assert [a["epsilon"] for a in dp["agents"]] == [epsilon({(1.5, q): 300}, DELTA)] * 3
    assert dp["max_epsilon"] < epsilon({1.5: 300}, DELTA) / 3
    assert dp["max_edge_epsilon"] == edge <= dp["max_epsilon"]
    assert dp["q"]["pr_values"] == q and "Poisson-subsampled" in dp["assumptions"]
    audited = audit_run(tmp_path / "run")["dp"]
    assert audited["matches_run"] is True and audited["agents"] == dp["agents"]


def test_a_broadcast_run_sends_one_release_to_both_neighbours(tmp_path, runs):
    res = runs.launch(tmp_path / "run", *RUN, "--dp-broadcast", "on")
    assert res.returncode == 0, res.stdout
    dp = read_json(tmp_path / "run/summary.json")["dp"]
    by_dst: dict[int, list] = {}
    for dst, values in sent_values(tmp_path / "run", 0):
        by_dst.setdefault(dst, []).append(values)
    assert sorted(by_dst) == [1, 2] and len(by_dst[1]) == len(by_dst[2]) == 150
    assert all(np.array_equal(a, b) for a, b in zip(by_dst[1], by_dst[2], strict=True))
    edge = epsilon({1.5: 150}, DELTA)
    assert all(e["releases"] == 150 and e["epsilon"] == edge for e in dp["edges"])
    assert all(a["releases"] == 150 and a["epsilon"] == edge for a in dp["agents"])
    assert dp["broadcast"] is True
    audited = audit_run(tmp_path / "run")["dp"]
    assert audited["matches_run"] is True and audited["agents"] == dp["agents"]
