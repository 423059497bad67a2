"""`userdir token create|list|revoke`: provisioning tokens for identity providers (SCIM)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TextIO

from app.config import Config
from app.runtime import Runtime
from app.service.tokens import SCOPES, ProvisioningTokens

HELP = """A provisioning token lets an identity provider (Okta, Entra ID, authentik...)
call /scim/v2 as an admin would, for as long as it is not revoked. It is shown
once, when created; the directory keeps only its SHA-256 (ou=tokens)."""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = commands.add_parser("token", help="create, list or revoke provisioning tokens",
                                description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token and print it (once)")
    create.add_argument("--name", required=True, help="what it is for, e.g. okta")
    create.add_argument("--scope", action="append", choices=SCOPES, required=True,
                        help="what it may be used for (repeatable)")
    create.add_argument("--description", help="a note shown in lists")
    actions.add_parser("list", help="list the tokens (never the tokens themselves)")
    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("--name", required=True)


def run(config: Config, args: argparse.Namespace, out: TextIO | None = None,
        build: Callable[[Config], Runtime] = Runtime.build) -> int:
    """One token command against the configured directory (slapd must be running)."""
    runtime = build(config)
    try:
        tokens = ProvisioningTokens.beside(runtime.service)
        return asyncio.run(_run(tokens, args, out))
    finally:
        runtime.close()


async def _run(tokens: ProvisioningTokens, args: argparse.Namespace, out: TextIO | None) -> int:
    if args.action == "create":
        info, secret = await tokens.create_token(args.name, args.scope, args.description)
        print(f"token {info.name!r} (scopes: {', '.join(info.scopes)}) created; it is shown "
              f"this once:\n\n  {secret}\n", file=out)
    elif args.action == "list":
        for info in await tokens.list_tokens():
            used = info.last_used.isoformat() if info.last_used else "never"
            created = info.created.isoformat() if info.created else "-"
            print(f"{info.name}\tscopes={','.join(info.scopes)}\tcreated={created}"
                  f"\tlast_used={used}", file=out)
    else:
        await tokens.revoke_token(args.name)
        print(f"token {args.name!r} revoked", file=out)
    return 0
