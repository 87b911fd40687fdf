"""Fuzz campaign: hostile input against a real hub on the local Slurm cluster.

Four kinds of generated input (seeded, reproducible), each through the real path:

- ``user_options`` bodies: ``POST /hub/api/users/<name>/servers/<server>``;
- spawn-form posts: ``POST /hub/spawn/<name>/<server>`` from a logged-in session,
  with the hub's ``_xsrf`` cookie;
- port-callback bodies: ``POST /hub/api/batchspawner`` with a running server's
  own token;
- OIDC claim sets: mostly through ``ClusterOAuthenticator.cluster_account``
  in-process, and a sample through real logins at the loopback provider
  (``scripts/oidc_provider.py``), driven with plain HTTP requests.

Four counts must be zero, each judged by an oracle that does not use the code
under test:

- server errors: any 5xx answer;
- jobs outside policy: every job created is read back with ``scontrol show
  job`` and checked against the limits written in this file;
- injected script lines: every job's script (``scontrol write batch_script``)
  must equal the template rendered for the validated request; lines the template
  does not make are counted;
- mappings to a refused account: every login that maps must land on an account
  with ``1000 <= uid < 60000``, a login shell, and not ``slurm``/``munge``/``root``
  (read from the user database).

Jobs are submitted held (``--hold`` through ``c.SlurmSpawner.extra_sbatch_options``)
and stopped through the API right after the check. The campaign stops exactly
what it started (hub, proxy and provider by pid/process group; its jobs by the
hub's tag) and removes the files it made in the users' homes. Run as root on the
cluster's submit host (it is a real hub submitting as other users)::

    sudo .venv/jh6/bin/python benchmarks/fuzz_campaign.py --count 10000 --seed 1 \\
        --out benchmarks/results/fuzz_campaign.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import requests

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hpcspawner.job import batchscript, walltime  # noqa: E402
from hpcspawner.resources.options import (  # noqa: E402
    OPTION_FIELDS,
    OptionsError,
    Policy,
    check_defaults,
    environments_from_config,
    partition_policies,
    profiles_from_config,
    validate_options,
)
from tests.integration.hub import (  # noqa: E402
    Hub,
    free_port,
    home_entries,
    job_environ,
    remove_new_entries,
    run,
)

KINDS = ("user_options", "spawn_form", "callback", "claims")
#: share of --count per kind
SHARES = {"user_options": 0.35, "spawn_form": 0.25, "callback": 0.2, "claims": 0.2}
CRYPT_KEY = "0123456789abcdef" * 4
EXAMPLES_KEPT = 20

# ---------------------------------------------------------------- the campaign hub's policy

#: The admin's policy, written once: the hub's config and the oracles both read it.
PARTITIONS = {
    "debug": {"max_cpus": 2, "max_memory": "1G", "max_runtime": "0:30:00"},
    "compute": {"max_cpus": 1, "max_memory": "1G", "max_runtime": "0:30:00"},
}
ENVIRONMENTS = {"plain": {"description": "nothing extra"}}
PROFILES = {"tiny": {"description": "tiny", "options": {"cpus": 1, "memory": "512M"}}}
DEFAULTS = {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:20:00"}
#: alice's default account on the test site (scripts/cluster/make-site.sh); she is in
#: chemistry too, which Slurm would take and the admin's list does not
ALLOWED_ACCOUNTS = ["physics"]
LAUNCHER = ["hpcspawner-singleuser"]
CMD = ["jupyterhub-singleuser"]
#: the hard limits the policy oracle checks, independently of hpcspawner's parsers
LIMITS = {"debug": {"cpus": 2}, "compute": {"cpus": 1}}
LIMIT_MEMORY_MB = 1024
LIMIT_MINUTES = 30

PROVIDER_USERS = [
    {"sub": "u-alice", "eppn": "alice@uni.example", "groups": ["hpc-users"]},
    {"sub": "u-bob", "eppn": "bob@uni.example", "groups": ["hpc-users"]},
]


def extra_config(issuer: str) -> str:
    """The campaign hub's configuration (on top of tests/integration/hub.py's)."""
    return f"""
c.JupyterHub.authenticator_class = "hpc"
c.Authenticator.allow_all = False
c.ClusterOAuthenticator.issuer = {issuer!r}
c.ClusterOAuthenticator.client_id = "hpcspawner-fuzz"
c.ClusterOAuthenticator.client_secret = "not-a-secret"
c.ClusterOAuthenticator.oauth_callback_url = (
    f"https://127.0.0.1:{{c.JupyterHub.port}}/hub/oauth_callback"
)
c.ClusterOAuthenticator.username_claim = "eppn"
c.ClusterOAuthenticator.username_strip_domains = ["uni.example"]
c.ClusterOAuthenticator.manage_groups = True
c.ClusterOAuthenticator.allowed_groups = {{"hpc-users"}}
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0.3}}
c.SlurmSpawner.extra_sbatch_options = ["--hold"]
c.SlurmSpawner.partitions = {PARTITIONS!r}
c.SlurmSpawner.environments = {ENVIRONMENTS!r}
c.SlurmSpawner.profiles = {PROFILES!r}
c.SlurmSpawner.allowed_accounts = {ALLOWED_ACCOUNTS!r}
c.SlurmSpawner.max_nodes = 1
c.SlurmSpawner.max_gpus = 0
c.SlurmSpawner.launcher_command = {LAUNCHER!r}
c.Spawner.cmd = {CMD!r}
"""


def campaign_policy() -> Policy:
    return Policy(
        partitions=partition_policies(PARTITIONS),
        accounts=tuple(ALLOWED_ACCOUNTS),
        environments=environments_from_config(ENVIRONMENTS),
        profiles=profiles_from_config(PROFILES),
        defaults=check_defaults(DEFAULTS),
        max_nodes=1,
        max_gpus=0,
    )


# ---------------------------------------------------------------- generators (seeded)

NASTY = [
    "$(id)", "`id`", "a;b", "x\ny", "debug\n#SBATCH --uid=0", "#SBATCH --wrap=id",
    "--wrap=id", "debug --qos=high", "../x", "\x00", "debug\r", "d\u0435bug",
    "\uff44\uff45\uff42\uff55\uff47", "debug\u200b", "\uff11", "\u0663", "512\u041c",
    "0:30:00\n", "1e3", "0x10", "1_000", " 1 ", "+1", "-1", "NaN", "Infinity",
    "\u212a", "\u01c5", "<script>x</script>", "${PATH}", "'\"", "\\", "%j", "{home}",
    "{{ 7*7 }}", "{% raw %}", "debug\x1b[31m", "\ud7ff", "1G\x00", "0:20:00;id",
    "physics\n#SBATCH --account=root", "chemistry", "pl\u0430in", "t\u0456ny", "\u0661\u0662M",
]  # fmt: skip
NUMBERS = [
    0, -1, 1, 2, 3, 2**31, 2**63, 10**30, -(10**30), 1.0, 1.5, 2.0, 1e308, -0.0,
    True, False, math.inf, -math.inf, math.nan,
]  # fmt: skip
CONTAINERS = [[1], ["debug"], {"a": 1}, {"$ne": 1}, [], {}, None, [[[[]]]], {"partition": "x"}]
VALID = {
    "partition": ["debug", "compute"],
    "account": ["physics"],
    "qos": [],
    "reservation": [],
    "environment": ["plain"],
    "profile": ["tiny"],
    "nodes": [1, "1"],
    "cpus": [1, 2, "1", "2"],
    "memory": ["512M", "1G", "256M", "1024M", 700, "900"],
    "gpus": [0, "0"],
    "runtime": ["0:20:00", "0:30:00", "10", 15, "00:05:00"],
}


def lookalike(rng: random.Random, text: str) -> str:
    twists = [
        lambda t: t + "\n#SBATCH --uid=0",
        lambda t: t.replace("e", "\u0435").replace("a", "\u0430"),
        lambda t: t.upper(),
        lambda t: " " + t + "\t",
        lambda t: t + "\u200b",
        lambda t: t + "$(touch /tmp/pwned)",
        lambda t: t * 500,
        lambda t: t + "\x00",
    ]
    return rng.choice(twists)(text)


def option_value(rng: random.Random, field: str, *, strings: bool = False):
    roll = rng.random()
    if roll < 0.6 and VALID.get(field):
        value = rng.choice(VALID[field])
    elif roll < 0.75:
        value = rng.choice(NASTY)
    elif roll < 0.82:
        value = lookalike(rng, str(rng.choice(VALID.get(field) or ["x"])))
    elif roll < 0.9:
        value = rng.choice(NUMBERS)
    elif roll < 0.95:
        value = "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(1, 40)))
    else:
        value = rng.choice(CONTAINERS)
    return str(value) if strings else value


def user_options_body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.04:
        return rng.choice([b"[]", b'"debug"', b"42", b"null", b"{", b"\xff\xfe", b"{]"])
    if roll < 0.05:
        return json.dumps({"partition": "debug", "pad": "x" * 200_000}).encode()
    fields = rng.sample(OPTION_FIELDS, rng.randrange(0, 5))
    body = {field: option_value(rng, field) for field in fields}
    if rng.random() < 0.08:
        body[rng.choice(NASTY + ["cmd", "env", "ip", "port", "__class__"])] = "x"
    return json.dumps(body).encode()  # NaN/Infinity as Python's json writes them


def form_fields(rng: random.Random) -> list[tuple[str, str]]:
    fields = rng.sample(OPTION_FIELDS, rng.randrange(0, 5))
    pairs = [(field, option_value(rng, field, strings=True)) for field in fields]
    if pairs and rng.random() < 0.1:  # a field twice: only the first counts
        pairs.append((pairs[0][0], rng.choice(NASTY)))
    if rng.random() < 0.08:
        pairs.append((rng.choice(NASTY + ["cmd", "_xsrf2"]), "x"))
    return pairs


def callback_body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if roll < 0.2:
        return b"{" * rng.randrange(1, 5000)
    if roll < 0.25:
        return json.dumps({"port": 1, "pad": "x" * rng.randrange(1100, 5000)}).encode()
    if roll < 0.55:
        port = rng.choice(NUMBERS + NASTY + CONTAINERS + [rng.randrange(-(2**40), 2**40)])
        return json.dumps({"port": port}).encode()
    body = {
        rng.choice(["port", "ip", "host", "url", "job_id", "user_options", "state", "x"]): (
            rng.choice(NUMBERS + NASTY + CONTAINERS + [rng.randrange(1, 65536)])
        )
        for _ in range(rng.randrange(0, 4))
    }
    return json.dumps(body).encode()


LOCAL_PARTS = [
    "alice", "bob", "carol", "cloudsdk", "slurm", "munge", "root", "nobody", "daemon",
    "systemd-network", "polkitd", "mallory", "ALICE", "Alice", "al\u0131ce", "\u212aaren",
    "cloudsd\u212a", "\u017flurm", "root\x00", "alice\n", " alice", "alice ", "bob/../root",
    "alice@uni.example", "m\u0075nge", "SLURM", "r\u00f6ot", "a" * 40, "_slurm", "-bob",
    "1000", "bob\u200b", "b\u043eb", "$(id)", "alice;id", "",
]  # fmt: skip
#: the host's accounts (sorted, so a seed makes the same inputs on the same host)
HOST_ACCOUNTS = sorted(entry.pw_name for entry in pwd.getpwall()) + ["ops", "db", "svc", "person"]
DOMAINS = [
    "@uni.example", "@UNI.EXAMPLE", "@elsewhere.example", "", "@uni.example.evil",
    "@uni\u2024example", "@uni.example\u200b", "@", "@@uni.example", "@uni.\u212aexample",
]  # fmt: skip


def claim_value(rng: random.Random):
    roll = rng.random()
    if roll < 0.1:  # a person's account, well scoped: what most real logins are
        return rng.choice(["alice", "bob", "carol"]) + "@uni.example"
    if roll < 0.5:  # every account on this host, service accounts included
        domain = rng.choice(["@uni.example", "@UNI.EXAMPLE", "@Uni.Example", ""])
        return rng.choice(HOST_ACCOUNTS) + domain
    if roll < 0.9:
        return rng.choice(LOCAL_PARTS) + rng.choice(DOMAINS)
    return rng.choice([42, ["alice"], {"a": 1}, None, True, "", "x" * 100_000, 1.5])


def claim_set(rng: random.Random) -> dict:
    claims = {"sub": f"u-{rng.randrange(10**9)}"}
    for claim in ("eppn", "preferred_username", "email"):
        if rng.random() < 0.8:
            claims[claim] = claim_value(rng)
    if rng.random() < 0.9:
        claims["groups"] = ["hpc-users"]
    return claims


# ---------------------------------------------------------------- oracles


def refused_account(name: str) -> str | None:
    """Why ``name`` is an account no login may map to (None: it is a person's account).

    Read from the user database, independently of hpcspawner's own checks."""
    if name in ("slurm", "munge", "root"):
        return f"{name} is a service account"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return f"there is no user {name!r}"
    if not 1000 <= entry.pw_uid < 60000:
        return f"{name} has uid {entry.pw_uid}"
    shells = set(Path("/etc/shells").read_text().split()) if Path("/etc/shells").exists() else ()
    if entry.pw_shell in ("", "/usr/sbin/nologin", "/sbin/nologin", "/bin/false") or (
        shells and entry.pw_shell not in shells
    ):
        return f"{name} has no login shell ({entry.pw_shell})"
    return None


def scontrol_job(job_id: str) -> dict[str, str]:
    out = run(["scontrol", "show", "job", "--oneliner", job_id]).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", out))


def minutes(limit: str) -> float:
    """``[D-]HH:MM:SS`` or ``MM:SS`` in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, mins, secs = parts
    return int(days or 0) * 1440 + hours * 60 + mins + secs / 60


def memory_mb(text: str) -> float:
    number, unit = float(text[:-1]), text[-1]
    return number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit]


def policy_violations(job: dict[str, str], user: str) -> list[str]:
    """What in Slurm's record of the job is outside the campaign's policy."""
    problems = []
    partition = job.get("Partition")
    if partition not in LIMITS:
        return [f"partition {partition!r}"]
    checks = [
        (job.get("UserId", "").split("(")[0] == user, f"user {job.get('UserId')}"),
        (int(job.get("NumCPUs", 0)) <= LIMITS[partition]["cpus"], f"cpus {job.get('NumCPUs')}"),
        (job.get("NumNodes") in ("1", "1-1"), f"nodes {job.get('NumNodes')}"),
        (memory_mb(job.get("MinMemoryNode", "0M")) <= LIMIT_MEMORY_MB, "memory"),
        (minutes(job.get("TimeLimit", "99:00:00")) <= LIMIT_MINUTES, "time"),
        (job.get("Account") in ("(null)", *ALLOWED_ACCOUNTS), f"account {job.get('Account')}"),
        (job.get("QOS") in ("(null)", "normal"), f"qos {job.get('QOS')}"),
        (job.get("Reservation", "(null)") == "(null)", "reservation"),
        ("gpu" not in job.get("TresPerNode", "") and "gres" not in job.get("TRES", ""), "gpus"),
        (job.get("Reason") == "JobHeldUser", f"not held: {job.get('Reason')}"),
    ]
    problems += [what for ok, what in checks if not ok]
    return problems


def expected_script(hub: Hub, user: str, server: str, spawn_id: str, options) -> str | None:
    """The script the template makes for the validated request (None: not valid)."""
    try:
        request = validate_options(options, campaign_policy())
    except OptionsError:
        return None
    home = pwd.getpwnam(user).pw_dir
    environment = campaign_policy().environments.get(request.environment)
    return batchscript.render(
        batchscript.default_template(),
        request=request,
        job_name=f"jupyter-{user}-{server}",
        comment=f"hpcspawner:{hub.job_tag}:{user}:{server}:{spawn_id}",
        workdir=home,
        output=f"{home}/.jupyterhub-slurm-%j.log",
        command=[*LAUNCHER, *CMD],
        prologue="",
        environment=environment,
        extra_directives=["--hold"],
        requeue=False,
        path=JOB_PATH,
        umask=batchscript.check_umask(batchscript.DEFAULT_UMASK),
        # the job's clock: save_before_end's default, through the local driver
        signal_lead=walltime.DEFAULT_SAVE_BEFORE_END,
    )


JOB_PATH = (
    os.environ.get("HPCSPAWNER_SINGLEUSER_VENV", "/opt/hpcspawner-dev/singleuser")
    + "/bin:/usr/local/bin:/usr/bin:/bin"
)


def injected_lines(actual: str, expected: str | None) -> list[str]:
    """Lines of ``actual`` the template does not make (all of them if nothing was valid)."""
    if expected is None:
        return actual.splitlines() or ["(a job for an invalid request)"]
    if actual == expected:
        return []
    made = Counter(expected.splitlines())
    extra = []
    for line in actual.splitlines():
        if made[line] > 0:
            made[line] -= 1
        else:
            extra.append(line)
    return extra or ["(same lines, different script)"]


# ---------------------------------------------------------------- the tally


class Tally:
    """Counts per kind, the four zeros, and a few examples of each problem (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inputs = Counter()
        self.outcomes = {kind: Counter() for kind in KINDS}
        self.zeros = Counter(
            {"server_errors": 0, "jobs_outside_policy": 0, "injected_lines": 0,
             "refused_mappings": 0}
        )  # fmt: skip
        self.jobs_checked = 0
        self.callback_target = ""
        self.stop_errors = 0
        self.campaign_errors = 0
        self.stop_with = "job"
        self.examples: dict[str, list] = {}

    def count(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.inputs[kind] += 1
            self.outcomes[kind][outcome] += 1

    def problem(self, zero: str, amount: int, example) -> None:
        with self.lock:
            self.zeros[zero] += amount
            kept = self.examples.setdefault(zero, [])
            if len(kept) < EXAMPLES_KEPT:
                kept.append(repr(example)[:400])

    def stop_error(self, example) -> None:
        with self.lock:
            self.stop_errors += 1
            kept = self.examples.setdefault("stop_errors", [])
            if len(kept) < EXAMPLES_KEPT:
                kept.append(repr(example)[:400])

    def campaign_error(self, example) -> None:
        with self.lock:
            self.campaign_errors += 1
            kept = self.examples.setdefault("campaign_errors", [])
            if len(kept) < EXAMPLES_KEPT:
                kept.append(repr(example)[:400])

    def job_checked(self) -> None:
        with self.lock:
            self.jobs_checked += 1


# ---------------------------------------------------------------- HTTP, one session per thread

_local = threading.local()


def session_for(hub: Hub, cookies=None) -> requests.Session:
    key = "form" if cookies is not None else "api"
    session = getattr(_local, key, None)
    if session is None:
        session = requests.Session()
        session.trust_env = False
        session.verify = hub.session.verify
        if cookies is not None:
            session.cookies.update(cookies)
        setattr(_local, key, session)
    return session


def api(hub: Hub, method: str, path: str, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    headers.setdefault("Authorization", f"token {hub.admin_token}")
    kwargs.setdefault("timeout", 60)
    url = f"{hub.url}/hub/api{path}"
    try:
        return session_for(hub).request(method, url, headers=headers, **kwargs)
    except requests.ConnectionError:
        if method != "GET":
            raise
        return session_for(hub).request(method, url, headers=headers, **kwargs)


def server_model(hub: Hub, user: str, server: str) -> dict | None:
    r = api(hub, "GET", f"/users/{user}")
    r.raise_for_status()
    return r.json().get("servers", {}).get(server)


def stop_server(hub: Hub, user: str, server: str, tally: Tally | None = None) -> None:
    """Stop a server through the API and wait until it is gone.

    JupyterHub's DELETE of a pending start cancels the start, waits 1 s, then
    stops; when the start's cleanup takes longer it answers 500 and the server
    stays listed. Those answers are counted (``stop_errors``); the campaign then
    ends the start the other way (see :func:`end_held_start`).
    """
    r = api(hub, "DELETE", f"/users/{user}/servers/{server}")
    if r.status_code >= 500:
        if tally is not None:
            tally.stop_error((user, server, r.status_code))
        end_held_start(hub, user, server)
    wait_gone(hub, user, server)


def end_held_start(hub: Hub, user: str, server: str) -> None:
    """End a held start by cancelling its job as root: the start fails (its job ended)
    and the hub cleans up as after any failed start."""
    model = server_model(hub, user, server)
    job_id = ((model or {}).get("state") or {}).get("job_id")
    if job_id:
        run(["scancel", job_id])
    wait_gone(hub, user, server)


def wait_gone(hub: Hub, user: str, server: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server_model(hub, user, server) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{user}/{server} still listed after {timeout} s")
        time.sleep(0.2)


def end_server(hub: Hub, tally: Tally, user: str, server: str) -> None:
    """End a checked server: through the API (``--stop-with api``) or by its job."""
    if tally.stop_with == "api":
        stop_server(hub, user, server, tally)
    else:
        end_held_start(hub, user, server)


# ---------------------------------------------------------------- spawns: REST and form


def check_created(hub: Hub, tally: Tally, kind: str, user: str, server: str, sent) -> str:
    """Check the job a spawn created (if it did), then stop the server."""
    deadline = time.monotonic() + 60
    while True:
        model = server_model(hub, user, server)
        if model is None:
            return "rejected-after-start"
        job_id = (model.get("state") or {}).get("job_id")
        if job_id:
            break
        if time.monotonic() > deadline:
            end_server(hub, tally, user, server)
            return "no-job-in-60s"
        time.sleep(0.2)
    try:
        options = model.get("user_options") or {}
        # an empty body starts the server with the options it had last time (JupyterHub)
        if kind == "user_options" and sent and options != sent:
            tally.problem("injected_lines", 1, ("stored options differ", sent, options))
        job = scontrol_job(job_id)
        outside = policy_violations(job, user)
        if outside:
            tally.problem("jobs_outside_policy", 1, (options, outside))
        script = run(["scontrol", "write", "batch_script", job_id, "-"]).stdout
        expected = expected_script(hub, user, server, model["state"].get("spawn_id"), options)
        extra = injected_lines(script, expected)
        if extra:
            tally.problem("injected_lines", len(extra), (options, extra[:5]))
        tally.job_checked()
    finally:
        end_server(hub, tally, user, server)
    return "job-checked"


def send(hub: Hub, user: str, server: str, post) -> requests.Response | None:
    """``post()``, sent again if the connection broke before an answer and no server
    was started; None when it broke but the server exists (the hub took the request)."""
    for attempt in (1, 2):
        try:
            return post()
        except requests.ConnectionError:
            if server_model(hub, user, server) is not None:
                return None
            if attempt == 2:
                raise
    return None


def post_user_options(hub: Hub, tally: Tally, worker: int, body: bytes) -> None:
    server = f"fz{worker}"
    path = f"/users/alice/servers/{server}"
    r = send(hub, "alice", server, lambda: api(hub, "POST", path, data=body))
    if r is not None and r.status_code >= 500:
        tally.problem("server_errors", 1, ("user_options", body[:200], r.status_code, r.text[:200]))
        outcome = f"http-{r.status_code}"
        if server_model(hub, "alice", server) is not None:
            end_server(hub, tally, "alice", server)
    elif r is None or r.status_code in (201, 202):
        try:
            sent = json.loads(body)
        except ValueError:
            sent = None
        outcome = check_created(hub, tally, "user_options", "alice", server, sent)
    else:
        outcome = "rejected" if r.status_code == 400 else f"http-{r.status_code}"
    tally.count("user_options", outcome)


def post_form(hub: Hub, tally: Tally, worker: int, pairs, cookies) -> None:
    server = f"ff{worker}"
    session = session_for(hub, cookies)
    data = [*pairs, ("_xsrf", session.cookies.get("_xsrf", ""))]
    url = f"{hub.url}/hub/spawn/alice/{server}"
    r = send(
        hub,
        "alice",
        server,
        lambda: session.post(url, data=data, timeout=60, allow_redirects=False),
    )
    status = r.status_code if r is not None else 0
    if r is not None and (status >= 500 or "Traceback" in r.text):
        tally.problem("server_errors", 1, ("form", pairs, status, r.text[-300:]))
    if r is not None and "<script>x</script>" in r.text:
        tally.count("spawn_form", "markup-echoed-unescaped")
    if server_model(hub, "alice", server) is None:
        outcome = "shown-again" if status < 500 else f"http-{status}"
    else:
        outcome = check_created(hub, tally, "spawn_form", "alice", server, None)
    tally.count("spawn_form", outcome)


def post_callback(hub: Hub, tally: Tally, token: str, body: bytes) -> None:
    headers = {"Authorization": f"token {token}"}
    try:
        r = api(hub, "POST", "/batchspawner", data=body, headers=headers)
    except requests.ConnectionError:  # a keep-alive connection the proxy had closed
        r = api(hub, "POST", "/batchspawner", data=body, headers=headers)
    if r.status_code >= 500:
        tally.problem("server_errors", 1, ("callback", body[:200], r.status_code, r.text[:200]))
    tally.count("callback", f"http-{r.status_code}")


# ---------------------------------------------------------------- claims


def make_authenticators(directory: Path, issuer: str) -> list:
    """The mapping configurations the in-process claim sets go through."""
    from traitlets.config import Config

    from hpcspawner.auth import ClusterOAuthenticator

    map_file = directory / "usernames.map"
    map_file.write_text(
        "alice@uni.example alice\nops@uni.example slurm\ndb@uni.example munge\n"
        "svc@uni.example polkitd\nperson@uni.example cloudsdk\n"
    )
    variants = [
        {"username_claim": "eppn", "username_strip_domains": ["uni.example"]},
        {"username_claim": "preferred_username"},
        {"username_claim": "eppn", "username_map_file": str(map_file)},
        {"username_claim": "email", "username_lowercase": False},
    ]
    authenticators = []
    for variant in variants:
        config = Config()
        settings = {"issuer": issuer, "client_id": "fuzz", "client_secret": "x", **variant}
        for key, value in settings.items():
            setattr(config.ClusterOAuthenticator, key, value)
        authenticators.append(ClusterOAuthenticator(config=config))
    return authenticators


async def map_claims(authenticators, claim_sets, tally: Tally) -> None:
    from hpcspawner.auth import NoClusterAccount

    for number, claims in enumerate(claim_sets):
        authenticator = authenticators[number % len(authenticators)]
        try:
            _, account = await authenticator.cluster_account(claims)
        except NoClusterAccount:
            tally.count("claims", "refused")
            continue
        except Exception as e:  # noqa: BLE001 - an unexpected error is a finding
            tally.problem("server_errors", 1, ("claims", claims, type(e).__name__, str(e)[:200]))
            tally.count("claims", "error")
            continue
        why = refused_account(account.username)
        if why:
            tally.problem("refused_mappings", 1, (claims, account.username, why))
        tally.count("claims", "mapped")


def oidc_login(hub: Hub, provider_url: str, sub: str) -> requests.Response:
    """Sign in at the provider as ``sub`` with plain HTTP; the hub's answer to the callback."""
    session = requests.Session()
    session.trust_env = False
    session.verify = hub.session.verify
    r = session.get(f"{hub.url}/hub/oauth_login?next=/hub/home", allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    authorize = r.headers["Location"]
    assert authorize.startswith(provider_url), authorize
    r = session.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    callback = urljoin(hub.url, r.headers["Location"])
    r = session.get(callback, allow_redirects=False, timeout=60)
    r.session = session
    return r


def real_logins(hub: Hub, provider_url: str, claim_sets, tally: Tally) -> None:
    for number, claims in enumerate(claim_sets):
        sub = f"u-fz{number}"
        claims = {key: value for key, value in claims.items() if key != "sub"}
        r = requests.put(f"{provider_url}/users/{sub}", json=claims, timeout=30)
        r.raise_for_status()
        mark = hub.log_path.stat().st_size
        response = oidc_login(hub, provider_url, sub)
        if response.status_code >= 500:
            tally.problem("server_errors", 1, ("login", claims, response.status_code))
        if response.status_code != 302:
            tally.count("claims", f"login-{response.status_code}")
            continue
        with open(hub.log_path, "rb") as f:
            f.seek(mark)
            log = f.read().decode(errors="replace")
        found = re.search(rf"\(sub {re.escape(sub)}\) is cluster user (\S+)", log)
        if found is None:
            tally.problem("refused_mappings", 1, ("login mapped, no name in the log", claims))
        elif why := refused_account(found.group(1)):
            tally.problem("refused_mappings", 1, ("login", claims, found.group(1), why))
        tally.count("claims", "login-mapped")


# ---------------------------------------------------------------- what the campaign starts


class Provider:
    """The loopback OIDC provider, in its own process group."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            str(REPO / "scripts" / "oidc_provider.py"),
            "--port",
            str(self.port),
        ]
        for user in PROVIDER_USERS:
            argv += ["--user-claims", json.dumps(user)]
        self.log = open(directory / "oidc-provider.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the OIDC provider did not answer within 30 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def held_server(hub: Hub, user: str, server: str) -> dict:
    """Spawn ``user``'s ``server`` (held, like every job); its model once it has a job."""
    r = api(hub, "POST", f"/users/{user}/servers/{server}", json={"memory": "512M"})
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 60
    while True:
        model = server_model(hub, user, server) or {}
        if (model.get("state") or {}).get("job_id"):
            return model
        assert time.monotonic() < deadline, f"{user}/{server} has no job"
        time.sleep(0.1)


def callback_target(hub: Hub) -> tuple[str, str]:
    """The token of bob's server ``cb`` and whether it is "running" or "starting".

    Running: the job is released and the server reports its port. If it cannot
    start (e.g. a launcher older than the spawner in the jobs' environment),
    the server is started again and left held ("starting"), and its token is
    read (as root) from the 0600 file the hub wrote for the job.
    """
    model = held_server(hub, "bob", "cb")
    release = run(["scontrol", "release", model["state"]["job_id"]])
    assert release.returncode == 0, release.stderr
    try:
        hub.wait_ready("bob", "cb", timeout=90)
        server_env = job_environ("bob", "cb", require="JUPYTERHUB_API_TOKEN")
        return server_env["JUPYTERHUB_API_TOKEN"], "running"
    except AssertionError as e:
        print(f"bob/cb did not start; fuzzing the callback of a starting server: {e}"[:2000])
    if server_model(hub, "bob", "cb") is not None:
        stop_server(hub, "bob", "cb")
    model = held_server(hub, "bob", "cb")
    home = pwd.getpwnam("bob").pw_dir
    path = Path(f"{home}/.jupyterhub-tokens/cb/api-token-{model['state']['spawn_id']}")
    return path.read_text().strip(), "starting"


def route_target(hub: Hub, route: str) -> str | None:
    r = requests.get(
        f"http://127.0.0.1:{hub.proxy_api_port}/api/routes",
        headers={"Authorization": f"token {hub.proxy_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return (r.json().get(route) or {}).get("target")


# ---------------------------------------------------------------- the campaign


def generate(count: int, seed: int) -> dict[str, list]:
    """All inputs, made up front from one seeded generator (the same for any --workers)."""
    rng = random.Random(seed)
    sizes = {kind: int(count * share) for kind, share in SHARES.items()}
    sizes["user_options"] += count - sum(sizes.values())
    makers = {
        "user_options": user_options_body,
        "spawn_form": form_fields,
        "callback": callback_body,
        "claims": claim_set,
    }
    return {kind: [makers[kind](rng) for _ in range(sizes[kind])] for kind in KINDS}


def run_parallel(workers: int, items, action, tally: Tally) -> None:
    """``action(worker, item)`` for every item; worker w takes items w, w+workers, ..."""

    def work(worker):
        for item in items[worker::workers]:
            try:
                action(worker, item)
            except (requests.RequestException, RuntimeError, AssertionError, KeyError) as e:
                # the campaign's own trouble (a timeout, a server that did not go away):
                # counted and shown, never a silent pass
                tally.campaign_error((item if isinstance(item, list) else item[:200], e))

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work, w) for w in range(workers)]:
            future.result()


def campaign(hub: Hub, provider: Provider, inputs, args, tally: Tally, directory: Path) -> dict:
    """Drive every input through its path; return timings per kind."""
    timings = {}
    for user in ("alice", "bob"):
        assert oidc_login(hub, provider.url, f"u-{user}").status_code == 302, user
    cookies = oidc_login(hub, provider.url, "u-alice").session.cookies
    token, tally.callback_target = callback_target(hub)
    target = route_target(hub, "/user/bob/cb")

    started = time.monotonic()
    run_parallel(
        args.workers,
        inputs["user_options"],
        lambda w, body: post_user_options(hub, tally, w, body),
        tally,
    )
    timings["user_options"] = time.monotonic() - started

    started = time.monotonic()
    run_parallel(
        args.workers,
        inputs["spawn_form"],
        lambda w, pairs: post_form(hub, tally, w, pairs, cookies),
        tally,
    )
    timings["spawn_form"] = time.monotonic() - started

    started = time.monotonic()
    run_parallel(
        args.workers,
        inputs["callback"],
        lambda w, body: post_callback(hub, tally, token, body),
        tally,
    )
    timings["callback"] = time.monotonic() - started
    if tally.callback_target == "running":
        if route_target(hub, "/user/bob/cb") != target:
            tally.problem("server_errors", 1, ("the callback fuzz moved bob's route", target))
        if not (server_model(hub, "bob", "cb") or {}).get("ready"):
            tally.problem("server_errors", 1, "the callback fuzz broke bob's running server")

    started = time.monotonic()
    claim_sets = inputs["claims"]
    logins = min(args.logins, len(claim_sets))
    authenticators = make_authenticators(directory, provider.url)
    asyncio.run(map_claims(authenticators, claim_sets[logins:], tally))
    real_logins(hub, provider.url, claim_sets[:logins], tally)
    timings["claims"] = time.monotonic() - started
    stop_server(hub, "bob", "cb")
    return timings


def run_campaign(args) -> dict:
    inputs = generate(args.count, args.seed)
    tally = Tally()
    tally.stop_with = args.stop_with
    directory = Path(tempfile.mkdtemp(prefix="fuzz-campaign-"))
    before = home_entries(["alice", "bob"])
    started = time.monotonic()
    provider = Provider(directory)
    hub = None
    try:
        hub = Hub(directory=directory, extra_config=extra_config(provider.url))
        hub.env = {"JUPYTERHUB_CRYPT_KEY": CRYPT_KEY}
        hub.start()
        timings = campaign(hub, provider, inputs, args, tally, directory)
    finally:
        left = []
        if hub is not None:
            left = [
                line.split("|")[0]
                for line in run(["squeue", "--noheader", "--format=%i|%k"]).stdout.splitlines()
                if f"hpcspawner:{hub.job_tag}:" in line
            ]
            hub.stop()
            if args.keep_log:
                shutil.copy(hub.log_path, args.keep_log)
        provider.stop()
        removed = remove_new_entries(before)
        shutil.rmtree(directory, ignore_errors=True)
    return report(args, tally, timings, time.monotonic() - started, left, removed)


def report(args, tally: Tally, timings, duration: float, left, removed) -> dict:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
            "python": platform.python_version(),
            "slurm": run(["sinfo", "--version"]).stdout.strip(),
        },
        "command": "benchmarks/fuzz_campaign.py "
        + " ".join(
            [
                "--count",
                str(args.count),
                "--seed",
                str(args.seed),
                "--workers",
                str(args.workers),
                "--logins",
                str(args.logins),
            ]
        ),  # fmt: skip
        "inputs": dict(tally.inputs),
        "total_inputs": sum(tally.inputs.values()),
        "outcomes": {kind: dict(c) for kind, c in tally.outcomes.items()},
        "jobs_checked": tally.jobs_checked,
        "callback_target": tally.callback_target,
        "stop_with": tally.stop_with,
        "stop_errors": tally.stop_errors,
        "campaign_errors": tally.campaign_errors,
        "zeros": dict(tally.zeros),
        "examples": tally.examples,
        "seconds": round(duration, 1),
        "seconds_per_kind": {kind: round(t, 1) for kind, t in timings.items()},
        "jobs_left_at_the_end": left,
        "files_removed_from_homes": removed,
    }


def table(result: dict) -> str:
    lines = [f"{'kind':<14}{'inputs':>8}  outcomes"]
    for kind in KINDS:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"][kind].items()))
        lines.append(f"{kind:<14}{result['inputs'].get(kind, 0):>8}  {outcomes}")
    lines.append(f"{'total':<14}{result['total_inputs']:>8}  jobs checked {result['jobs_checked']}")
    lines += [f"{name:<22}{value:>6}" for name, value in result["zeros"].items()]
    lines.append(f"{'stop_errors (teardown)':<22}{result['stop_errors']:>6}")
    lines.append(f"{'campaign_errors':<22}{result['campaign_errors']:>6}")
    lines.append(f"{result['seconds']} s on {result['machine']['host']} at {result['date']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="inputs in total")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fuzz_campaign.json")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients")
    parser.add_argument("--logins", type=int, default=50, help="claim sets sent as real logins")
    parser.add_argument(
        "--stop-with",
        choices=["job", "api"],
        default="job",
        help="end each checked start by cancelling its held job (default), or through "
        "JupyterHub's DELETE (counts its 5xx answers as stop_errors)",
    )
    parser.add_argument("--keep-log", type=Path, default=None, help="copy the hub's log here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: the hub submits jobs as other users (runuser)")
    result = run_campaign(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(table(result))
    return 0 if not any(result["zeros"].values()) and not result["campaign_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
