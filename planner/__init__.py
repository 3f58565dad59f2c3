"""rollwave's domain core (inventory, capacity, policy, plan, checker), the OpenStack
adapter and the CLI.

Core modules (importable by `solver` and `sim`): errors, inventory, policy, plan, formats (with
documents and reader), capacity, rules (the rule families), checker, bounds, generate.
Everything else in this package (cli, openstack, ...) sits above them.
"""

__version__ = "0.1.0"
