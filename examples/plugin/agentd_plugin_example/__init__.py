"""An agentd plug-in package: the ``gossip-q`` learner and the ``beacon`` env.

Installed (``pip install examples/plugin``), it adds ``--algo gossip-q`` and ``--env beacon``
through the entry points in its pyproject.toml; without installing,
``--algo agentd_plugin_example.learner:GossipQ`` names the learner by module and class.
"""
