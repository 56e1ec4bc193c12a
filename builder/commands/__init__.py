"""One module per `pybuild` subcommand: `configure(parser)` and `run(args) -> int`."""
