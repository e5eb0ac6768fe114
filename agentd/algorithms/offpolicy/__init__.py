"""The off-policy family's one core: iql-deep (and ma2ql-deep, i2q-deep), isac,
dac-deep and maddpg are built from it.

* ``buffer``  — ``ReplayBuffer``: a ring of named fields, uniform seeded sampling, its state as
                named arrays; the PCG64 state codec checkpoints share. numpy only.
* ``core``    — ``OffPolicyLearner``: the encoder from the observation space
                (``agentd.algorithms.nets.obs_encoder``, shared with the on-policy core), torch
                seeding, one buffer, observe, checkpoints of networks, optimisers, buffer, RNGs.
* ``iql_deep`` / ``i2q_deep`` — double DQN and I2Q's ideal-next-state target.
* ``isac``    — independent soft actor-critic (with the deep PR plug-in when asked).
* ``dac_deep`` — isac plus the log-ratio consensus and its importance weights.
* ``maddpg``  — the centralised baseline on joint buffer entries.

An algorithm says what one buffer entry is (``buffer_fields``, ``entry``), builds its networks
and writes its update; only the learner modules import torch, and only when an agent builds one.
"""
