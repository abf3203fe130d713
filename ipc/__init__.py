"""The light side of rcmd: protocol, client and CLI. Imports nothing heavy."""

__version__ = "0.1.0"
