"""lbfw: audit and fix firewall rulesets that treat loopback as 127.0.0.1 alone."""

__version__ = "0.1.0"

# Where the project and its docs are published: SARIF's informationUri and each rule's helpUri
# (docs/checks.md) are built from it. The one place to change when the home moves.
PROJECT_URL = "https://github.com/lbfw/lbfw"
