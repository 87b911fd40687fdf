"""Logging in with the site's identity provider lands on the right cluster account.

Real parts only: an OpenID Connect provider on loopback (oidc-provider-mock,
with PKCE enforced, see ``scripts/oidc_provider.py``) in its own process group, a real
hub + proxy over HTTPS with ClusterOAuthenticator and SlurmSpawner, the real
local Slurm cluster, and Chromium driven by Playwright.

Users at the provider: alice and bob have cluster accounts (bob is in the
admin group), carol has one but is not in the allowed group, mallory has
none, eve comes from a foreign domain, "markup" has HTML in its ``eppn``, and
``u-nobody`` (not predefined) sends no ``eppn``.
"""

from __future__ import annotations

import pwd
import re
import shutil
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from .browser import ARTIFACTS, screenshot
from .hub import squeue_fields
from .provider import Provider, start_provider

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

#: A fixed key: auth_state is encrypted, and these hubs live for one module.
CRYPT_KEY = "0123456789abcdef" * 4

USERS = {
    "alice": {
        "sub": "u-alice",
        "eppn": "Alice@uni.example",  # upper case on purpose: the mapping lower-cases
        "email": "alice@uni.example",
        "preferred_username": "alice",
        "groups": ["hpc-users"],
    },
    "bob": {
        "sub": "u-bob",
        "eppn": "bob@uni.example",
        "email": "bob@uni.example",
        "groups": ["hpc-users", "hpc-admins"],
    },
    "carol": {"sub": "u-carol", "eppn": "carol@uni.example", "groups": ["visitors"]},
    "mallory": {"sub": "u-mallory", "eppn": "mallory@uni.example", "groups": ["hpc-users"]},
    "eve": {"sub": "u-eve", "eppn": "eve@elsewhere.example", "groups": ["hpc-users"]},
    "markup": {
        "sub": "u-markup",
        "eppn": "<img src=x onerror=alert(1)>@uni.example",
        "groups": ["hpc-users"],
    },
}

NO_ACCOUNT_MESSAGE = "No cluster account for {identity}. Apply at https://hpc.uni.example/apply"

LOGIN_CONFIG = """
c.JupyterHub.authenticator_class = "hpc"
c.Authenticator.allow_all = False
c.ClusterOAuthenticator.issuer = {issuer!r}
c.ClusterOAuthenticator.client_id = "hpcspawner-tests"
c.ClusterOAuthenticator.client_secret = "not-a-secret"
c.ClusterOAuthenticator.oauth_callback_url = f"https://127.0.0.1:{{c.JupyterHub.port}}/hub/oauth_callback"
c.ClusterOAuthenticator.login_service = "Uni Example SSO"
c.ClusterOAuthenticator.username_claim = "eppn"
c.ClusterOAuthenticator.manage_groups = True
c.ClusterOAuthenticator.allowed_groups = {{"hpc-users"}}
c.ClusterOAuthenticator.admin_groups = {{"hpc-admins"}}
c.ClusterOAuthenticator.no_account_message = {message!r}
c.ClusterOAuthenticator.no_account_url = "https://hpc.uni.example/apply"
"""


# ---------------------------------------------------------------- the identity provider


@pytest.fixture(scope="module")
def provider_factory(tmp_path_factory):
    providers: list[Provider] = []

    def make(**kwargs) -> Provider:
        provider = start_provider(tmp_path_factory.mktemp("oidc"), USERS.values(), **kwargs)
        providers.append(provider)
        return provider

    yield make
    ARTIFACTS.mkdir(exist_ok=True)
    for number, provider in enumerate(providers):
        provider.stop()
        shutil.copy(provider.log_path, ARTIFACTS / f"oidc-provider-{number}.log")


# ---------------------------------------------------------------- hubs and the browser


@pytest.fixture(scope="module")
def provider(provider_factory):
    return provider_factory()


@pytest.fixture(scope="module")
def hub(hub_factory, provider):
    """Logins map ``eppn`` minus @uni.example through the system's user database."""
    config = LOGIN_CONFIG.format(issuer=provider.url, message=NO_ACCOUNT_MESSAGE)
    config += """
c.ClusterOAuthenticator.username_strip_domains = ["uni.example"]
# alice is in physics and chemistry in slurmdbd (make-site.sh): the hub narrows her to chemistry
c.ClusterOAuthenticator.slurm_accounts = {"alice": ["chemistry"], "bob": ["chemistry"]}
"""
    return hub_factory(extra_config=config, env={"JUPYTERHUB_CRYPT_KEY": CRYPT_KEY})


@pytest.fixture
def page(browser):
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def login(page, hub, user: str, *, next_url: str | None = "/hub/home", sub: str | None = None):
    """Sign in at the provider as ``user``; return the hub's response to the OAuth callback."""
    url = f"{hub.url}/hub/oauth_login"
    if next_url:
        url += f"?next={quote(next_url)}"
    page.goto(url)
    page.wait_for_selector("input[name=sub]")
    with page.expect_response(lambda r: "/hub/oauth_callback" in r.url) as callback:
        if sub is None:
            page.click(f"button[name=sub][value={USERS[user]['sub']}]")
        else:  # a subject the provider does not know: it sends only {"email": sub}
            page.fill("input[name=sub]", sub)
            page.click("button:has-text('Authorize')")
    page.wait_for_load_state()
    return callback.value


def user_model(hub, name: str) -> dict | None:
    r = hub.api("GET", f"/users/{name}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()


def submitted_job(hub, name: str, server: str = "") -> str:
    """The id of the job a spawn submitted (without waiting for it to run)."""
    events = hub.progress_events(
        name, server, timeout=120, until=lambda e: e.get("message", "").startswith("Submitted job")
    )
    for event in events:
        if event.get("message", "").startswith("Submitted job"):
            return event["message"].split()[2]
    model = hub.server_model(name, server)  # the spawn was over before we asked
    assert model and model["state"].get("job_id"), (events, model)
    return model["state"]["job_id"]


def log_since(hub, mark: int) -> str:
    """The hub's log written after ``mark`` (a size of the log file)."""
    with open(hub.log_path, "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


def log_mark(hub) -> int:
    return hub.log_path.stat().st_size


# ---------------------------------------------------------------- (1) login lands on the account


def test_login_with_pkce_lands_on_spawn_page_as_the_cluster_user(hub, provider, page):
    page.goto(f"{hub.url}/hub/login")
    button = page.locator("a.btn-jupyter")
    assert button.inner_text().strip() == "Sign in with Uni Example SSO"
    screenshot(page, "login.png")

    with page.expect_request(lambda r: r.url.startswith(f"{provider.url}/oauth2/authorize")) as req:
        button.click()
    query = parse_qs(urlsplit(req.value.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256 digest
    assert query["state"][0]
    assert query["redirect_uri"] == [f"{hub.url}/hub/oauth_callback"]
    assert query["scope"][0].split() == ["openid", "profile", "email"]

    with page.expect_response(lambda r: "/hub/oauth_callback" in r.url) as callback:
        page.click("button[name=sub][value=u-alice]")
    assert callback.value.status == 302
    # the spawn page: its options form, or, when the spawner shows none, the default
    # server starting at once (spawn-pending, or the server itself if it was quick)
    page.wait_for_url(re.compile(r".*/(hub/spawn|hub/spawn-pending/alice|user/alice/).*"))
    landed = urlsplit(page.url).path
    # the provider checked the code_verifier against the code_challenge
    assert "PKCE verified" in provider.log_text()

    cookies = {c["name"]: c for c in page.context.cookies()}
    for name in ("jupyterhub-session-id", "jupyterhub-hub-login"):
        assert cookies[name]["secure"] and cookies[name]["httpOnly"], cookies[name]

    model = user_model(hub, "alice")
    assert model["admin"] is False
    assert "hpc-users" in model["groups"]
    entry = pwd.getpwnam("alice")
    cluster = model["auth_state"]["hpcspawner"]
    assert cluster == {
        "username": "alice",
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "groups": cluster["groups"],
        "accounts": ["chemistry"],
        # the provider identity this account is now pinned to
        "iss": provider.url,
        "sub": "u-alice",
    }
    assert "alice" in cluster["groups"]
    assert model["auth_state"]["oauth_user"]["eppn"] == "Alice@uni.example"
    assert model["auth_state"]["refresh_token"]
    if landed == "/hub/spawn":
        assert page.locator("form#spawn_form").count() == 1
    page.close()

    # the server is a Slurm job of the cluster user alice
    if landed == "/hub/spawn":
        r = hub.spawn("alice")
        assert r.status_code in (201, 202), r.text
    assert squeue_fields(submitted_job(hub, "alice"), "%u") == ["alice"]
    hub.stop_server("alice")


# ---------------------------------------------------------------- (2) no cluster account


@pytest.mark.parametrize(
    ("user", "sub", "message"),
    [
        pytest.param(
            "mallory",
            None,
            "No cluster account for mallory@uni.example. Apply at https://hpc.uni.example/apply",
            id="no-posix-account",
        ),
        pytest.param(
            "eve",
            None,
            "No cluster account for eve@elsewhere.example. Apply at https://hpc.uni.example/apply",
            id="foreign-domain",
        ),
        pytest.param(
            "markup",
            None,
            "No cluster account for <img src=x onerror=alert(1)>@uni.example.",
            id="markup-in-the-claim-is-text",
        ),
        pytest.param(
            None,
            "u-nobody",
            "The identity provider did not tell this hub who you are.",
            id="missing-claim",
        ),
    ],
)
def test_login_without_cluster_account_gets_a_page_that_says_what_to_do(
    hub, page, user, sub, message
):
    if user in ("mallory", "eve"):
        with pytest.raises(KeyError):
            pwd.getpwnam(user)  # keep it that way: this user must not exist on the cluster
    response = login(page, hub, user, sub=sub)
    assert response.status == 403
    assert page.locator("h1").inner_text().strip() == "No cluster account"
    text = page.locator("#no-cluster-account-message").inner_text()
    assert text.startswith(message), text
    assert page.locator("#no-cluster-account-message *").count() == 0, "claims are text"
    body = page.content()
    assert "Traceback" not in body and "500" not in page.locator("h1").inner_text()
    apply = page.locator("#no-cluster-account-apply")
    assert apply.get_attribute("href") == "https://hpc.uni.example/apply"
    if user == "mallory":
        screenshot(page, "no-cluster-account.png")
    if user in ("mallory", "eve"):
        assert user_model(hub, user) is None, "a refused login must not create a hub user"


def test_forged_state_is_refused(hub, page):
    response = page.goto(f"{hub.url}/hub/oauth_callback?code=stolen&state=forged")
    assert response.status == 400
    assert "OAuth state" in page.content()


# ---------------------------------------------------------------- (3) groups: allow and admin


def test_group_membership_decides_access_and_admin(hub, browser):
    outcomes = {}
    for user in ("alice", "bob", "carol"):
        context = browser.new_context(ignore_https_errors=True)
        try:
            page = context.new_page()
            response = login(page, hub, user)
            outcomes[user] = response.status
            if response.status == 302:
                page.wait_for_url(f"{hub.url}/hub/home")
            else:
                assert "not currently authorized" in page.content()
        finally:
            context.close()
    assert outcomes == {"alice": 302, "bob": 302, "carol": 403}
    assert user_model(hub, "bob")["admin"] is True
    assert user_model(hub, "alice")["admin"] is False
    assert user_model(hub, "carol") is None
    members = hub.api("GET", "/groups/hpc-admins").json()["users"]
    assert members == ["bob"]
    assert set(hub.api("GET", "/groups/hpc-users").json()["users"]) >= {"alice", "bob"}


# ---------------------------------------------------------------- (4) auth_state limits accounts


def test_login_limits_the_accounts_the_spawner_accepts(hub, page):
    assert login(page, hub, "alice").status == 302
    page.close()

    # Slurm would take physics (alice's default account in slurmdbd); the hub's map does not
    r = hub.spawn("alice", "acct", options={"account": "physics"})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "account" in message and "'physics'" in message and "chemistry" in message, message
    assert hub.server_model("alice", "acct") is None

    # chemistry passes the validator, reaches sbatch and the job is charged to it
    r = hub.spawn("alice", "acct", options={"account": "chemistry"})
    assert r.status_code in (201, 202), r.text
    assert squeue_fields(submitted_job(hub, "alice", "acct"), "%u|%a") == ["alice", "chemistry"]
    hub.stop_server("alice", "acct")


# ---------------------------------------------------------------- (5) keeping the session valid

TOKEN_MAX_AGE = 3


@pytest.fixture(scope="module")
def short_provider(provider_factory):
    """Access tokens live 3 s; refresh tokens do not expire (the mock never expires them)."""
    return provider_factory(token_max_age=TOKEN_MAX_AGE)


@pytest.fixture(scope="module")
def usernames_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("map") / "usernames.map"
    path.write_text("# login        cluster user\nalice@uni.example alice\nbob@uni.example bob\n")
    return path


@pytest.fixture(scope="module")
def refresh_hub(hub_factory, short_provider, usernames_map):
    """Refreshes auth on every request older than 1 s; maps logins with a map file; asks
    sacctmgr for accounts (slurmdbd's associations, make-site.sh)."""
    config = LOGIN_CONFIG.format(issuer=short_provider.url, message=NO_ACCOUNT_MESSAGE)
    config += f"""
c.ClusterOAuthenticator.username_map_file = {str(usernames_map)!r}
c.ClusterOAuthenticator.slurm_accounts = "sacctmgr"
c.Authenticator.auth_refresh_age = 1
c.JupyterHub.redirect_to_server = False
"""
    return hub_factory(extra_config=config, env={"JUPYTERHUB_CRYPT_KEY": CRYPT_KEY})


def auth_state(hub, name: str) -> dict:
    return user_model(hub, name)["auth_state"]


def test_login_asks_slurm_accounting_through_the_spawners_driver(refresh_hub, page):
    """slurm_accounts = "sacctmgr" goes through the driver (its debug log of the command),
    not a sacctmgr of the authenticator's own, and reads slurmdbd's associations."""
    hub = refresh_hub
    mark = log_mark(hub)
    assert login(page, hub, "bob").status == 302
    page.wait_for_url(f"{hub.url}/hub/home")
    assert auth_state(hub, "bob")["hpcspawner"]["accounts"] == ["chemistry"]
    assert "Slurm accounts of bob are not known" not in log_since(hub, mark)
    whole_log = log_since(hub, 0)
    assert re.search(r"Running \[[^\]]*sacctmgr'[^\]]*'user=", whole_log), whole_log[-3000:]


def test_expired_access_token_is_refreshed(refresh_hub, short_provider, page):
    hub = refresh_hub
    mark = log_mark(hub)
    assert login(page, hub, "alice").status == 302
    page.wait_for_url(f"{hub.url}/hub/home")
    before = auth_state(hub, "alice")
    assert before["hpcspawner"]["username"] == "alice"
    # alice's associations in slurmdbd (make-site.sh)
    assert sorted(before["hpcspawner"]["accounts"]) == ["chemistry", "physics"]
    assert short_provider.userinfo(before["access_token"]).status_code == 200

    time.sleep(max(0.0, before["expires_at"] - time.time()) + 0.5)
    assert short_provider.userinfo(before["access_token"]).status_code == 401, "not expired"

    response = page.goto(f"{hub.url}/hub/home")
    assert response.status == 200
    assert urlsplit(page.url).path == "/hub/home", "the session must survive the expiry"
    after = auth_state(hub, "alice")
    assert after["access_token"] != before["access_token"]
    assert after["expires_at"] > before["expires_at"]
    assert after["refresh_token"]
    info = short_provider.userinfo(after["access_token"])
    assert info.status_code == 200 and info.json()["eppn"] == "Alice@uni.example"
    assert "Refreshing the expired access token of alice" in log_since(hub, mark)


def test_revoked_refresh_token_requires_a_new_login(refresh_hub, short_provider, page):
    hub = refresh_hub
    mark = log_mark(hub)
    assert login(page, hub, "bob").status == 302
    page.wait_for_url(f"{hub.url}/hub/home")
    short_provider.revoke_tokens("u-bob")
    time.sleep(TOKEN_MAX_AGE + 0.5)
    page.goto(f"{hub.url}/hub/home")
    assert urlsplit(page.url).path == "/hub/login"
    assert "Refreshing the access token of bob failed" in log_since(hub, mark)


@pytest.mark.parametrize(
    ("change", "expected_log"),
    [
        pytest.param(
            {"eppn": "bob@uni.example"}, "the login now maps to bob", id="now-maps-to-another-user"
        ),
        pytest.param({"groups": ["visitors"]}, "no longer allowed", id="left-the-allowed-group"),
        pytest.param(
            {"eppn": "mallory@uni.example"},
            "login of mallory@uni.example (sub u-alice) refused (unmapped)",
            id="unmapped",
        ),
    ],
)
def test_session_ends_when_the_provider_changes_its_mind(
    refresh_hub, short_provider, page, change, expected_log
):
    hub = refresh_hub
    mark = log_mark(hub)
    assert login(page, hub, "alice").status == 302
    page.wait_for_url(f"{hub.url}/hub/home")
    try:
        short_provider.set_claims({**USERS["alice"], **change})
        time.sleep(1.2)  # auth_refresh_age
        page.goto(f"{hub.url}/hub/home")
        assert urlsplit(page.url).path == "/hub/login"
        assert expected_log in log_since(hub, mark)
    finally:
        short_provider.set_claims(USERS["alice"])
