"""nginx in front of the nodes: the configuration ``govtrust deploy nginx`` writes.

nginx (Debian ``nginx``) terminates TLS for the IdP with the server certificate
our CA issues (``idp.runtime.tls``), asks for an optional client certificate
without checking it (``ssl_verify_client optional_no_ca``: the IdP validates path,
validity and revocation itself) and forwards it URL-escaped in the header the IdP
believes from ``[idp] trusted_proxies`` (``idp.login.forwarded``). Upstreams are
the nodes (``govtrust node``), with passive health checks (``max_fails`` /
``fail_timeout``): a node that refuses connections is skipped and retried later.
A request nginx has already sent with a non-idempotent method (a token or a
certificate request) is never replayed on another node.

The PKI's public service is a second, plain-HTTP server (RFC 5280 §4.2.1.13 and
RFC 6960 Appendix A distribution points are usually http:, and a relying party
checking revocation cannot first check a TLS certificate's revocation): CA
certificates, CRLs and pre-signed OCSP responses are static files from
``home/pki/public`` (``pki.public_files``), with caching headers; anything not
there (a fresh serial, a request with a nonce) goes to a node. With Debian's njs
module (``libnginx-mod-http-js``, which ``scripts/setup`` installs), a ``POST
/ocsp`` whose body is exactly a request that has a pre-signed file is answered
from that file as well (:data:`OCSP_POST_JS`): the same file, so the same
freshness as the GET answer; anything else is handed to a node unchanged.

TLS follows Mozilla's "intermediate" profile (TLS 1.2 and 1.3, AEAD ciphers with
forward secrecy, no session tickets) and HSTS. :func:`render` is pure: settings in,
text out.

The TLS server staples an OCSP response for its own certificate from our
responder (``ssl_stapling`` with ``ssl_stapling_verify`` against the CA bundle),
fetched by nginx from its own PKI server on loopback
(``ssl_stapling_responder``, :func:`stapling_responder`). Why that, and not the
alternatives:

- the certificate's AIA OCSP URL is ``[pki] public_url``, a public host name the
  front may neither resolve (nginx needs a ``resolver`` for it, and a DNS server
  it can reach) nor reach (hairpin through the public address); an IP literal
  needs no resolver, and the loopback hop cannot fail while nginx runs;
- ``ssl_stapling_file`` (a pre-signed DER file) is read once, when nginx starts
  or reloads, and then stapled as it is even past its nextUpdate (four hours):
  every refresh by the duties would need a reload of every front, which nothing
  in a front does. With a responder URL nginx fetches the response itself and
  refreshes it before it expires (nginx 1.22: within an hour, and by nextUpdate
  minus five minutes);
- the response nginx fetches is the pre-signed file ``pki.public_files`` writes
  for the certificate (its GET request is the RFC 5019 form those files are
  named by: SHA-1 CertID, no nonce), and a node's answer when the file is not
  there yet, so stapling works with every node down as long as the files are
  fresh.

nginx fetches the response on the first handshake after start and staples it
from the next one on, per worker process.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from pki.public_files import FOLDER_FILE

# Mozilla server-side TLS, "intermediate" (v5.7), without the DHE suites (no
# dhparam file to manage; every client of this service has ECDHE).
MOZILLA_INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"))
HSTS = "max-age=63072000"
# A node that failed this many times in FAIL_TIMEOUT is left alone for FAIL_TIMEOUT.
MAX_FAILS = 2
FAIL_TIMEOUT = "10s"
# Caching of the static public objects (RFC 5019 §6.2 for OCSP: never beyond the
# response's nextUpdate; the files are re-signed at a quarter of their lifetime).
CA_MAX_AGE = 86400
CRL_MAX_AGE = 300
OCSP_MAX_AGE = 300
# Debian's njs module (libnginx-mod-http-js) and the name the script is imported as.
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
NJS_IMPORT = "govtrust_ocsp"
# pki.ocsp.MAX_REQUEST_BYTES: a larger body is no request we answer.
_OCSP_MAX_REQUEST = 8192

# POST /ocsp answered from the pre-signed files when the body is exactly the
# request a file was written for (pki.public_files: the file's name is the
# base64 of the request's DER, the GET path). The body is never interpreted,
# only encoded: base64 has no "." so the name cannot leave the folder, and a
# name that is a folder or no file at all goes to a node, like everything else.
OCSP_POST_JS = """// Written by `govtrust deploy nginx` (idp/runtime/nginx.py); regenerate it.
import fs from 'fs';

const FOLDER = %(folder)s;
const MAX_REQUEST = %(max)d;
const FOLDER_FILE = %(folder_file)s;
// The nonce extension's OID (RFC 8954): no file was written for a request with
// one, and a missing file costs njs an exception, so such a body goes straight on.
const NONCE_OID = Buffer.from([0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02]);

function post(r) {
    const body = r.requestBuffer;
    if (r.method === 'POST' && body && body.length > 0 && body.length <= MAX_REQUEST
            && !body.includes(NONCE_OID)) {
        let answer = null;
        let name = body.toString('base64');
        if (name.endsWith('/')) {
            name += FOLDER_FILE;  // pki.public_files.FOLDER_FILE
        }
        try {
            answer = fs.readFileSync(FOLDER + name);
        } catch (e) {
            answer = null;
        }
        if (answer !== null) {
            r.headersOut['Content-Type'] = 'application/ocsp-response';
            r.headersOut['Cache-Control'] = 'no-cache';
            r.return(200, answer);
            return;
        }
    }
    r.internalRedirect('@node');
}

export default {post};
"""


def ocsp_post_js(public_root: Path) -> str:
    """The njs script for :class:`NginxSettings` ``ocsp_post_js`` (see above)."""
    return OCSP_POST_JS % {"folder": json.dumps(str(public_root / "ocsp") + "/"),
                           "folder_file": json.dumps(FOLDER_FILE),
                           "max": _OCSP_MAX_REQUEST}


class NginxConfigError(ValueError):
    """A setting nginx cannot use (``.field`` names it)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """``HOST:PORT`` (``[::1]:8000`` for IPv6)."""
        host, sep, port = text.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isascii() or not port.isdigit() \
                or not 0 < int(port) < 65536:
            raise NginxConfigError("node", f"expected HOST:PORT, got {text!r}")
        if any(c.isspace() or c in ";{}'\"" for c in host):
            raise NginxConfigError("node", f"not a host name: {host!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


@dataclass(frozen=True)
class NginxSettings:
    nodes: tuple[Upstream, ...]
    idp_listen: str  # HOST:PORT of the TLS server (the issuer's)
    pki_listen: str  # HOST:PORT of the plain-HTTP PKI server
    server_name: str
    certificate: Path  # chain PEM
    certificate_key: Path
    public_root: Path  # pki.public_files output
    trusted_certificate: Path  # CA bundle (issuing + root): verifies the stapled response
    client_cert_header: str = "X-SSL-Client-Cert"
    proxy_bind: str | None = None  # the source address nodes see (in trusted_proxies)
    # A whole nginx.conf (for `nginx -c`), or only the http-context part for
    # /etc/nginx/conf.d/ (Debian's nginx.conf includes it).
    full: bool = True
    run_dir: Path | None = None  # pid, logs and temporary files of a full configuration
    user: str | None = None
    # The njs script (ocsp_post_js) that answers POST /ocsp from the files; None
    # sends every POST to a node.
    ocsp_post_js: Path | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise NginxConfigError("node", "at least one node (--node HOST:PORT) is needed")
        for name in ("idp_listen", "pki_listen"):
            Upstream.parse(getattr(self, name))  # same HOST:PORT rule
        if not self.client_cert_header.replace("-", "").isalnum():
            raise NginxConfigError("header", f"not a header name: {self.client_cert_header!r}")
        if self.full and self.run_dir is None:
            raise NginxConfigError("run_dir", "a full configuration needs a run folder")


def stapling_responder(pki_listen: str) -> str:
    """The URL nginx asks for the OCSP response it staples: its own PKI server,
    reached on loopback when that server listens on every address."""
    listen = Upstream.parse(pki_listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(listen.host,
                                                                       listen.host)
    return f"http://{Upstream(host, listen.port)}/ocsp"


def _q(value: object) -> str:
    """A quoted nginx string (paths may hold spaces)."""
    text = str(value)
    if any(c in text for c in "\"\\\n$"):
        raise NginxConfigError("path", f"cannot be written into nginx.conf: {text!r}")
    return f'"{text}"'


def _proxy(upstream: str) -> str:
    # A node's 503 (its database or directory briefly away, Retry-After set) is an
    # answer, not a node failure: retrying it elsewhere cannot help, and counting it
    # would mark every node down during a database failover (502 "no live upstreams"
    # for up to fail_timeout after the database is back). So only connection errors,
    # timeouts and 502s move a request to the next node.
    return f"""            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $request_id;
            proxy_next_upstream error timeout http_502;
            proxy_connect_timeout 2s;
"""


def _ocsp_post(s: NginxSettings) -> str:
    if s.ocsp_post_js is None:
        return """        location = /ocsp {
            try_files /nonexistent @node;
        }
"""
    # The body stays in memory (client_max_body_size is 16k) for the script to read;
    # it goes on to the node as it came when there is no file.
    return f"""        location = /ocsp {{
            client_body_buffer_size 16k;
            js_content {NJS_IMPORT}.post;
        }}
"""


def render(s: NginxSettings) -> str:
    """The configuration text."""
    header = s.client_cert_header
    servers = "\n".join(
        f"        server {n} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};" for n in s.nodes)
    bind = f"    proxy_bind {s.proxy_bind};\n" if s.proxy_bind else ""
    js_import = (f"    js_import {NJS_IMPORT} from {_q(s.ocsp_post_js)};\n"
                 if s.ocsp_post_js is not None else "")
    http = f"""    # Written by `govtrust deploy nginx`; regenerate rather than edit.
    upstream govtrust_nodes {{
{servers}
        keepalive 16;
    }}
{bind}    server_tokens off;
    ssl_session_cache shared:govtrust_tls:10m;

    # The IdP and console (government network): TLS, optional client certificate.
    server {{
        listen {s.idp_listen} ssl;
        server_name {s.server_name};
        ssl_certificate {_q(s.certificate)};
        ssl_certificate_key {_q(s.certificate_key)};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {MOZILLA_INTERMEDIATE_CIPHERS};
        ssl_prefer_server_ciphers off;
        ssl_session_timeout 1d;
        ssl_session_tickets off;
        # OCSP stapling from our responder, fetched from the PKI server below
        # (idp.runtime.nginx says why not the certificate's AIA URL or a file).
        ssl_stapling on;
        ssl_stapling_verify on;
        ssl_trusted_certificate {_q(s.trusted_certificate)};
        ssl_stapling_responder {stapling_responder(s.pki_listen)};
        # Ask for a certificate, check nothing: the IdP checks it (idp.login.certificate).
        ssl_verify_client optional_no_ca;
        ssl_verify_depth 4;
        client_max_body_size 1m;
        # The nodes send HSTS too; one header, from here.
        proxy_hide_header Strict-Transport-Security;
        add_header Strict-Transport-Security "{HSTS}" always;

        location / {{
{_proxy("govtrust_nodes")}            # Replaces any such header the client sent; empty (not sent)
            # when no certificate was presented.
            proxy_set_header {header} $ssl_client_escaped_cert;
        }}
    }}

{js_import}    # The PKI's public service (internet side): CA certificates, CRLs, OCSP, plain HTTP.
    server {{
        listen {s.pki_listen};
        server_name {s.server_name};
        root {_q(s.public_root)};
        autoindex off;
        client_max_body_size 16k;

        location /ca/ {{
            types {{ application/pkix-cert der crt cer; application/x-pem-file pem; }}
            add_header Cache-Control "public, max-age={CA_MAX_AGE}";
            try_files $uri @node;
        }}
        location /crl/ {{
            types {{ application/pkix-crl crl; }}
            add_header Cache-Control "public, max-age={CRL_MAX_AGE}";
            try_files $uri @node;
        }}
        # RFC 6960 A.1 GET: the file named by the request (pki.public_files); POST and
        # what has no file go to a node.
        location /ocsp/ {{
            types {{ }}
            default_type application/ocsp-response;
            add_header Cache-Control "public, max-age={OCSP_MAX_AGE}, no-transform";
            error_page 405 = @node;
            try_files $uri ${{uri}}{FOLDER_FILE} @node;
        }}
{_ocsp_post(s)}        location @node {{
{_proxy("govtrust_nodes")}        }}
        location / {{
            return 404;
        }}
    }}
"""
    if not s.full:
        return http
    assert s.run_dir is not None
    run = s.run_dir
    user = f"user {s.user};\n" if s.user else ""
    if s.ocsp_post_js is not None:  # a snippet relies on Debian's modules-enabled
        user += f"load_module {_q(NJS_MODULE)};\n"
    return f"""{user}worker_processes auto;
pid {_q(run / "nginx.pid")};
error_log {_q(run / "error.log")} warn;

events {{
    worker_connections 1024;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {_q(run / "access.log")};
    client_body_temp_path {_q(run / "body")};
    proxy_temp_path {_q(run / "proxy")};
    fastcgi_temp_path {_q(run / "fastcgi")};
    uwsgi_temp_path {_q(run / "uwsgi")};
    scgi_temp_path {_q(run / "scgi")};
    sendfile on;
    keepalive_timeout 65;
{http}}}
"""
