"""The demo's identity provider: a real OpenID Connect provider on loopback, with demo users.

``scripts/demo.sh`` runs it in its own process group and stops it on exit::

    .venv/jh6/bin/python scripts/demo_oidc_provider.py --port 9400

It is ``oidc-provider-mock`` (Flask + authlib: discovery, authorize, token with
refresh tokens, userinfo) behind the tests' PKCE check
(``scripts/oidc_provider.py``): an authorization request without an
S256 ``code_challenge`` is refused, and each token request must carry the
matching ``code_verifier``. Unlike the tests' provider, it accepts only
registered clients: ``demo.sh`` registers the hub with its callback URL
(``POST /oauth2/clients``, dynamic client registration) and hands the client id
and secret it gets back to the hub, as an admin copies them from Keycloak.

Its sign-in page has no passwords: it asks for a subject (``sub``) and also
offers a button per demo user. ``DEMO_USERS`` lists them; the demo's
``jupyterhub_config.py`` maps ``eppn`` minus ``@uni.example`` to the cluster
account and lets in the group ``hpc-users``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

#: Who can sign in. alice, bob and carol have accounts on the demo cluster
#: (scripts/cluster/setup.sh creates them); mallory does not, and gets the "No cluster
#: account" page. alice is also in the hub's admin group.
DEMO_USERS = [
    {
        "sub": "alice",
        "eppn": "alice@uni.example",
        "preferred_username": "alice",
        "email": "alice@uni.example",
        "name": "Alice Archer",
        "groups": ["hpc-users", "hpc-admins"],
    },
    {
        "sub": "bob",
        "eppn": "bob@uni.example",
        "preferred_username": "bob",
        "email": "bob@uni.example",
        "name": "Bob Baker",
        "groups": ["hpc-users"],
    },
    {
        "sub": "carol",
        "eppn": "carol@uni.example",
        "preferred_username": "carol",
        "email": "carol@uni.example",
        "name": "Carol Cooper",
        "groups": ["hpc-users"],
    },
    {
        "sub": "mallory",
        "eppn": "mallory@uni.example",
        "preferred_username": "mallory",
        "email": "mallory@uni.example",
        "name": "Mallory Miller",
        "groups": ["hpc-users"],
    },
]

log = logging.getLogger("demo-oidc-provider")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--host", default="127.0.0.1", help="keep it on loopback")
    parser.add_argument("--token-max-age", type=int, default=3600, help="seconds")
    args = parser.parse_args(argv)

    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, as the mock's CLI
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # authlib's notices about its own future API are no news for someone reading the demo's
    # log; importing authlib.deprecate turns them on ("always"), so this filter comes after
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from oidc_provider import serve  # scripts/oidc_provider.py, next to this file

    log.info(
        "Demo users: %s; issuer http://%s:%d",
        ", ".join(u["sub"] for u in DEMO_USERS),
        args.host,
        args.port,
    )
    serve(
        DEMO_USERS,
        host=args.host,
        port=args.port,
        token_max_age=args.token_max_age,
        require_client_registration=True,
    )


if __name__ == "__main__":
    main()
