"""What /metrics serves: the collector's own instruments and the fleet's exposition."""
