"""The on-policy family's one core: every on-policy learner is built from it.

Composition, not a class tree:

* ``rollout``   — ``RolloutStore`` (T joint steps x K env copies, aligned with the joint step),
                  ``gae`` (GAE(gamma, lambda), bootstrapping on truncation, not on termination),
                  ``RunningNorm`` (value targets), minibatch indices. numpy only.
* ``policy``    — torch networks: orthogonally initialised MLPs, the categorical (Discrete) and
                  Gaussian (Box) policy heads, the value net, observation encoding.
* ``losses``    — the loss terms, each a plain function: PPO's clipped surrogate, the (clipped)
                  value loss, DPO's penalised surrogate, the KL estimates.
* ``learner``   — ``OnPolicyLearner``: act / observe / update for the agent loop; collects a
                  rollout, computes advantages, runs minibatch epochs on ``policy_loss`` and
                  the value loss, clips gradient norms, checkpoints networks and optimisers.

An algorithm subclasses ``OnPolicyLearner`` and overrides ``policy_loss`` (IPPO, DPO), and
where its training data comes from, ``training_batch`` (MDPO's model rollouts).
Only the learner modules import torch, and only when an agent builds one.
"""
