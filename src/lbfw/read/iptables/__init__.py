"""The iptables-save / ip6tables-save reader (files and the live `*-save` output).

``parse`` (parser.py) is the entry point. The modules, one job each: options.py (the option
and module tables), values.py (numbers, addresses, ports, marks as iptables reads them),
fast.py (fast constructors of model objects), deferred.py (lines checked now and built on
demand: ``DeferredRules``, the model's ``LazyRules``), tail.py (the option loop of a rule),
matches.py (option -> Match), targets.py (`-j TARGET` -> Action), parser.py (the line loop),
state.py (the parser state those parts share, declared once).
"""

from .options import BUILTIN_CHAINS
from .parser import parse
from .values import split_quoted

__all__ = ["parse", "split_quoted", "BUILTIN_CHAINS"]
