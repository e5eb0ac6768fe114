"""Deep decentralized off-policy actor-critic with log-ratio consensus (Li & Jia 2021, Algorithm 2).

dac-deep is isac (``agentd.algorithms.offpolicy.isac``) plus consensus. Agent i keeps, privately:
a squashed-Gaussian actor pi_theta^i(a^i|s) (eq. 59), a critic Q_phi^i(s, a^i) and its
Polyak-averaged target, and a replay buffer D^i of e_t = (s_t, a^i_t, r_t, s_{t+1}) plus the
behaviour log-density log pi_old^i(a^i_t|s_t) (all isac's). The buffers of all agents are
aligned by the global step (the joint step is synchronous), so a buffer position names the
same experience in every agent.

Per joint step, after storing the new experiences:
  consensus   beta^i_e recomputed for the step's entries E (eq. 44), x^i_e += beta - beta_hat
              (eq. 45), then R gossip rounds x^i_e <- sum_j W_ij x^j_e with the neighbours'
              ``consensus`` messages (eq. 46); see ``agentd.algorithms.plugins.consensus``.
  critic      minimise mean_B w_e (Q_phi(s,a^i) - (r + gamma Q_phi_bar(s', a~)))^2, a~ ~ pi_theta(s')
              (eqs. 55-56), w_e from c^i_e = N x^i_e - beta^i_e (eq. 40).
  actor       maximise mean_B Q_phi(s, f_theta(xi, s)) (eq. 62), minus ``ent`` x log pi.
  target      phi_bar <- (1 - tau) phi_bar + tau phi.
The paper's order is critic, actor, consensus; here the consensus of the policy updated at
step t-1 runs at the start of step t, before the critic — the same sequence of operations.

Choices the paper leaves open (documented, all parameters):
* Importance weights: ``weights = "selfnorm"`` (default) uses w_e = exp(clip(c_e, ±c_clip)),
  divided by its batch mean (self-normalised importance sampling: the loss scale stays that of
  an unweighted batch); ``"clip"`` the clipped weights alone; ``"none"`` w = 1.
* beta uses the Gaussian density of the pre-tanh action u stored with the experience: the
  tanh and the Box rescaling Jacobians are the same for both policies at the same action and
  cancel in the log-ratio.
* ``ent`` > 0 adds SAC's entropy term to eq. 62's objective. The paper has none (ent = 0); without
  it sigma collapses, the log-ratios of two narrow Gaussians explode, and every weight hits
  the clip. The default is small.
* Consensus ``mode``: ``batch`` (default; O(batch) bytes per edge per step), ``full`` (the
  paper: every buffer entry every step) or ``off``.

Both isac and dac-deep take the deep policy-reciprocity plug-in (``pr_weight`` > 0,
``agentd.algorithms.plugins.deep_pr``): the TD target then mixes in the neighbours' target
values of the batch's next states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, Outgoing, param
from agentd.algorithms.offpolicy.isac import Isac, IsacParams
from agentd.algorithms.plugins.consensus import LogRatioConsensus
from agentd.algorithms.plugins.consensus_sums import RunningSumConsensus

MODES = ("batch", "full", "off")
WEIGHTS = ("selfnorm", "clip", "none")


@dataclass
class DacDeepParams(IsacParams):
    """isac's parameters plus the consensus and the importance weights."""

    mode: str = param("batch", choices=MODES)
    """consensus: batch (gossip on the shared update batch) | full (whole buffer) | off"""
    rounds: int = param(1, ge=1)
    """gossip rounds per step (batch mode; full mode always runs the paper's one round)"""
    weights: str = param("selfnorm", choices=WEIGHTS)
    """importance weights exp(c): selfnorm | clip | none"""
    c_clip: float = param(2.0, gt=0.0)
    """|c| is clipped to this before exp (weights within e^-2..e^2 by default)"""
    running_sums: bool = False
    """consensus by running sums (mass conserved when messages are lost; on by default with
    --peer-timeout or --link-schedule, see agentd.algorithms.plugins.consensus_sums)"""


class DacDeep(Isac):
    """Agent i of Algorithm 2: isac whose critic weighs each experience by the consensus
    estimate of the other agents' log-ratios."""

    name = "dac-deep"
    Params = DacDeepParams
    peer_kinds = frozenset({"consensus"})
    follows_link_schedule = True
    act_ahead_why = (
        "off-policy actor-critic: each transition is stored with the log-probability of the "
        "policy that acted (logp_old, the behaviour policy of beta, eq. 44), and the critic and "
        "actor steps sample the buffer, so acting with the policy one update older changes the "
        "data, not the update rule; consensus messages of a step a neighbour is ahead on wait "
        "for that step")

    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        kinds = set(super().permitted_kinds(params))
        if str(params.get("running_sums", False)).lower() in ("true", "1"):
            kinds = (kinds - {"consensus"}) | {"consensus_sum"}
        if params.get("mode") == "off":
            kinds -= {"consensus", "consensus_sum"}
        return frozenset(kinds)

    @classmethod
    def params_for_links(cls, params: dict[str, Any], links_fail: bool,
                         peer_timeout: float) -> dict[str, Any]:
        """Consensus by running sums when links may fail, unless the params say otherwise:
        plain gossip loses the mass of every lost message."""
        if (links_fail or peer_timeout > 0) and "running_sums" not in params:
            params = {**params, "running_sums": True}
        if links_fail and str(params.get("running_sums")).lower() in ("false", "0"):
            raise LearnerConfigError(f"{cls.name} follows a link schedule only with "
                                     "running_sums = true")
        return params

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        p, m = self.params, self.params.buffer
        self.mode = p.mode if spec.neighbours else "off"
        self.sums = p.running_sums
        self.cons = RunningSumConsensus(m, spec.n_agents, spec.weights, spec.agent_id,
                                        spec.live) if self.sums else \
            LogRatioConsensus(m, spec.n_agents, spec.weights, spec.agent_id)

    # -- storing: each new entry starts its consensus over --------------------------------
    def stored(self, pos: np.ndarray) -> None:
        if self.sums:
            self.cons.t_now = self.steps
        self.cons.reset_entries(pos)
        super().stored(pos)

    def skipped(self, pos: np.ndarray, steps: int) -> None:
        """The skipped positions' beta and x start over."""
        if self.sums:
            self.cons.t_now = self.steps + steps
        self.cons.reset_entries(pos)

    def choose_batch(self) -> np.ndarray:
        """Batch mode: every agent draws the same positions from the step's shared seed."""
        if self.mode == "batch":
            shared = np.random.default_rng([self.spec.shared_seed, 0xDAC, self.steps])
            return self.buf.sample(self.params.batch, shared)
        return super().choose_batch()

    def begin_update(self) -> None:
        """isac's (the batch, PR's queries), then the gossip on the batch (batch mode) or on
        the whole buffer (full mode)."""
        super().begin_update()
        if self.mode == "off":
            return
        if self.mode == "batch":
            entries, prefix, rounds = self.batch_idx, False, self.params.rounds
        else:
            entries, prefix, rounds = np.arange(self.buf.size), True, 1
        self.cons.local_update(entries, self._beta(entries))
        self.cons.start(self.steps, entries, rounds, prefix)

    def _beta(self, idx: np.ndarray) -> np.ndarray:
        """beta^i_e = log pi_theta(u_e|s_e) - log pi_old(u_e|s_e) (eq. 44)."""
        torch, s_all, u_all = self.torch, self.buf["s"], self.buf["u"]
        out = np.empty(len(idx))
        for lo in range(0, len(idx), 8192):
            part = idx[lo:lo + 8192]
            with torch.no_grad():
                logp = self.actor.log_prob_u(torch.as_tensor(s_all[part]),
                                             torch.as_tensor(u_all[part]))
            out[lo:lo + 8192] = logp.numpy().astype(np.float64) - self.buf["logp_old"][part]
        return out

    # -- messages --------------------------------------------------------------------------
    def outbox(self) -> list[Outgoing]:
        if self.sums:
            out = [Outgoing("consensus_sum", j, {"t": t, "r": r, "idx": idx, "s": s, "w": w})
                   for j, t, r, idx, s, w in self.cons.pending_messages()]
        else:
            out = [Outgoing("consensus", j, {"t": t, "r": r, "idx": idx, "x": x})
                   for t, r, idx, x in self.cons.pending_messages()
                   for j in self.spec.neighbours]
        return out + super().outbox()

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        if kind == "consensus" and "consensus" in self.peer_kinds:
            self.cons.receive(src, body["t"], body["r"], body["idx"], body["x"])
        elif kind == "consensus_sum" and "consensus_sum" in self.peer_kinds:
            self.cons.receive(src, body["t"], body["r"], body["idx"], body["s"])
        else:
            super().inbox(src, kind, body)

    def peers_silent(self, silent: frozenset[int]) -> bool:
        """Running sums can go ahead without a silent neighbour (its mass comes later)."""
        if not self.sums or (self.pr is not None and silent & self.pr.waiting_for()):
            return False
        self.cons.give_up(silent)
        return True

    def awaiting(self) -> frozenset[int]:
        return self.cons.waiting_for() | super().awaiting()

    # -- learning --------------------------------------------------------------------------
    def finish_messages(self) -> int:
        return self.cons.finish() if self.mode != "off" else 0

    def weights(self, idx: np.ndarray) -> np.ndarray:
        """Importance weights w_e from c^i_e (eq. 40), as chosen by ``weights``."""
        how = self.params.weights
        if how == "none" or self.mode == "off":
            return np.ones(len(idx))
        w = np.exp(np.clip(self.cons.c(idx), -self.params.c_clip, self.params.c_clip))
        return w / w.mean() if how == "selfnorm" else w

    def weight_scalars(self, idx: np.ndarray, w: np.ndarray) -> dict[str, float]:
        return {"c_abs": float(np.abs(self.cons.c(idx)).mean()), "w_max": float(w.max())}

    def rejected(self) -> int:
        return self.cons.rejected + super().rejected()

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """isac's, the consensus estimates of the filled entries (beta, x) and the last batch
        (for the offline consensus diagnostic)."""
        n = self.buf.size
        return {**super().state_dict(), "beta": self.cons.beta[:n].copy(),
                "x": self.cons.x[:n].copy(), "last_idx": self.last_idx.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        n = len(state["beta"])
        if n > len(self.cons.beta):
            raise LearnerConfigError(f"checkpoint holds consensus estimates of {n} entries, "
                                     f"the buffer {len(self.cons.beta)}")
        self.cons.beta[:n], self.cons.x[:n] = state["beta"], state["x"]
        self.last_idx = np.asarray(state["last_idx"], np.int64)
