"""Communication graphs and the consensus mixing matrices built on them."""

from topologies.graphs import TOPOLOGIES, Graph, TopologyError, build
from topologies.mixing import (
    MIXING_METHODS,
    check_mixing,
    kernel_weights,
    metropolis_weights,
    mixing_matrix,
    spectral_gap,
)

__all__ = [
    "MIXING_METHODS",
    "TOPOLOGIES",
    "Graph",
    "TopologyError",
    "build",
    "check_mixing",
    "kernel_weights",
    "metropolis_weights",
    "mixing_matrix",
    "spectral_gap",
]
