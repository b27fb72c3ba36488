"""`bearwatch` subcommands, one module per part; each has register(app)."""
