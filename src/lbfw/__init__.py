"""lbfw: audit and fix firewall rulesets that treat loopback as 127.0.0.1 alone."""

__version__ = "0.1.0"
