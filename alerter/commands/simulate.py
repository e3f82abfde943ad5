"""`alerter simulate`: the exchange simulator standalone. Its options (--scenario FILE|demo,
--port N, --speed X, --auto-accounts, --help) are the simulator's own: cli.py passes the
arguments it does not know through as `args.simulator_args`."""

from __future__ import annotations

HELP = "run the exchange simulator standalone and print the config snippet that points an account at it"
ADD_HELP = False  # --help is the simulator's


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from alerter.simulator import main_simulate

    return main_simulate(args.simulator_args)
