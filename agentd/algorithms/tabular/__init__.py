"""Tabular learners: the Q family (iql, ma2ql, i2q, pr), dac, central-q and random."""
