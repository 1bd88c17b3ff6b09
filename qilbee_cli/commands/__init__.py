"""One module per command: NAME, HELP, add_arguments(parser) and run(args)."""
