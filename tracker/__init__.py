"""The clinical core: protocol settings, projections, status, commands and the CLI."""
