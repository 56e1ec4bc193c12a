"""The build operations: one module per kind of step, each holding its cache key and its execution."""
