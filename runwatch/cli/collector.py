"""`runwatch collector`: run the collector with a config file, or manage its agent tokens."""

from __future__ import annotations

import argparse
from typing import Any

from runwatch.cli.common import EXIT_OK, add_command, add_config_option, log
from runwatch.cli.tokens import add_token_commands, cmd_token


def cmd_collector(args: argparse.Namespace) -> int:
    """Run the collector with a config file. `runwatch collector token ...` manages agent tokens."""
    if args.action == "token":
        return cmd_token(args)
    from collector.app import CollectorService
    from collector.config import load_collector_config
    from collector.server import bind, serve, url_of
    from runwatch.datadir import prepare_data_dir

    config = load_collector_config(args.config)
    prepare_data_dir(config)
    sock = bind(*config.listen_address)
    service = CollectorService(config)
    log.info(
        "collector listening on %s with %d rules; data in %s",
        url_of(sock, config.tls is not None),
        len(config.rules),
        config.data_dir,
    )
    serve(service, sock)
    return EXIT_OK


def register(sub: Any) -> None:
    collector = add_command(
        sub, "collector", cmd_collector, "run the collector, or manage agent tokens"
    )
    add_config_option(collector, "collector")
    actions = collector.add_subparsers(dest="action", metavar="ACTION")
    add_token_commands(actions.add_parser("token", help="add, list or revoke agent tokens"))
    collector.set_defaults(action=None)
