"""The pure domain: models, engine, selectors, routing, retry, ports. Imports only the
standard library, pydantic and PyYAML (an import-linter contract in CI keeps it so)."""
