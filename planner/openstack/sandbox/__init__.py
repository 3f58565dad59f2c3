"""A local compute cloud built from the real `nova` and `openstack-placement` packages.

`manager` (the client side: up, down, status, ctl) never imports nova; `server` and `driver` run
in the sandbox's own process, because Nova's test harness patches process-wide state (pitfall 4).
"""
