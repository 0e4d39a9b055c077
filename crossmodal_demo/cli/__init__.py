"""The command line, ``python -m crossmodal_demo``: ``main`` (parser and dispatch; all printing lives in
this package) and one module per subcommand."""
