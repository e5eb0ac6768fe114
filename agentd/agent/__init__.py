"""The agent role: the agent process, its socket-free core (the one agent loop) and recovery."""
