"""Pure analysis: a Ruleset and a Flow in, a FlowResult out (no I/O, no kernel).

- ``engine``: `Engine(ruleset).evaluate(flow)` follows a loopback flow's packets (request,
  reply, the client's next packet and, for TCP, the server's answer) through every hook the
  way the kernel does; `walk_packet` does the same for one packet (anti-spoofing checks).
- ``hooks``: which base chains run on each hook, in which order, with the conntrack and nat points.
- ``compile``: rules compiled lazily into predicates, the per-chain index of exact keys, the match cache.
- ``matchers``: one model match compiled into a three-valued predicate (True/False/None).
- ``state``: the packet, conntrack entry and run a walk carries.
- ``flows``: the audit's default flow set, PLAN.toml and `--to ADDR:PORT/proto`.

tests/kernel/test_oracle*.py prove the engine against real traffic in private namespaces.
"""
