"""labvm: a Jupyter server on a cloud VM, reached through an SSH tunnel, in one command."""
