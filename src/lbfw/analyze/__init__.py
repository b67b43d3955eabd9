"""Pure analysis: a Ruleset and a Flow in, a FlowResult out (no I/O, no kernel).

- ``engine``: `Engine(ruleset).evaluate(flow)` follows a loopback flow's packets (request,
  reply, the client's next packet and, for TCP, the server's answer) through every hook the
  way the kernel does; `walk_packet` does the same for one packet (anti-spoofing checks).
- ``matchers``: model matches compiled into three-valued predicates (True/False/None).
- ``flows``: the audit's default flow set, PLAN.toml and `--to ADDR:PORT/proto`.

tests/kernel/test_oracle*.py prove the engine against real traffic in private namespaces.
"""
