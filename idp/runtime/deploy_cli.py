"""``govtrust deploy``: files a deployment needs, written from the home.

``deploy nginx`` writes the nginx configuration (``idp.runtime.nginx``) for the
nodes named on the command line, issuing nginx's server certificate from our CA
when missing, and, with nginx's njs module, the script that answers ``POST
/ocsp`` from the pre-signed files (in the run folder); ``deploy public`` writes
the PKI's public files nginx serves (``pki.public_files``) now, instead of at the
next round of background duties.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import click

from idp.runtime.nginx import (
    NJS_MODULE,
    NginxConfigError,
    NginxSettings,
    Upstream,
    ocsp_post_js,
    render,
)
from idp.runtime.output import emit
from idp.runtime.services import Services


@click.group()
def deploy() -> None:
    """Deployment files: the nginx front, the PKI's public files."""


def _require_home(services: Services) -> None:
    if not services.config.initialized:
        raise click.ClickException(
            f"{services.config.home} is not a GovTrust home: run `govtrust init` first")


@deploy.command("nginx")
@click.option("--node", "nodes", multiple=True, required=True, metavar="HOST:PORT",
              help="A node (`govtrust node --listen HOST:PORT`); repeat for each.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (default: stdout).")
@click.option("--idp-listen", default=None, help="TLS HOST:PORT (default [idp] listen).")
@click.option("--pki-listen", default=None, help="HTTP HOST:PORT (default [pki] listen).")
@click.option("--snippet", is_flag=True,
              help="Only the http-context part, for /etc/nginx/conf.d/ (default: a whole "
                   "nginx.conf for `nginx -c`).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="pid, logs and temporary files of a whole nginx.conf (default home/nginx).")
@click.option("--user", default=None, help="`user` directive of a whole nginx.conf.")
@click.option("--proxy-address", default=None,
              help="The address nginx connects to the nodes from (needed when a node is "
                   "not on loopback); it must be in [idp] trusted_proxies.")
@click.option("--ocsp-post/--no-ocsp-post", default=None,
              help="Answer POST /ocsp from the pre-signed files too (nginx's njs module; "
                   "default: when libnginx-mod-http-js is installed).")
@click.pass_obj
def deploy_nginx(services: Services, nodes: tuple[str, ...], out: Path | None,
                 idp_listen: str | None, pki_listen: str | None, snippet: bool,
                 run_dir: Path | None, user: str | None, proxy_address: str | None,
                 ocsp_post: bool | None) -> None:
    """Write nginx's configuration: TLS for the IdP, static PKI files, the nodes."""
    _require_home(services)
    config = services.config
    try:
        upstreams = tuple(Upstream.parse(n) for n in nodes)
    except NginxConfigError as exc:
        raise click.ClickException(str(exc)) from None
    source = _proxy_source(upstreams, proxy_address)
    # The IdP believes the forwarded certificate and client address only from a
    # trusted proxy: without this, certificate login through nginx fails quietly.
    if not config.trusted_proxies.trusts(source):
        raise click.ClickException(
            f"nginx reaches the nodes from {source}, which is not in [idp] trusted_proxies "
            f"(now {list(config.get('idp', 'trusted_proxies'))}): add it, or the IdP will "
            "ignore the forwarded client certificate and address")
    cert, key, bundle = services.tls_server_files()
    services.export_public_files()
    run = (run_dir or config.home / "nginx").resolve()
    if not snippet:
        for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run / sub).mkdir(parents=True, exist_ok=True)
    if ocsp_post and not NJS_MODULE.is_file():
        raise click.ClickException(f"--ocsp-post needs nginx's njs module ({NJS_MODULE}): "
                                   "apt-get install libnginx-mod-http-js")
    script = None
    if ocsp_post or (ocsp_post is None and NJS_MODULE.is_file()):
        script = run / "govtrust_ocsp.js"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(ocsp_post_js(services.public_folder.resolve()), encoding="utf-8")
    try:
        settings = NginxSettings(
            nodes=upstreams,
            idp_listen=idp_listen or str(config.get("idp", "listen")),
            pki_listen=pki_listen or str(config.get("pki", "listen")),
            server_name=urlsplit(str(config.get("idp", "issuer"))).hostname or "_",
            certificate=cert, certificate_key=key, public_root=services.public_folder,
            trusted_certificate=bundle,
            client_cert_header=str(config.get("certauth", "header")),
            proxy_bind=proxy_address, full=not snippet, run_dir=None if snippet else run,
            user=user, ocsp_post_js=script)
        text = render(settings)
    except NginxConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    emit(services, {"config": str(out), "nodes": [str(u) for u in upstreams],
                    "proxy_address": source},
         f"nginx configuration written to {out} ({len(upstreams)} node(s); test it with "
         f"`nginx -t -c {out}`)")


def _proxy_source(upstreams: tuple[Upstream, ...], proxy_address: str | None) -> str:
    if proxy_address is not None:
        try:
            return str(ipaddress.ip_address(proxy_address))
        except ValueError:
            raise click.ClickException(
                f"--proxy-address: {proxy_address!r} is not an IP address") from None
    if all(u.loopback for u in upstreams):
        return "::1" if any(":" in u.host for u in upstreams) else "127.0.0.1"
    raise click.ClickException(
        "a node is not on loopback: give --proxy-address, the address nginx connects "
        "from (it goes into proxy_bind and must be in [idp] trusted_proxies)")


@deploy.command("public")
@click.pass_obj
def deploy_public(services: Services) -> None:
    """Write CA certificates, CRLs and pre-signed OCSP responses for nginx now."""
    _require_home(services)
    services.export_public_files(force=True)
    folder = services.public_folder
    emit(services, {"folder": str(folder)}, f"public PKI files written under {folder}")
