"""The nftables readers: nft ruleset files, nft JSON documents and the live host's nft tables.

One job per module, in the order data flows:

- ``files``: an nft ruleset file (or its text) loaded with the real libnftables in a throwaway
  network namespace (``loader`` runs inside it) and listed back as JSON;
- ``lines``: where each rule of the file is written (path and line, following includes);
- ``tables``: the JSON document -> model tables, chains, named sets and rules;
- ``stmts``: JSON statements -> the rule's matches, verdict or other action;
- ``exprs``: JSON match expressions -> model Matches (including ``tcp.flags`` and ``fib.rpf``);
- ``values``: JSON values -> model values (addresses, ports, names, sets);
- ``render``: JSON -> readable nft text, for opaque matches and rules read without source text.
"""
