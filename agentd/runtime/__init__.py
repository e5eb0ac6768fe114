"""What every runtime process shares: the transport and its layers, sockets, the local env plane, message logs, counters, keys, the control plane and run files. The only package that imports zmq."""
