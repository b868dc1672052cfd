"""mlr-bench harness: CLI, config profiles, runner, metrics, results store."""

__version__ = "0.1.0"
