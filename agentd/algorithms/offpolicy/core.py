"""``OffPolicyLearner``: what every off-policy deep learner shares (iql-deep and its family,
isac, dac-deep, maddpg), as ``OnPolicyLearner`` is for the on-policy family.

    __init__   check the spaces, pick the observation encoder from the space
               (``nets.obs_encoder``: an MLP reads vectors, a small CNN images), seed torch,
               ``build_networks()``, and one ``ReplayBuffer`` of ``buffer_fields()``
    observe    store ``entry(...)`` in the buffer, count the joint step, ``stored(positions)``
    update     the algorithm's (``ready()`` says when the buffer holds enough)
    checkpoint ``modules()`` and ``optimisers()`` as arrays, the buffer with its sampling
               generator, the step count, the numpy and torch generators: a learner loaded
               from its ``state_dict`` goes on exactly as the one saved

Each algorithm's module holds its networks, what one buffer entry is and its update.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec
from agentd.algorithms.offpolicy.buffer import Fields, ReplayBuffer, rng_state, set_rng_state


class OffPolicyLearner(Learner):
    """A private replay buffer, networks trained on uniform minibatches from it."""

    needs_torch = True
    takes_images: ClassVar[bool] = True     # its networks can sit behind the CNN torso

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        import torch

        from agentd.algorithms import nets

        self.torch, self.nets, p = torch, nets, self.params
        self.check_spaces(spec)
        self.encoder = nets.obs_encoder(spec.obs_spaces[0], self.name, p.hidden, self.takes_images)
        self.gen = nets.setup_torch(spec.seed, p.threads)
        self.build_networks()
        self.buf = ReplayBuffer(p.buffer, self.buffer_fields(), self.rng)
        self.k = spec.num_envs
        self.steps = 0                  # joint steps observed (the global step)

    # -- what a learner on this core says -------------------------------------------------
    def check_spaces(self, spec: LearnerSpec) -> None:
        """Raise LearnerConfigError for spaces the algorithm cannot handle."""
        if len(spec.controls) != 1:
            raise LearnerConfigError(f"{self.name} controls exactly one env agent")

    def build_networks(self) -> None:
        """The networks and their optimisers (torch is seeded just before)."""
        raise NotImplementedError

    def buffer_fields(self) -> Fields:
        """One buffer entry: field -> (shape, dtype)."""
        raise NotImplementedError

    def entry(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
              next_obs: np.ndarray, terminated: np.ndarray) -> dict[str, np.ndarray]:
        """The K buffer entries of one joint step, field by field."""
        raise NotImplementedError

    def stored(self, pos: np.ndarray) -> None:
        """Called after a step's entries went to positions ``pos``."""

    def modules(self) -> dict[str, Any]:
        """The networks a checkpoint holds, by name."""
        return {}

    def optimisers(self) -> dict[str, Any]:
        return {}

    # -- the agent loop's hooks -----------------------------------------------------------
    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        # truncation bootstraps: a time limit is not the end of the MDP
        pos = self.buf.add(**self.entry(obs, action, reward, next_obs, terminated))
        self.steps += 1
        self.stored(pos)

    def ready(self) -> bool:
        """The buffer holds ``start`` entries: updates may begin."""
        return self.buf.size >= self.params.start

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """The entries at ``idx`` as tensors, field by field."""
        return {name: self.torch.as_tensor(v) for name, v in self.buf.get(idx).items()}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        nets, out = self.nets, {}
        for name, module in self.modules().items():
            out.update(nets.module_arrays(name, module))
        for name, opt in self.optimisers().items():
            out.update(nets.optimizer_arrays(name, opt))
        return {**out, **self.buf.state_dict(), "steps": np.array(self.steps),
                "rng": rng_state(self.rng), "gen": self.gen.get_state().numpy().copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        nets = self.nets
        for name, module in self.modules().items():
            nets.load_module_arrays(name, module, state)
        for name, opt in self.optimisers().items():
            nets.load_optimizer_arrays(name, opt, state)
        self.buf.load_state_dict(state)
        self.steps = int(state["steps"])
        set_rng_state(self.rng, state["rng"])
        self.gen.set_state(self.torch.as_tensor(np.asarray(state["gen"], np.uint8)))
