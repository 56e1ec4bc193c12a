from builder.cli import entry

entry()
