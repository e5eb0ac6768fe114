"""The opponent-shaping family on the iterated prisoner's dilemma (Foerster et al. 2018; Kim et al. 2021):
naive-pg, lola, meta-pg and meta-mapg, sharing one core (``core``) and one game (``game``)."""
