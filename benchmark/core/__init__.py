"""The core every part of mlr-bench imports: errors, the registry, declared options, atomic
writes, safe reading, progress lines, seeding, the distributed primitives, distances and image
tensors. It imports nothing else of the project (an import-linter contract holds it so)."""
