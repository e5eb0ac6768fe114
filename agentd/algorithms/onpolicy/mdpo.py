"""MDPO: model-based decentralised policy optimisation (Luo, Jiang & Lu 2023, Algorithm 1).

Each agent privately keeps a latent-variable model of its own world (``mdpo_model``): latent
functions psi_1..psi_l, P_theta(o'|o,a,z), R_phi(o,a,z), a predictor f_zeta, and the real data
of its last l rollouts D^1..D^l. Per iteration (one rollout of the shared core):

  1. the rollout becomes D^l;
  2. fit P, R and psi_l on D^1..D^l, z ~ psi_j(o) on D^j          (``model_steps`` steps, eq. 1)
  3. fit f_zeta(z^l | z^1..z^{l-1}) on D^l                          (``pred_steps`` steps, eq. 2)
  4. branched model rollouts: from every real o in D^l, ``branch_len`` imagined steps with
     a ~ pi(o), z ~ f_zeta(z^2..z^l) (``predict = false``: z ~ psi_l, the ablation),
     o' ~ P, r = R; the last step bootstraps from V (a truncation)                   (eq. 3)
  5. DPO (or IPPO, ``base``) updates pi and V on the imagined batch — the shared core;
  6. D^j <- D^{j+1}, psi_j <- psi_{j+1}.

Until l iterations have passed there is no f_zeta to use, and z ~ psi_l.

``share_latent = true``: once per joint step each agent sends every neighbour a ``latent``
message {t, z}: z = f_zeta(psi_2(o)..psi_l(o))'s mean (psi_l(o)'s before f_zeta is trained) for
its current observation in each env copy, float32 (K, latent_dim); each agent appends its
neighbours' latents (sorted by id) to its model's input. In a branched rollout the neighbours'
latents of the branch's real start state are kept for all its steps (nobody can be asked about
imagined states). Defaults and why: README "MDPO".
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, Outgoing, keepalive, param
from agentd.algorithms.onpolicy.dpo import DPO, DpoParams
from agentd.algorithms.onpolicy.learner import OnPolicyLearner, batch_with_advantages
from agentd.algorithms.onpolicy.losses import ppo_clip_loss
from agentd.algorithms.onpolicy.rollout import RolloutStore


@dataclass
class MdpoParams(DpoParams):
    base: str = param("dpo", choices=("dpo", "ippo"))
    """policy update on the model rollouts: dpo | ippo"""
    clip: float = 0.2
    """PPO clip range (base = ippo)"""
    predict: bool = True
    """latent prediction f_zeta (false: MDPO without prediction, z ~ psi_l)"""
    latent_dim: int = param(8, ge=1)
    """dimension of z"""
    history: int = param(3, ge=2)
    """l: latent functions and rollouts remembered"""
    branch_len: int = param(5, ge=1)
    """imagined steps per branched rollout"""
    branches: int = param(0, ge=0)
    """branched rollouts per iteration (0: one from every real transition of the rollout)"""
    model_steps: int = param(50, ge=0)
    """gradient steps on P, R, psi_l per iteration"""
    pred_steps: int = param(25, ge=0)
    """gradient steps on f_zeta per iteration"""
    model_batch: int = param(128, ge=1)
    """samples per buffer per model step"""
    model_lr: float = 1e-3
    """step size of the model and the predictor"""
    model_hidden: int = param(64, ge=1)
    """hidden units of psi, the model trunk and f_zeta"""
    share_latent: bool = False
    """send neighbours the predicted latent each step and condition the model on theirs"""
    obs_model: str = param("auto", choices=("auto", "categorical", "gaussian"))
    """P_theta over o': categorical | gaussian | auto (categorical for Discrete observations)"""


class MDPO(DPO):
    """DPO/IPPO trained on branched rollouts of a private latent-variable model."""

    name = "mdpo"
    Params = MdpoParams
    peer_kinds = frozenset({"latent"})
    takes_images = False        # the latent model predicts next observation vectors

    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        on = str(params.get("share_latent", False)).lower() == "true"
        return cls.peer_kinds if on else frozenset()

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        from agentd.algorithms.onpolicy.mdpo_model import LatentModel

        p, torch = self.params, self.torch
        self.peer_kinds = self.permitted_kinds(spec.params)
        self.nb_slot = {j: k for k, j in enumerate(sorted(spec.neighbours))}
        self.act_in = self.head.dist_dim if self.head.discrete else self.head.act_shape[0]
        discrete_obs = (p.obs_model == "categorical" or
                        (p.obs_model == "auto" and spec.obs_spaces[0]["type"] == "discrete"))
        self.model = LatentModel(self.obs_dim, self.act_in, p.latent_dim, self.nb_dim,
                                 p.history, p.model_hidden, discrete_obs)
        self.opt_model = torch.optim.Adam(self.model.model_parameters(), lr=p.model_lr)
        self.opt_pred = torch.optim.Adam(self.model.predictor.parameters(), lr=p.model_lr)
        self.buffers: deque[dict[str, Any]] = deque(maxlen=p.history)
        self.model_scalars: dict[str, float] = {}
        self.steps = 0
        self.outgoing: list[Outgoing] = []
        self.missing: set[int] = set()
        self.early: dict[int, deque] = defaultdict(deque)
        self.latent_ignored = 0

    @property
    def nb_dim(self) -> int:
        p = self.params
        return len(self.spec.neighbours) * p.latent_dim if p.share_latent else 0

    def rollout_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {**super().rollout_fields(), "next_obs": ((self.obs_dim,), np.float32),
                "z_nb": ((self.nb_dim,), np.float32)}

    def extra_row(self, next_x: np.ndarray) -> dict[str, np.ndarray]:
        return {"next_obs": next_x, "z_nb": np.zeros((len(next_x), self.nb_dim), np.float32)}

    def peer_shapes(self) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
        """The exact latent array every neighbour must send: (K, latent_dim) float32."""
        if "latent" not in self.peer_kinds:
            return {}
        return {"latent": {"z": ((self.spec.num_envs, self.params.latent_dim), "float32")}}

    # -- latent messages -------------------------------------------------------------------
    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        x = self.pending["obs"] if self.pending is not None else None
        super().observe(obs, action, reward, next_obs, terminated, truncated)
        self.steps += 1
        if self.nb_dim:
            z = self.shared_latent(x)
            self.outgoing = [Outgoing("latent", j, {"t": self.steps, "z": z})
                             for j in self.nb_slot]
            self.missing = set(self.nb_slot)
            for j, queue in self.early.items():
                while queue and queue[0][0] <= self.steps:
                    t, zj = queue.popleft()
                    self._receive(j, t, zj)

    def shared_latent(self, x: np.ndarray) -> np.ndarray:
        """What this agent tells its neighbours about o: the predicted latent's mean."""
        with self.torch.no_grad():
            o = self.torch.as_tensor(x)
            z = (self.model.predicted_latent(o, None) if self.predictor_ready()
                 else self.model.latent(self.params.history - 1, o, None))
        return z.numpy().astype(np.float32)

    def outbox(self) -> list[Outgoing]:
        out, self.outgoing = self.outgoing, []
        return out

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        if kind != "latent" or not self.nb_dim:
            raise LearnerConfigError(f"{self.name} does not accept '{kind}' messages here")
        t = int(body["t"])
        if t > self.steps:
            self.early[src].append((t, body["z"]))    # a neighbour already at the next step
        else:
            self._receive(src, t, body["z"])

    def _receive(self, src: int, t: int, z: np.ndarray) -> None:
        if t != self.steps or src not in self.missing:
            self.latent_ignored += 1                  # stale or duplicate: not this step's
            return
        k, d = self.nb_slot[src], self.params.latent_dim
        self.store.data["z_nb"][self.store.t - 1, :, k * d:(k + 1) * d] = z
        self.missing.discard(src)

    def awaiting(self) -> frozenset[int]:
        return frozenset(self.missing)

    # -- Algorithm 1 -------------------------------------------------------------------------
    def predictor_ready(self) -> bool:
        return self.params.predict and len(self.buffers) == self.params.history

    def training_batch(self) -> dict[str, np.ndarray]:
        real = {k: self.store.flat(k).copy()
                for k in ("obs", "act", "reward", "next_obs", "z_nb")}
        self.buffers.append(real)
        tensors = [self._tensors(b) for b in self.buffers]
        self.model_scalars = {**self.fit_model(tensors), **self.fit_predictor(tensors[-1])}
        return batch_with_advantages(self.imagine(tensors[-1]), self.params.gamma,
                                     self.params.lam)

    def _action_input(self, act: Any) -> Any:
        """The model's action input: one-hot (Discrete) or the Gaussian sample clipped to
        [-1, 1], as the env received it (Box)."""
        if self.head.discrete:
            return self.torch.nn.functional.one_hot(act.long(), self.act_in).float()
        return act.clamp(-1.0, 1.0)

    def _tensors(self, b: dict[str, np.ndarray]) -> dict[str, Any]:
        torch = self.torch
        return {"obs": torch.as_tensor(b["obs"]),
                "a_in": self._action_input(torch.as_tensor(b["act"])),
                "r": torch.as_tensor(b["reward"], dtype=torch.float32),
                "next_obs": torch.as_tensor(b["next_obs"]), "z_nb": torch.as_tensor(b["z_nb"])}

    def _sample(self, b: dict[str, Any]) -> dict[str, Any]:
        idx = self.torch.as_tensor(self.rng.integers(0, len(b["obs"]), self.params.model_batch))
        return {k: v[idx] for k, v in b.items()}

    def fit_model(self, tensors: list[dict[str, Any]]) -> dict[str, float]:
        """Eq. 1: buffer j with latent function psi_{l - (#buffers) + j}; only psi_l learns."""
        torch, p, l = self.torch, self.params, self.params.history
        trans = rew = torch.zeros(())
        for _ in range(p.model_steps):
            trans = rew = torch.zeros(())
            for j, b in enumerate(tensors):
                enc, mb = l - len(tensors) + j, self._sample(b)
                with torch.set_grad_enabled(enc == l - 1):
                    z = self.model.latent(enc, mb["obs"], self.gen)
                t_loss, r_loss = self.model.model_loss(mb["obs"], mb["a_in"], z, mb["z_nb"],
                                                       mb["next_obs"], mb["r"])
                trans, rew = trans + t_loss, rew + r_loss
            self._step(self.opt_model, self.model, trans + rew)
            keepalive()
        n = len(tensors)
        return {"model_nll": trans.item() / n, "model_reward_mse": rew.item() / n}

    def fit_predictor(self, b: dict[str, Any]) -> dict[str, float]:
        """Eq. 2 on D^l: maximise log f_zeta(z^l | z^1..z^{l-1}), z^j ~ psi_j(o)."""
        if not self.predictor_ready():
            return {}
        torch, loss = self.torch, self.torch.zeros(())
        for _ in range(self.params.pred_steps):
            o = self._sample(b)["obs"]
            with torch.no_grad():
                zs = [self.model.latent(j, o, self.gen) for j in range(self.params.history)]
            loss = self.model.predictor_loss(torch.cat(zs[:-1], -1), zs[-1])
            self._step(self.opt_pred, self.model.predictor, loss)
            keepalive()
        return {"predictor_nll": loss.item()}

    def imagine(self, b: dict[str, Any]) -> RolloutStore:
        """Eq. 3: branched rollouts of the model from real observations of D^l."""
        torch, p = self.torch, self.params
        starts = np.arange(len(b["obs"])) if not p.branches else \
            self.rng.integers(0, len(b["obs"]), p.branches)
        o, z_nb = b["obs"][starts], b["z_nb"][starts]
        store = RolloutStore(p.branch_len, len(starts), OnPolicyLearner.rollout_fields(self))
        for t in range(p.branch_len):
            with torch.no_grad():
                dist = self.actor(o)
                a = self.head.sample(dist, self.gen)
                z = (self.model.predicted_latent(o, self.gen) if self.predictor_ready()
                     else self.model.latent(p.history - 1, o, self.gen))
            o2, r = self.model.step(o, self._action_input(a), z, z_nb, self.gen)
            store.add(obs=o.numpy(), act=a.numpy(), logp=self.head.log_prob(dist, a).numpy(),
                      dist=dist.numpy(), value=self.values(o.numpy()),
                      next_value=self.values(o2.numpy()), reward=r.numpy(),
                      terminated=np.zeros(len(starts), bool),
                      done=np.full(len(starts), t == p.branch_len - 1))
            o = o2
        return store

    # -- the policy update on the imagined batch ---------------------------------------------
    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        if self.params.base == "ippo":
            return ppo_clip_loss(logp, mb["logp"], mb["adv"], self.params.clip), {}
        return super().policy_loss(mb, dist, logp)

    def after_update(self, kl: float) -> dict[str, float]:
        out = super().after_update(kl) if self.params.base == "dpo" else {}
        self.model.shift()
        return {**out, **self.model_scalars, "latent_ignored": float(self.latent_ignored)}

    def state_dict(self) -> dict[str, np.ndarray]:
        n = self.nets
        return {**super().state_dict(), **n.module_arrays("model", self.model),
                **n.optimizer_arrays("opt_model", self.opt_model),
                **n.optimizer_arrays("opt_pred", self.opt_pred), "steps": np.array(self.steps)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        n = self.nets
        n.load_module_arrays("model", self.model, state)
        n.load_optimizer_arrays("opt_model", self.opt_model, state)
        n.load_optimizer_arrays("opt_pred", self.opt_pred, state)
        self.steps = int(state["steps"])
