"""Entry points (the Hydra app `asymptote-train`, the `asymptote` CLI), sweep launchers, sweep
records, plan and status. Registration with Hydra is the explicit call `register.register_all()`."""
