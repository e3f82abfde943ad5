"""`alerter check`: poll every account once and print its health; the worst level is the exit
code. The polling and evaluating is alerter.check's; this prints it."""

from __future__ import annotations

from alerter.commands import add_config

HELP = "poll every account once and print its health; exit 0 ok, 1 warning, 2 call/critical, 3 blind/error"
CHECK_EXIT = {"ok": 0, "warning": 1, "call": 2, "critical": 2, "blind": 3}


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--notify", action="store_true", help="also record and send what the policy decides (uses the database)")


def run(args) -> int:
    import asyncio
    import json

    from alerter.check import check_accounts, worst

    rows = asyncio.run(check_accounts(args.config, notify=args.notify))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        render_table(rows)
    return CHECK_EXIT[worst(rows)]


def render_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from alerter.codec import from_json_float
    from alerter.display import money, move, ratio, scope_label

    style = {"ok": "green", "warning": "yellow", "call": "bold red", "critical": "bold white on red", "blind": "bold magenta"}
    table = Table(title="margin health")
    for column in ("account", "scope", "ratio", "level", "deposit to target", "liquidation at"):
        table.add_column(column, justify="right" if column in ("ratio", "deposit to target", "liquidation at") else "left")
    for r in rows:
        level = f"[{style[r['level']]}]{r['level']}[/]"
        if r["level"] == "blind":
            table.add_row(r["account"], scope_label(r["scope"]) or "account", "—", level, "—", r["error"][:60])
            continue
        table.add_row(
            r["account"],
            scope_label(r["scope"]) or "account",
            ("≈ " if r.get("approximate") else "") + ratio(from_json_float(r["margin_ratio"])),
            level,
            money(r["deposit_needed"], r["currency"]) if r["deposit_needed"] > 0 else "—",
            move(r["liquidation_move"]),
        )
    console = Console()
    console.print(table)
    if any(r.get("approximate") for r in rows):
        console.print('≈ approximate: profile = "generic", read from ccxt\'s unified fields, not the exchange\'s own figures')
    for r in rows:  # the table cuts the reason; a blind account's full reason, one line each
        if r["level"] == "blind":
            where = r["account"] + (f" · {scope_label(r['scope'])}" if scope_label(r["scope"]) else "")
            console.print(f"{where}: {r['error']}", markup=False, highlight=False, soft_wrap=True)
