"""Additions any learner of a family can take: consensus, deep policy reciprocity, turn schedules."""
