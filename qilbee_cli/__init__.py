"""`qilbee-backup`: the command line, a thin shell above the flows and the engine (restic's cmd/, borg's
archiver/<cmd>_cmd.py): one module per command, holding its flags next to their mapping onto the
flow's parameters. Defaults and validation live once, in the flows' parameter types
(flows/parameters.py); the CLI passes only what the user gave, and validates it against the same
signature before any flow run exists."""
