"""``govtrust client`` and ``govtrust keys``: department apps and token signing keys.

A client secret is printed once, when made; only its keyed hash is stored.
"""

from __future__ import annotations

from typing import Any

import click

from idp.errors import IdPError
from idp.oidc.clients import build_client
from idp.runtime.services import Services


def _emit(services: Services, data: object, text: str) -> None:
    from idp.runtime.output import emit

    emit(services, data, text)


@click.group()
def client() -> None:
    """Department applications (OAuth 2.0 / OpenID Connect clients)."""


@client.command("add")
@click.option("--name", required=True, help="Display name, e.g. 预算管理系统.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="Exact redirect URI (repeatable).")
@click.option("--level", type=click.IntRange(1, 4), required=True,
              help="Protection level (等保) 1-4.")
@click.option("--public", is_flag=True, help="A public client (PKCE, no secret).")
@click.option("--first-party", is_flag=True, help="Skip the consent page.")
@click.option("--info-class", type=click.Choice(["public", "shared", "restricted"]),
              default="public", show_default=True)
@click.option("--department", "departments", multiple=True,
              help="Allowed department (shared apps; repeatable).")
@click.option("--group", "allowed_group", default=None, help="Required group (restricted apps).")
@click.option("--backchannel-logout-uri", default=None)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--auth-method", type=click.Choice(["client_secret_basic", "client_secret_post",
                                                 "private_key_jwt"]),
              default="client_secret_basic", show_default=True)
@click.option("--jwks", "jwks_file", type=click.File("r", encoding="utf-8"), default=None,
              help="The app's public JWKS (for private_key_jwt).")
@click.option("--id-token-alg", type=click.Choice(["ES256", "RS256"]), default="ES256",
              show_default=True)
@click.pass_obj
def client_add(services: Services, name: str, redirect_uris: tuple[str, ...], level: int,
               public: bool, first_party: bool, info_class: str, departments: tuple[str, ...],
               allowed_group: str | None, backchannel_logout_uri: str | None,
               post_logout: tuple[str, ...], auth_method: str, jwks_file: Any,
               id_token_alg: str) -> None:
    """Register an app; prints its client_id and (once) its secret."""
    try:
        new = build_client(name=name, redirect_uris=redirect_uris, level=level, public=public,
                           first_party=first_party, info_class=info_class,
                           allowed_departments=departments, allowed_group=allowed_group,
                           backchannel_logout_uri=backchannel_logout_uri,
                           post_logout_redirect_uris=post_logout, auth_method=auth_method,
                           id_token_alg=id_token_alg,
                           jwks=jwks_file.read() if jwks_file is not None else None)
        stored, secret = services.provider.clients.add(new)
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None
    data = {**stored.to_public_dict(), "client_secret": secret}
    text = f"client_id: {stored.client_id}"
    if secret:
        text += f"\nclient_secret: {secret}\n(shown once: store it now)"
    _emit(services, data, text)


@client.command("list")
@click.pass_obj
def client_list(services: Services) -> None:
    """List registered apps."""
    clients = services.provider.clients.list()
    _emit(services, [c.to_public_dict() for c in clients],
          "\n".join(f"{c.client_id}  L{c.level}  {'public' if c.public else 'confidential'}"
                    f"  {c.name}" for c in clients) or "(no clients)")


@client.command("remove")
@click.argument("client_id")
@click.pass_obj
def client_remove(services: Services, client_id: str) -> None:
    """Remove an app."""
    try:
        services.provider.clients.remove(client_id)
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(services, {"removed": client_id}, f"removed {client_id}")


@client.command("rotate-secret")
@click.argument("client_id")
@click.pass_obj
def client_rotate_secret(services: Services, client_id: str) -> None:
    """Replace an app's secret; prints the new one once."""
    try:
        secret = services.provider.clients.rotate_secret(client_id)
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(services, {"client_id": client_id, "client_secret": secret},
          f"client_secret: {secret}\n(shown once: store it now)")


@click.group()
def keys() -> None:
    """Token signing keys (published at /jwks)."""


@keys.command("rotate")
@click.pass_obj
def keys_rotate(services: Services) -> None:
    """Promote the published next key, retire the current one, publish a new next key."""
    made = services.provider.keys.rotate()
    _emit(services, [{"kid": k.kid, "alg": k.alg, "state": k.state} for k in made],
          "\n".join(f"published next {k.alg} key {k.kid}" for k in made))


@keys.command("list")
@click.pass_obj
def keys_list(services: Services) -> None:
    """List signing keys and their state (next, active, retired)."""
    infos = services.provider.keys.list()
    _emit(services, [{"kid": k.kid, "alg": k.alg, "state": k.state,
                      "created_at": k.created_at.isoformat()} for k in infos],
          "\n".join(f"{k.state:8} {k.alg} {k.kid}" for k in infos))
