"""Evaluation: rules, thresholds, maintenance and forecasts turn values into decisions."""
