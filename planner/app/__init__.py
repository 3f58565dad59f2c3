"""Use cases: plain functions the CLI, the demo, the notebooks and the tests call."""
