"""The HTTP API: the agents' door, the read side, admin routes and the console."""
