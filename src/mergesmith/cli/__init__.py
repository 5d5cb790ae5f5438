"""The `mergesmith` command line: one module per subcommand."""
