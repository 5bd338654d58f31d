"""Deploy agents over SSH from an inventory: `runwatch deploy install|upgrade|status|remove`.

inventory (who, with what settings) -> bundle (wheels, built once) -> ssh (verified hosts)
-> actions (one host's install, upgrade, rollback, status or remove, undone on failure)
-> runner (many hosts at once, live progress, the final table).
"""
