"""Example flows and handlers, used by `flowmonkey demo` and the README."""
