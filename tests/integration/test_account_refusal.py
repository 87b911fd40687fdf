"""System and service accounts get no server, whatever the login or the authenticator says.

Issue 10, findings 2-4, on the real parts: the OpenID Connect provider on loopback
(``scripts/oidc_provider.py``), a real hub + proxy over HTTPS, the real local Slurm
cluster and this Debian host's real accounts (``getent passwd``): ``slurm`` (uid 64030,
Slurm's ``SlurmUser``, a Slurm super-user), ``munge`` (uid 102), ``root`` and ``daemon``
(uid 1), next to the test users ``alice`` and ``bob``.

- Logins whose ``eppn`` maps to those accounts, an unscoped ``eppn`` while
  ``username_strip_domains`` is set, and U+212A KELVIN SIGN + ``arl`` get the "No
  cluster account" page (403), with the refusal's reason on the page and in the log,
  and no hub user is created.
- A login whose ``eppn`` was renamed to another person's cannot take over that
  person's account: the account stays pinned to the provider identity (``sub``) that
  first used it.
- A hub with another authenticator (JupyterHub's DummyAuthenticator, which lets
  anyone in under any name) still never runs anything as those accounts: the spawn
  fails with a clear message, no job is submitted, and no command runs as the user
  (a ``runuser`` shim on the hub's PATH records every command run as a user).
"""

from __future__ import annotations

import pwd
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from .browser import ARTIFACTS
from .hub import run
from .provider import Provider, start_provider

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

#: A fixed key: auth_state is encrypted (it holds the pinned ``sub``).
CRYPT_KEY = "fedcba9876543210" * 4

USERS = {
    "alice": {"sub": "u-alice", "eppn": "alice@uni.example", "groups": ["hpc-users"]},
    "slurm": {"sub": "u-slurm", "eppn": "slurm@uni.example", "groups": ["hpc-users"]},
    "munge": {"sub": "u-munge", "eppn": "munge@uni.example", "groups": ["hpc-users"]},
    "root": {"sub": "u-root", "eppn": "root@uni.example", "groups": ["hpc-users"]},
    "daemon": {"sub": "u-daemon", "eppn": "daemon@uni.example", "groups": ["hpc-users"]},
    # no scope: it could come from any organisation behind the provider
    "unscoped": {"sub": "u-unscoped", "eppn": "alice", "groups": ["hpc-users"]},
    # "\u212aarl".lower() == "karl": folding before the ASCII check would make it karl
    "kelvin": {"sub": "u-kelvin", "eppn": "\u212aarl@uni.example", "groups": ["hpc-users"]},
    # someone else at the provider, whose eppn is later renamed to alice's
    "thief": {"sub": "u-thief", "eppn": "thief@uni.example", "groups": ["hpc-users"]},
}

CONFIG = """
c.JupyterHub.authenticator_class = "hpc"
c.Authenticator.allow_all = False
c.ClusterOAuthenticator.issuer = {issuer!r}
c.ClusterOAuthenticator.client_id = "hpcspawner-tests"
c.ClusterOAuthenticator.client_secret = "not-a-secret"
c.ClusterOAuthenticator.oauth_callback_url = f"https://127.0.0.1:{{c.JupyterHub.port}}/hub/oauth_callback"
c.ClusterOAuthenticator.username_claim = "eppn"
c.ClusterOAuthenticator.username_strip_domains = ["uni.example"]
c.ClusterOAuthenticator.manage_groups = True
c.ClusterOAuthenticator.allowed_groups = {{"hpc-users"}}
c.ClusterOAuthenticator.no_account_url = "https://hpc.uni.example/apply"
"""

#: What the page says for a login that maps to an account no person may use.
SYSTEM_ACCOUNT = "The cluster account for {identity} is a system or service account"
#: The admin's message (the default) for a login that maps to no account at all.
NO_ACCOUNT = "There is no cluster account for {identity}."


# ---------------------------------------------------------------- the provider, the hubs


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    provider: Provider = start_provider(tmp_path_factory.mktemp("oidc"), USERS.values())
    yield provider
    provider.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(provider.log_path, ARTIFACTS / "oidc-provider-account-refusal.log")


@pytest.fixture(scope="module")
def login_hub(hub_factory, provider):
    """ClusterOAuthenticator with its default account rules (min_uid 1000, max_uid 60000,
    refused names, nologin shells, slurm.conf's SlurmUser)."""
    config = CONFIG.format(issuer=provider.url)
    return hub_factory(extra_config=config, env={"JUPYTERHUB_CRYPT_KEY": CRYPT_KEY})


@pytest.fixture(scope="module")
def runuser_log(tmp_path_factory) -> tuple[Path, Path]:
    """A ``runuser`` that records its arguments, then runs the real one: (directory, log)."""
    directory = tmp_path_factory.mktemp("shims")
    directory.chmod(0o755)
    log = directory / "runuser.log"
    log.touch()
    real = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert real, "runuser is missing (util-linux)"
    shim = directory / "runuser"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return directory, log


@pytest.fixture(scope="module")
def dummy_hub(hub_factory, runuser_log):
    """JupyterHub's DummyAuthenticator (the test hub's default): any name logs in."""
    directory, _ = runuser_log
    return hub_factory(path_prepend=[directory])


@pytest.fixture
def context(browser):
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(30_000)
    yield context
    context.close()


def login(context, hub, sub: str):
    """Sign in at the provider as ``sub``; return (the hub's answer to the callback, page)."""
    page = context.new_page()
    page.goto(f"{hub.url}/hub/oauth_login?next={quote('/hub/home')}")
    page.wait_for_selector("input[name=sub]")
    with page.expect_response(lambda r: "/hub/oauth_callback" in r.url) as callback:
        page.click(f"button[name=sub][value={sub}]")
    page.wait_for_load_state()
    return callback.value, page


def user_model(hub, name: str) -> dict | None:
    r = hub.api("GET", f"/users/{name}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()


def log_mark(hub) -> int:
    return hub.log_path.stat().st_size


def log_since(hub, mark: int) -> str:
    with open(hub.log_path, "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


def assert_no_cluster_account_page(page, response, reason: str, message: str) -> None:
    assert response.status == 403, response.status
    assert page.locator("h1").inner_text().strip() == "No cluster account"
    paragraph = page.locator("#no-cluster-account-message")
    assert paragraph.get_attribute("data-reason") == reason
    text = paragraph.inner_text()
    assert text.startswith(message), text
    assert "Traceback" not in page.content()


# ---------------------------------------------------------------- refused logins


@pytest.mark.parametrize(
    ("user", "reason", "message"),
    [
        # Debian's Slurm: uid 64030, above min_uid; Slurm's SlurmUser (a Slurm super-user)
        pytest.param(
            "slurm",
            "service-account",
            SYSTEM_ACCOUNT.format(identity="slurm@uni.example"),
            id="slurm",
        ),
        pytest.param(
            "munge",
            "service-account",
            SYSTEM_ACCOUNT.format(identity="munge@uni.example"),
            id="munge",
        ),
        pytest.param(
            "root",
            "reserved-username",
            SYSTEM_ACCOUNT.format(identity="root@uni.example"),
            id="root",
        ),
        pytest.param(
            "daemon",
            "system-account",
            SYSTEM_ACCOUNT.format(identity="daemon@uni.example"),
            id="uid-below-1000",
        ),
        # "alice" exists: without the scope check this login would be alice
        pytest.param(
            "unscoped", "unscoped-claim", NO_ACCOUNT.format(identity="alice"), id="unscoped-eppn"
        ),
        pytest.param(
            "kelvin",
            "non-ascii-claim",
            NO_ACCOUNT.format(identity="\u212aarl@uni.example"),
            id="kelvin-sign",
        ),
    ],
)
def test_login_to_a_system_account_gets_the_no_cluster_account_page(
    login_hub, context, user, reason, message
):
    hub = login_hub
    if user in ("slurm", "munge", "root", "daemon"):
        pwd.getpwnam(user)  # the real account is there: the refusal is the rules', not NSS's
    mark = log_mark(hub)
    response, page = login(context, hub, USERS[user]["sub"])
    assert_no_cluster_account_page(page, response, reason, message)
    log = log_since(hub, mark)
    assert f"(sub {USERS[user]['sub']}) refused ({reason})" in log, log
    # no hub user from the refused login under the name it would have mapped to (alice
    # may exist from her own login: then she is still pinned to her own sub)
    mapped = {"unscoped": "alice", "kelvin": "karl"}.get(user, user)
    model = user_model(hub, mapped)
    assert model is None or model["auth_state"]["hpcspawner"]["sub"] == "u-alice", model


def test_a_renamed_claim_cannot_take_over_a_pinned_account(login_hub, provider, browser):
    hub = login_hub
    first = browser.new_context(ignore_https_errors=True)
    try:
        response, _ = login(first, hub, "u-alice")
        assert response.status == 302, response.status
    finally:
        first.close()
    pinned = user_model(hub, "alice")["auth_state"]["hpcspawner"]
    assert (pinned["iss"], pinned["sub"]) == (provider.url, "u-alice")

    # someone else at the provider gets alice's eppn (a rename, a reused address)
    provider.set_claims({**USERS["thief"], "eppn": "alice@uni.example"})
    second = browser.new_context(ignore_https_errors=True)
    try:
        mark = log_mark(hub)
        response, page = login(second, hub, "u-thief")
        assert_no_cluster_account_page(
            page,
            response,
            "identity-changed",
            "The cluster account for alice@uni.example belongs to another identity",
        )
        log = log_since(hub, mark)
        assert "(sub u-thief) refused (identity-changed)" in log, log
        assert "delete the user 'alice'" in log, log
    finally:
        second.close()
        provider.set_claims(USERS["thief"])
    # the account is still alice's
    after = user_model(hub, "alice")["auth_state"]["hpcspawner"]
    assert after["sub"] == "u-alice"


# ---------------------------------------------------------------- another authenticator


def jobs_of(user: str) -> list[str]:
    result = run(["squeue", "--noheader", "--states=all", f"--user={user}", "--format=%i"])
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def spawn_failure(hub, name: str) -> str:
    """Ask for ``name``'s server; return the failure message (the API's or the progress')."""
    r = hub.spawn(name)
    if r.status_code in (201, 202):  # slower than slow_spawn_timeout: the progress says it
        events = hub.progress_events(name, timeout=60)
        assert events and events[-1].get("failed"), events
        return events[-1]["message"]
    assert r.status_code == 403, (r.status_code, r.text)
    return r.json()["message"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("slurm", "service-account", id="slurm"),
        pytest.param("munge", "service-account", id="munge"),
        pytest.param("root", "service-account", id="root"),
        pytest.param("daemon", "system-account", id="uid-below-1000"),
    ],
)
def test_spawner_refuses_a_system_account_with_another_authenticator(
    dummy_hub, runuser_log, name, reason
):
    hub = dummy_hub
    _, shim_log = runuser_log
    hub.create_user(name)
    jobs_before = jobs_of(name)
    mark = log_mark(hub)
    message = spawn_failure(hub, name)
    assert message.startswith(
        f"This hub cannot start servers for the account '{name}': "
        "it is a system or service account."
    ), message
    assert hub.server_model(name) is None
    assert jobs_of(name) == jobs_before, "a job was submitted"
    as_user = [line for line in shim_log.read_text().splitlines() if f"-u {name} " in line]
    assert as_user == [], f"commands ran as {name}: {as_user}"
    log = log_since(hub, mark)
    assert f"refused to start servers for {name} ({reason})" in log, log


def test_the_shim_sees_what_runs_as_a_user(dummy_hub, runuser_log):
    """The control for the test above: a good user's spawn goes through the shim."""
    hub = dummy_hub
    _, shim_log = runuser_log
    hub.create_user("alice")
    r = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", timeout=120)  # its job was submitted (and its server runs)
    sbatch = [
        line
        for line in shim_log.read_text().splitlines()
        if line.startswith("-u alice -- ") and "sbatch" in line
    ]
    assert sbatch, shim_log.read_text()
    hub.stop_server("alice")
