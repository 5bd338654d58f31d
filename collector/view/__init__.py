"""The in-memory view of the fleet, and the protocol that keeps replicas' views current."""
