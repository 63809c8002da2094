"""Subcommands of the ``glfer-edge`` CLI (see glfer_edge.cli)."""
