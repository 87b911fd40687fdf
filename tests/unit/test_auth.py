"""hpcspawner.auth.ClusterOAuthenticator without a hub: config checks, mapping, accounts, discovery.

The end-to-end flows (browser, provider, hub, Slurm) are in tests/integration/test_login.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from fakeslurm import FakeCluster, FakeSlurm, controller_down, timed_out
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets import TraitError
from traitlets.config import Config

from hpcspawner.auth import ClusterOAuthenticator, NoClusterAccount
from hpcspawner.auth.authenticator import _expired
from hpcspawner.auth.oidc import DiscoveryError
from hpcspawner.slurm import Association

ISSUER = "https://idp.uni.example/realms/hpc"


def make(**settings) -> ClusterOAuthenticator:
    config = Config()
    settings.setdefault("issuer", ISSUER)
    for name, value in settings.items():
        config.ClusterOAuthenticator[name] = value
    return ClusterOAuthenticator(config=config)


def bounded(awaitable, timeout: float = 10):
    return asyncio.wait_for(awaitable, timeout)


# ---------------------------------------------------------------- defaults and config checks


def test_secure_defaults():
    authenticator = make()
    assert authenticator.enable_pkce
    assert authenticator.enable_auth_state
    assert authenticator.refresh_pre_spawn
    assert authenticator.validate_server_cert
    assert authenticator.basic_auth
    assert not authenticator.allow_all
    assert authenticator.scope == ["openid", "profile", "email"]
    assert authenticator.username_claim == "preferred_username"
    assert authenticator.slurm_accounts == "none"
    assert authenticator.require_posix_account and authenticator.min_uid == 1000
    assert authenticator.max_uid == 60000
    assert {"root", "nobody", "slurm", "munge", "slurmrest", "slurmrestd"} <= set(
        authenticator.refused_usernames
    )
    assert authenticator.refused_shells == ["nologin", "false"]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        pytest.param(
            {"issuer": ""}, ValueError, "needs c.ClusterOAuthenticator.issuer", id="no-provider"
        ),
        pytest.param({"issuer": "http://idp.uni.example"}, ValueError, "https", id="http-issuer"),
        pytest.param(
            {"oauth_callback_url": "http://hub.uni.example/hub/oauth_callback"},
            ValueError,
            "must use https",
            id="http-callback",
        ),
        pytest.param(
            {"username_rewrite_pattern": "(unclosed"},
            ValueError,
            "not a regular expression",
            id="bad-pattern",
        ),
        pytest.param(
            {"username_rewrite_pattern": "([a-z]+)", "username_rewrite_template": "{2}"},
            ValueError,
            "uses group 2",
            id="template-needs-missing-group",
        ),
        pytest.param(
            {"no_account_message": "No account for {user}"},
            ValueError,
            "only {identity}",
            id="message-placeholder",
        ),
        pytest.param(
            {"no_account_url": "javascript:alert(1)"}, ValueError, "http(s) URL", id="url-scheme"
        ),
        pytest.param(
            {"slurm_accounts": "sacct"}, TraitError, "slurm_accounts", id="unknown-source"
        ),
        pytest.param(
            {"slurm_accounts": {"alice": "projA"}},
            ValueError,
            "must be a list",
            id="account-map-value",
        ),
        pytest.param(
            {"min_uid": 1000, "max_uid": 500}, ValueError, "must be above min_uid", id="uid-range"
        ),
        pytest.param(
            {"username_map_file": "/nonexistent/usernames.map"},
            ValueError,
            "username_map_file /nonexistent/usernames.map",
            id="missing-map-file",
        ),
        pytest.param(
            {
                "username_map_file": "/etc/jupyterhub/usernames.map",
                "username_lookup_hook": lambda authenticator, login, claims: login,
            },
            ValueError,
            "not both",
            id="map-and-hook",
        ),
    ],
)
def test_config_errors_name_the_fix(settings, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(**settings)


def test_explicit_urls_need_no_issuer():
    authenticator = make(
        issuer="",
        authorize_url="https://idp.uni.example/authorize",
        token_url="https://idp.uni.example/token",
        userdata_url="https://idp.uni.example/userinfo",
    )
    assert asyncio.run(authenticator.discover()) is None


def test_invalid_map_file_stops_the_hub_but_a_broken_update_keeps_the_old_one(tmp_path):
    path = tmp_path / "usernames.map"
    path.write_text("alice@uni.example al ice\n")
    with pytest.raises(ValueError, match="line 1"):
        make(username_map_file=str(path), username_claim="eppn")
    path.write_text("alice@uni.example alice\n")
    authenticator = make(username_map_file=str(path), username_claim="eppn")
    assert authenticator._username_map() == {"alice@uni.example": "alice"}
    path.write_text("alice@uni.example alice\nbob@uni.example bob\n")
    assert authenticator._username_map() == {
        "alice@uni.example": "alice",
        "bob@uni.example": "bob",
    }
    path.write_text("broken\n")
    assert authenticator._username_map() == {
        "alice@uni.example": "alice",
        "bob@uni.example": "bob",
    }


# ---------------------------------------------------------------- login -> cluster account


async def test_cluster_account_from_the_user_database():
    # daemon (uid 1, nologin) stands in for a user: every Debian host has it
    authenticator = make(
        username_claim="eppn", username_strip_domains=["uni.example"], min_uid=0, refused_shells=[]
    )
    identity, account = await bounded(authenticator.cluster_account({"eppn": "daemon@uni.example"}))
    assert identity == "daemon@uni.example"
    assert (account.username, account.uid, account.gid) == ("daemon", 1, 1)


@pytest.mark.parametrize(
    ("claims", "reason", "message"),
    [
        pytest.param(
            {"preferred_username": "no-such-user"},
            "no-account",
            "No cluster account for no-such-user. Apply at https://hpc.uni.example/apply",
            id="no-account",
        ),
        pytest.param(
            {"preferred_username": "daemon"},
            "system-account",
            "The cluster account for daemon is a system or service account",
            id="system-account",
        ),
        pytest.param(
            {"preferred_username": "nobody"},
            "reserved-username",
            "The cluster account for nobody is a system or service account",
            id="nobody",
        ),
        pytest.param(
            {"preferred_username": "slurm"},
            "service-account",
            "The cluster account for slurm is a system or service account",
            id="slurm",
        ),
        pytest.param(
            {"email": "alice@uni.example"},
            "missing-claim",
            "The identity provider did not tell this hub who you are.",
            id="missing-claim",
        ),
    ],
)
async def test_no_cluster_account(claims, reason, message):
    authenticator = make(
        no_account_message="No cluster account for {identity}. Apply at https://hpc.uni.example/apply"
    )
    with pytest.raises(NoClusterAccount) as info:
        await bounded(authenticator.cluster_account(claims))
    error = info.value
    assert error.status_code == 403
    assert error.error.reason == reason
    assert error.jupyterhub_message.startswith(message)


@pytest.mark.parametrize(
    ("claims", "settings", "reason"),
    [
        # Debian's Slurm packages: slurm is uid 64030 (above min_uid) and Slurm's super-user
        pytest.param({"preferred_username": "slurm"}, {}, "service-account", id="slurm"),
        pytest.param({"preferred_username": "munge"}, {}, "service-account", id="munge"),
        pytest.param({"preferred_username": "root"}, {}, "reserved-username", id="root"),
        pytest.param({"preferred_username": "daemon"}, {}, "system-account", id="daemon"),
        pytest.param({"preferred_username": "bin"}, {}, "system-account", id="bin"),
        pytest.param(
            {"preferred_username": "daemon"},
            {"min_uid": 0},
            "no-login-shell",
            id="nologin-shell",
        ),
        pytest.param(
            {"preferred_username": "daemon"},
            {"min_uid": 0, "max_uid": 1, "refused_shells": []},
            "high-uid",
            id="max-uid",
        ),
        pytest.param(
            {"preferred_username": "slurm"},
            {"require_posix_account": False},
            "service-account",
            id="slurm-without-posix-check",
        ),
        pytest.param(
            {"preferred_username": "munge"},
            {"require_posix_account": False},
            "service-account",
            id="munge-without-posix-check",
        ),
        pytest.param(
            {"preferred_username": "bin"},
            {"require_posix_account": False},
            "system-account",
            id="local-uid-checked-without-posix-check",
        ),
        pytest.param(
            {"preferred_username": "backup-svc"},
            {"refused_usernames": ["backup-svc"]},
            "service-account",
            id="site-service-account",
        ),
        pytest.param(
            {"eppn": "alice"},
            {"username_claim": "eppn", "username_strip_domains": ["uni.example"]},
            "unscoped-claim",
            id="unscoped-eppn",
        ),
        pytest.param({"preferred_username": "\u212aarl"}, {}, "non-ascii-claim", id="kelvin-sign"),
        pytest.param(
            {"sub": "x", "preferred_username": "x"},
            {"username_lookup_hook": lambda authenticator, login, claims: "slurm"},
            "service-account",
            id="hook-returns-slurm",
        ),
    ],
)
async def test_system_and_service_accounts_are_refused(claims, settings, reason):
    authenticator = make(**settings)
    with pytest.raises(NoClusterAccount) as info:
        await bounded(authenticator.cluster_account(claims))
    assert info.value.status_code == 403
    assert info.value.error.reason == reason, info.value.error.detail


async def test_slurm_user_from_slurm_conf_is_refused(tmp_path, monkeypatch):
    conf = tmp_path / "slurm.conf"
    conf.write_text("SlurmUser=daemon\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    authenticator = make(min_uid=0, refused_shells=[], refused_usernames=[])
    with pytest.raises(NoClusterAccount) as info:
        await bounded(authenticator.cluster_account({"preferred_username": "daemon"}))
    assert info.value.error.reason == "service-account"


# ---------------------------------------------------------------- pinning the provider identity


class FakeUser:
    def __init__(self, auth_state):
        self.auth_state = auth_state

    async def get_auth_state(self):
        return self.auth_state


class FakeHandler:
    """What authenticate() uses of JupyterHub's handler: find_user(name)."""

    def __init__(self, users):
        self.users = users

    def find_user(self, name):
        return self.users.get(name)


def login_model(sub: str) -> dict:
    claims = {"sub": sub, "preferred_username": "daemon"}
    return {
        "name": "daemon",
        "admin": None,
        "auth_state": {
            "oauth_user": claims,
            "hpcspawner": {"username": "daemon", "iss": ISSUER, "sub": sub},
        },
    }


@pytest.mark.parametrize(
    ("users", "sub", "refused"),
    [
        pytest.param({}, "u-1", False, id="new-user"),
        pytest.param(
            {
                "daemon": FakeUser(
                    {"hpcspawner": {"username": "daemon", "iss": ISSUER, "sub": "u-1"}}
                )
            },
            "u-1",
            False,
            id="same-sub",
        ),
        pytest.param(
            {
                "daemon": FakeUser(
                    {"hpcspawner": {"username": "daemon", "iss": ISSUER, "sub": "u-1"}}
                )
            },
            "u-2",
            True,
            id="other-sub",
        ),
        pytest.param(
            {"daemon": FakeUser({"hpcspawner": {"username": "daemon", "uid": 1}})},
            "u-2",
            False,
            id="legacy-state-gets-pinned",
        ),
        pytest.param({"daemon": FakeUser(None)}, "u-2", False, id="no-auth-state-gets-pinned"),
    ],
)
async def test_a_login_may_not_take_over_an_account_pinned_to_another_sub(users, sub, refused):
    authenticator = make()
    model = login_model(sub)
    if not refused:
        await bounded(authenticator.check_pinned_identity(FakeHandler(users), model))
        # what JupyterHub stores after this login: the account is pinned to this sub now
        assert model["auth_state"]["hpcspawner"]["sub"] == sub
        return
    with pytest.raises(NoClusterAccount) as info:
        await bounded(authenticator.check_pinned_identity(FakeHandler(users), model))
    error = info.value
    assert error.status_code == 403
    assert error.error.reason == "identity-changed"
    assert "belongs to another identity" in error.jupyterhub_message
    log = error.log_message % error.args
    assert "sub 'u-1'" in log and "delete the user 'daemon'" in log


async def test_update_auth_model_pins_the_provider_identity():
    authenticator = make(min_uid=0, refused_shells=[])
    claims = {"sub": "u-9", "preferred_username": "daemon"}
    model = await bounded(
        authenticator.update_auth_model(
            {"name": "daemon", "admin": None, "auth_state": {"oauth_user": claims}}
        )
    )
    state = model["auth_state"]["hpcspawner"]
    assert (state["iss"], state["sub"]) == (ISSUER, "u-9")


async def test_lookup_hook_and_no_posix_check():
    seen = []

    async def lookup(authenticator, login, claims):
        seen.append((login, claims["sub"]))
        return {"u-1": "ap123"}.get(claims["sub"])

    authenticator = make(
        username_claim="email", username_lookup_hook=lookup, require_posix_account=False
    )
    identity, account = await bounded(
        authenticator.cluster_account({"sub": "u-1", "email": "A.Person@Uni.Example"})
    )
    assert (identity, account.username, account.uid) == ("A.Person@Uni.Example", "ap123", None)
    assert seen == [("a.person@uni.example", "u-1")]
    with pytest.raises(NoClusterAccount) as info:
        await bounded(authenticator.cluster_account({"sub": "u-2", "email": "x@uni.example"}))
    assert info.value.error.reason == "unmapped"


async def test_update_auth_model_fills_the_spawners_part_of_auth_state():
    authenticator = make(
        min_uid=0,
        refused_shells=[],
        slurm_accounts={"daemon": ["projA"]},
        admin_users={"daemon"},
    )
    claims = {"sub": "u-d", "preferred_username": "Daemon"}
    model = await bounded(
        authenticator.update_auth_model(
            {"name": "daemon", "admin": None, "auth_state": {"oauth_user": claims}}
        )
    )
    assert model["name"] == "daemon"
    assert model["admin"] is True
    assert model["auth_state"]["hpcspawner"] == {
        "username": "daemon",
        "uid": 1,
        "gid": 1,
        "groups": model["auth_state"]["hpcspawner"]["groups"],
        "accounts": ["projA"],
        "iss": ISSUER,
        "sub": "u-d",
    }
    assert "daemon" in model["auth_state"]["hpcspawner"]["groups"]


async def test_accounts_from_a_map_and_a_callable():
    authenticator = make(slurm_accounts={"alice": ["projA"]})
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) == ["projA"]
    assert await bounded(authenticator.slurm_accounts_of("bob", {})) == []

    async def from_claims(authenticator, username, claims):
        return claims.get("projects")

    authenticator = make(slurm_accounts=from_claims)
    assert await bounded(authenticator.slurm_accounts_of("a", {"projects": ["p1", "p1"]})) == ["p1"]
    assert await bounded(authenticator.slurm_accounts_of("a", {})) is None
    with pytest.raises(ValueError, match="not a Slurm account name"):
        await bounded(authenticator.slurm_accounts_of("a", {"projects": ["a b"]}))


# ---------------------------------------------------------------- sacctmgr (through the driver)


def on_cluster(
    cluster: FakeCluster, associations_ttl: float = 300, **settings
) -> ClusterOAuthenticator:
    """An authenticator whose hub's spawners reach ``cluster`` (c.SlurmSpawner.driver_class)."""
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm
    config.SlurmSpawner.associations_ttl = associations_ttl
    config.FakeSlurm.cluster = cluster
    config.ClusterOAuthenticator.issuer = ISSUER
    config.ClusterOAuthenticator.slurm_accounts = "sacctmgr"
    for name, value in settings.items():
        config.ClusterOAuthenticator[name] = value
    return ClusterOAuthenticator(config=config)


ASSOCIATIONS = [
    Association("proja", ("normal",), "normal", None),
    Association("projb", ("normal", "high"), None, "gpu"),
    Association("proja", ("normal",), None, "gpu"),
]


async def test_sacctmgr_accounts_come_from_the_driver_and_are_cached():
    cluster = FakeCluster()
    cluster.associations["alice"] = ASSOCIATIONS
    authenticator = on_cluster(cluster)
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) == ["proja", "projb"]
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) == ["proja", "projb"]
    # the driver's question (LocalSlurmDriver.user_associations runs sacctmgr), asked once
    assert [call.args for call in cluster.calls("user_associations")] == [("alice",)]
    assert authenticator.shared_slurm.driver.calls == {"sacctmgr": 1}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(None, id="no-slurmdbd"),
        pytest.param(controller_down("user_associations"), id="sacctmgr-fails"),
        pytest.param(timed_out("user_associations", 10), id="timeout"),
    ],
)
async def test_sacctmgr_failure_means_not_known(answer):
    cluster = FakeCluster()
    if answer is not None:
        cluster.associations["alice"] = answer
    authenticator = on_cluster(cluster)
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) is None
    # a login soon after does not ask again: the hub remembers the failure for a while
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) is None
    assert cluster.count("user_associations") == 1


async def test_sacctmgr_failure_after_an_answer_keeps_the_known_accounts():
    cluster = FakeCluster()
    cluster.associations["alice"] = ASSOCIATIONS
    authenticator = on_cluster(cluster, associations_ttl=0)  # every login asks again
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) == ["proja", "projb"]
    cluster.associations["alice"] = controller_down("user_associations")
    assert await bounded(authenticator.slurm_accounts_of("alice", {})) == ["proja", "projb"]
    await bounded(cluster.answered("user_associations", 2))
    assert cluster.calls("user_associations")[1].outcome.startswith("error")


async def test_a_hub_of_another_config_has_its_own_driver():
    cluster = FakeCluster()
    first, second = on_cluster(cluster), on_cluster(cluster)
    assert first.shared_slurm.driver is first.shared_slurm.driver
    assert first.shared_slurm.driver is not second.shared_slurm.driver


@pytest.mark.parametrize(
    ("name", "value", "instead"),
    [
        pytest.param(
            "sacctmgr_command",
            ["ssh", "login1", "sacctmgr"],
            "c.LocalSlurmDriver.query_command_prefix",
            id="command",
        ),
        pytest.param("sacctmgr_timeout", 3.0, "c.LocalSlurmDriver.command_timeout", id="timeout"),
        pytest.param("accounts_cache_seconds", 60.0, "c.SlurmSpawner.associations_ttl", id="cache"),
    ],
)
def test_old_sacctmgr_settings_warn_naming_what_to_set(caplog, name, value, instead):
    cluster = FakeCluster()
    with caplog.at_level(logging.WARNING):
        on_cluster(cluster, **{name: value})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{name} is deprecated" in w and instead in w for w in warnings), warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        on_cluster(cluster)
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


# ---------------------------------------------------------------- discovery


class DiscoveryHandler(web.RequestHandler):
    def initialize(self, served):
        self.served = served

    async def get(self):
        self.served["requests"] += 1
        self.served["arrived"].set()
        await self.served["release"].wait()  # a test may hold the answer (callers pile up)
        if self.served["failures"]:
            self.served["failures"] -= 1
            raise web.HTTPError(500)
        self.write(json.dumps(self.served["document"]))


@pytest.fixture
async def provider():
    """An issuer on loopback serving a discovery document (``failures`` first answer 500).
    ``arrived`` is set by each request; answers wait while ``release`` is clear."""
    sock, port = bind_unused_port()
    issuer = f"http://127.0.0.1:{port}/realms/hpc"
    release = asyncio.Event()
    release.set()
    served = {
        "requests": 0,
        "arrived": asyncio.Event(),
        "release": release,
        "failures": 0,
        "document": {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/auth",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
        },
    }
    app = web.Application(
        [(r"/realms/hpc/\.well-known/openid-configuration", DiscoveryHandler, {"served": served})]
    )
    server = HTTPServer(app)
    server.add_sockets([sock])
    served["issuer"] = issuer
    yield served
    server.stop()
    await bounded(server.close_all_connections())


async def test_discovery_fills_the_urls_once(provider):
    issuer = provider["issuer"]
    authenticator = make(issuer=issuer, token_url="https://override.example/token")
    provider["release"].clear()
    logins = asyncio.gather(*(authenticator.discover() for _ in range(5)))
    # all five asked before the request reached the provider; it answers once they piled up
    await bounded(provider["arrived"].wait())
    provider["release"].set()
    results = await bounded(logins)
    assert provider["requests"] == 1, "concurrent logins share one discovery request"
    assert all(result is results[0] for result in results)
    assert authenticator.authorize_url == f"{issuer}/auth"
    assert authenticator.token_url == "https://override.example/token", "explicit URLs win"
    assert authenticator.userdata_url == f"{issuer}/userinfo"
    await bounded(authenticator.discover())
    assert provider["requests"] == 1, "the document is cached"


async def test_failed_discovery_is_retried_and_shown_as_503(provider):
    provider["failures"] = 1
    authenticator = make(issuer=provider["issuer"])
    with pytest.raises(web.HTTPError) as info:
        await bounded(authenticator.require_discovery())
    assert info.value.status_code == 503
    assert "cannot be reached" in info.value.jupyterhub_message
    assert not authenticator.authorize_url
    await bounded(authenticator.discover())
    assert provider["requests"] == 2
    assert authenticator.authorize_url.endswith("/auth")


async def test_discovery_of_the_wrong_issuer_is_refused(provider):
    provider["document"]["issuer"] = "https://evil.example"
    authenticator = make(issuer=provider["issuer"])
    with pytest.raises(DiscoveryError, match="says its issuer is 'https://evil.example'"):
        await bounded(authenticator.discover())
    assert not authenticator.token_url


async def test_unreachable_issuer():
    sock, port = bind_unused_port()
    sock.close()  # nothing listens there
    authenticator = make(issuer=f"http://127.0.0.1:{port}")
    with pytest.raises(DiscoveryError, match="could not fetch"):
        await bounded(authenticator.discover())


# ---------------------------------------------------------------- token expiry


async def test_expiry_is_recorded_in_auth_state():
    authenticator = make()
    state = await bounded(
        authenticator.build_auth_state_dict(
            {"access_token": "a", "refresh_token": "r", "expires_in": 300}, {"sub": "x"}
        )
    )
    assert 299 < state["expires_at"] - time.time() <= 300
    assert not _expired(state)
    assert _expired({"expires_at": time.time() - 1})
    assert not _expired({}) and not _expired(None)
    no_expiry = await bounded(authenticator.build_auth_state_dict({"access_token": "a"}, {}))
    assert "expires_at" not in no_expiry


# ---------------------------------------------------------------- claims in the log


async def test_claims_reach_the_log_escaped():
    authenticator = make()
    forged = "alice\n[W 2026-01-01 hub] forged line \x1b[2J\u202e"
    with pytest.raises(NoClusterAccount) as info:
        await bounded(authenticator.cluster_account({"sub": "u\n1", "preferred_username": forged}))
    log = info.value.log_message % info.value.args
    assert "\n" not in log and "\x1b" not in log and "\u202e" not in log
    assert "alice\\n[W 2026-01-01 hub] forged line \\x1b[2J\\u202e" in log
    assert "(sub u\\n1)" in log
