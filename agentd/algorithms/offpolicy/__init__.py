"""The off-policy deep family: dac-deep, isac, maddpg and the deep Q learners, on one replay buffer."""
