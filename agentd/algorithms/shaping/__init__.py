"""The opponent-shaping family on the iterated prisoner's dilemma (seed 004, DESIGN §5.5):
naive-pg, lola, meta-pg and meta-mapg, sharing one core (``core``) and one game (``game``)."""
