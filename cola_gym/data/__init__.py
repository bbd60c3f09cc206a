"""Data sets for the tasks, read by path (argument or environment variable) or from the Hub."""
