"""``nps-collector``: serve, enrol and revoke boxes, show the admin token, purge old records,
migrate the data store."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any

from aiohttp import web

from protocol.limits import BOX_ID_PATTERN

from .app import SERVER_KWARGS, admin_token, create_app, issue_box_token
from .errors import CollectorError
from .logs import setup_logging
from .settings import Settings, environment_help, plain_help
from .storage import Storage, make_storage

#: How long a thread may hold the GIL while another waits for it (CPython's default is
#: 5 ms). The SQLite writer thread lets go of the GIL around every statement it runs; with
#: the event loop busy decoding uploads, getting it back waited up to 5 ms each time, a
#: dozen times a group commit, and the writer is the collector's narrowest point. At
#: 0.1 ms the same benchmark ingests about 20 % more (bench/README.md).
SERVE_SWITCH_INTERVAL_S = 0.0001


def _add_setting_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    for f in fields(Settings):
        flag = f.metadata.get("flag")
        if not flag or (only is not None and f.name not in only):
            continue
        kind = int if f.type in ("int", int) else str
        parser.add_argument(flag, dest=f.name, type=kind, default=None,
                            help=plain_help(f"{f.metadata['help']} (default: {f.default})"))


def build_parser() -> argparse.ArgumentParser:
    """The command line, its flags generated from :class:`Settings`."""
    parser = argparse.ArgumentParser(prog="nps-collector", description=plain_help(__doc__ or ""))
    sub = parser.add_subparsers(dest="command", required=True)
    # The epilog keeps its line breaks: one environment variable a line.
    serve = sub.add_parser("serve", help="run the collector", epilog=environment_help(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_setting_flags(serve)
    p = sub.add_parser(
        "migrate",
        help="bring the data store's schema to this version's, printing progress (serve does "
             "the same at start where that is safe; a database newer than this version is "
             "refused)")
    _add_setting_flags(p, only=("db",))
    for name, helptext in (
        ("box-token", "print a new upload token for BOX_ID"),
        ("box-revoke", "revoke every token issued so far to BOX_ID"),
        ("delete-box", "delete every record and token of BOX_ID"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("box_id", metavar="BOX_ID")
        _add_setting_flags(p, only=("db",))
    p = sub.add_parser("admin-token", help="print the admin token kept in the data store")
    p.add_argument("--create", action="store_true",
                   help="where none is kept yet, make one and keep it (serve does the same "
                        "on its first start); without it, none kept is an error")
    _add_setting_flags(p, only=("db",))
    p = sub.add_parser("purge", help="delete the records older than N days")
    p.add_argument("--older-than-days", dest="older_than_days", type=int, required=True,
                   metavar="N", help="sessions started and surveys shown more than N days ago")
    _add_setting_flags(p, only=("db",))
    p = sub.add_parser(
        "rebuild-aggregates",
        help="recompute the report's aggregates from the stored records (after a restore, "
             "or a manual change to the tables)",
    )
    _add_setting_flags(p, only=("db",))
    return parser


async def _with_store(settings: Settings, action: Callable[[Storage], Awaitable[Any]]) -> Any:
    store = make_storage(settings)
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


def _check_box_id(box_id: str) -> None:
    if not re.fullmatch(BOX_ID_PATTERN, box_id):
        raise CollectorError(f"BOX_ID: {box_id!r} must be 1 to 64 of A-Z a-z 0-9 . _ : -")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nps-collector`` console script."""
    args = build_parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    try:
        settings = Settings.from_env(**overrides)
        if args.command == "serve":
            setup_logging(settings.log_level)
            sys.setswitchinterval(SERVE_SWITCH_INTERVAL_S)
            web.run_app(create_app(settings), host=settings.host, port=settings.port,
                        print=lambda msg: print(msg, flush=True), access_log=None,
                        **SERVER_KWARGS)
            return 0
        if args.command == "migrate":
            _migrate(settings)
            return 0
        if args.command == "box-token":
            _check_box_id(args.box_id)
            token = asyncio.run(_with_store(settings, lambda s: issue_box_token(s, args.box_id)))
            print(token)
            return 0
        if args.command == "box-revoke":
            _check_box_id(args.box_id)
            n = asyncio.run(_with_store(settings, lambda s: s.revoke_box(args.box_id)))
            print(f"revoked {n} token(s) of {args.box_id}", file=sys.stderr)
            return 0
        if args.command == "delete-box":
            _check_box_id(args.box_id)
            n = asyncio.run(_with_store(settings, lambda s: s.delete_box(args.box_id)))
            print(f"deleted {n} record(s) and every token of {args.box_id}", file=sys.stderr)
            return 0
        if args.command == "purge":
            if args.older_than_days < 0:
                raise CollectorError("--older-than-days: must be 0 or more")
            from .dashboard import purge_older_than

            n = asyncio.run(_with_store(
                settings, lambda s: purge_older_than(s, args.older_than_days)))
            print(f"purged {n} record(s) older than {args.older_than_days} day(s)", file=sys.stderr)
            return 0
        if args.command == "admin-token":
            print(asyncio.run(_with_store(settings, _kept_admin_token(settings, args.create))))
            return 0
        if args.command == "rebuild-aggregates":
            asyncio.run(_with_store(settings, lambda s: s.rebuild_aggregates()))
            print("aggregates rebuilt from the stored records", file=sys.stderr)
            return 0
    except CollectorError as exc:
        print(f"nps-collector: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover


def _migrate(settings: Settings) -> None:
    from .storage.migrations import LATEST, migrate_url

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    done = asyncio.run(migrate_url(settings.db, progress=say))
    if done.found is None:
        say(f"made a new data store at schema version {done.now}")
    elif done.applied:
        say(f"migrated the data store from schema version {done.found} to {done.now}")
    else:
        say(f"the data store is at schema version {LATEST} already: nothing to do")


def _kept_admin_token(settings: Settings, create: bool) -> Callable[[Storage], Awaitable[str]]:
    """The token ``admin-token`` prints: never a new one unless asked (``--create``)."""
    async def get(store: Storage) -> str:
        if settings.admin_token:
            print("nps-collector: NPS_ADMIN_TOKEN is set: printing it (the collector uses it "
                  "instead of the one kept in the data store)", file=sys.stderr)
            return settings.admin_token
        kept = await store.get_meta("admin_token")
        if kept is not None:
            return kept
        if not create:
            raise CollectorError(
                f"no admin token is kept in the data store at {store.location} yet: "
                "`nps-collector serve` makes one on its first start, or run "
                f"`nps-collector admin-token --create --db {settings.db}`")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # admin_token() prints where it is
            kept = await admin_token(store, settings)
        print(f"nps-collector: made a new admin token, kept in the data store at "
              f"{store.location}", file=sys.stderr)
        return kept

    return get


if __name__ == "__main__":
    sys.exit(main())
