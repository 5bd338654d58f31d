"""Services that users recognise ("e-mail", "payroll", "the web shop"), made of hosts and rules.

- `config`: the `services:` section of the collector config and its checks at load;
- `model`: the services compiled for evaluation (components numbered, dependencies ordered);
- `state`: pure functions from member health to a service's state;
- `watch`: the stage that evaluates every service once per evaluation tick, from the view.

This package imports nothing of the collector at its top (collector/config.py imports `config`).
"""
