"""Renderers: findings, flows and reports as text, JSON and SARIF strings. Pure: no I/O."""
