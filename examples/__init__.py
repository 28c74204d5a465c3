"""Example model definitions (importable as `examples.<module>:<factory>` from the repository root)."""
