"""The harness: configs, runs (the training loop, its hooks and the stages of a method),
evaluation, records and the store, cost, suites and their launchers. Above the core, the
methods and the datasets; below the reports and the command line."""
