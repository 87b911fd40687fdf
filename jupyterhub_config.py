# jupyterhub_config.py: JupyterHub on a Slurm cluster with hpcspawner.
#
# This is the admin's starting point, and it runs the demo as is
# (`sudo ./scripts/demo.sh`). Lines marked DEMO are what a real site changes first.
# Every SlurmSpawner option is explained in docs/reference/configuration.md.
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------- the website (HTTPS)
# Users open https://<your hub>/ ; the proxy terminates TLS with this certificate.
c.JupyterHub.bind_url = os.environ.get("HPCSPAWNER_BIND_URL", "https://0.0.0.0:443")
c.JupyterHub.ssl_cert = os.environ.get("HPCSPAWNER_SSL_CERT", "/etc/jupyterhub/hub.crt")
c.JupyterHub.ssl_key = os.environ.get("HPCSPAWNER_SSL_KEY", "/etc/jupyterhub/hub.key")
# configurable-http-proxy from npm (`npm ci` in the repo installs it under node_modules/)
c.ConfigurableHTTPProxy.command = [
    os.environ.get("HPCSPAWNER_CHP", str(HERE / "node_modules/.bin/configurable-http-proxy"))
]

# ----------------------------------------------------------------- where the hub listens
# The jobs' servers call the hub's API from the compute nodes, so the hub must
# listen on an address they reach, and tell them that address.
c.JupyterHub.hub_ip = "0.0.0.0"  # noqa: S104 - compute nodes must reach it
c.JupyterHub.hub_port = 8081
# DEMO: 10.250.0.1 is the local cluster's bridge; use your hub's cluster-facing IP or name.
c.JupyterHub.hub_connect_ip = os.environ.get("HPCSPAWNER_HUB_CONNECT_IP", "10.250.0.1")

# Keep users' jobs running when the hub restarts (upgrades, crashes): the
# restarted hub finds them again through Slurm.
c.JupyterHub.cleanup_servers = False
# Several servers per user (e.g. a small one for editing, a GPU one for training).
c.JupyterHub.allow_named_servers = True

# ----------------------------------------------------------------- who logs in
# Users sign in with the site's OpenID Connect provider (Keycloak, CILogon,
# Entra ID, ...), and the login is mapped to their account on the cluster. The
# provider's side (registering the hub as a client) and every mapping option are
# in docs/howto/login.md. uni.example stands for your site throughout.
c.JupyterHub.authenticator_class = "hpc"  # hpcspawner.auth.ClusterOAuthenticator

# The provider, found through OpenID Connect discovery (<issuer>/.well-known/openid-configuration).
# DEMO: demo.sh sets HPCSPAWNER_OIDC_ISSUER to its provider on loopback,
# http://127.0.0.1:9400. A real site writes its issuer, e.g. a Keycloak realm:
#   c.ClusterOAuthenticator.issuer = "https://keycloak.uni.example/realms/hpc"
c.ClusterOAuthenticator.issuer = os.environ.get(
    "HPCSPAWNER_OIDC_ISSUER", "https://keycloak.uni.example/realms/hpc"
)
# The client registered for this hub at the provider. The secret stays out of
# this file: oauthenticator reads it from $OAUTH_CLIENT_SECRET in the hub's
# environment. DEMO: demo.sh registers the hub at its provider and sets both.
c.ClusterOAuthenticator.client_id = os.environ.get("OAUTH_CLIENT_ID", "jupyterhub")
# Where the provider sends users back: the hub's public https address, registered
# with the provider as the client's redirect URI.
# DEMO: demo.sh sets OAUTH_CALLBACK_URL to https://localhost[:DEMO_PORT]/hub/oauth_callback.
c.ClusterOAuthenticator.oauth_callback_url = os.environ.get(
    "OAUTH_CALLBACK_URL", "https://jupyter.uni.example/hub/oauth_callback"
)
c.ClusterOAuthenticator.login_service = "Uni Example SSO"  # the button: "Sign in with ..."

# Login -> cluster account: the eppn claim (alice@uni.example) minus the site's
# domain is the cluster user name (alice); a login from another domain, or one
# whose name has no account on this host (getent passwd), is refused with a page
# that says what to do. With Keycloak federating your LDAP, use instead
#   c.ClusterOAuthenticator.username_claim = "preferred_username"  # and no domains
c.ClusterOAuthenticator.username_claim = "eppn"
c.ClusterOAuthenticator.username_strip_domains = ["uni.example"]
c.ClusterOAuthenticator.no_account_message = (
    "No cluster account for {identity}. Apply at https://hpc.uni.example/apply"
)
c.ClusterOAuthenticator.no_account_url = "https://hpc.uni.example/apply"

# Accounts no login may use and no server may run as: root, slurm, munge (and
# slurm.conf's SlurmUser), uids below min_uid or from max_uid on, nologin/false
# shells. The spawner checks again, with its own copy of these settings, before it
# runs anything as the user. The defaults suit Debian; if your directory's uids
# are high, or your service accounts have other names, set both the same, e.g.:
#   for cls in (c.ClusterOAuthenticator, c.SlurmSpawner):
#       cls.min_uid = 1000
#       cls.max_uid = 2_000_000_000  # the default, 60000, is where Debian's package users start
#       cls.refused_usernames = ["root", "nobody", "slurm", "munge", "slurmrest", "slurmrestd"]
#       cls.refused_shells = ["nologin", "false"]  # [] if your users have nologin on purpose

# Who may log in, and who is an admin: groups from the provider's "groups"
# claim (the hub's groups mirror them). manage_groups must come first.
c.ClusterOAuthenticator.manage_groups = True
c.ClusterOAuthenticator.allowed_groups = {"hpc-users"}
c.ClusterOAuthenticator.admin_groups = {"hpc-admins"}

# The Slurm accounts a user may charge, looked up at login through the spawner's
# driver (c.LocalSlurmDriver.*; one cache with the spawn page, for
# c.SlurmSpawner.associations_ttl seconds); the spawn form offers only these.
# Without it the form still offers the user's associations, but the login
# does not record them. Unset, or None from a site without slurmdbd: any account.
c.ClusterOAuthenticator.slurm_accounts = "sacctmgr"

# auth_state (tokens, cluster identity, Slurm accounts) is stored encrypted: the
# hub needs JUPYTERHUB_CRYPT_KEY in its environment (`openssl rand -hex 32`).
# DEMO: demo.sh keeps one in .demo/crypt_key.
c.ClusterOAuthenticator.enable_auth_state = True  # the default; the spawner reads it

# ----------------------------------------------------------------- the spawner
c.JupyterHub.spawner_class = "hpcspawner.SlurmSpawner"

# How the hub runs sbatch/scancel as the user. runuser when the hub runs as
# root; with sudo, see docs/howto/install.md for the sudoers lines.
c.LocalSlurmDriver.user_command_prefix = ["runuser", "-u", "{username}", "--"]

# How the hub reaches Slurm. "local" (the default): Slurm's commands on the hub's
# own host, which then needs Slurm's clients, munge and slurm.conf. A hub off the
# cluster (a VM, Kubernetes) uses "ssh", the same commands on a login node
# (docs/howto/ssh-driver.md), or "rest", slurmrestd with JWTs (docs/howto/rest-driver.md).
# DEMO: `DRIVER=ssh sudo ./scripts/demo.sh` (or DRIVER=rest) starts the demo cluster's
# login node sshd on 127.0.0.1:2222 (scripts/cluster/start-sshd.sh) or slurmrestd on
# 127.0.0.1:6820 (scripts/cluster/start-slurmrestd.sh) and sets HPCSPAWNER_DEMO_DRIVER;
# the settings below are for those. A site writes its own, without the `if`, e.g.
#   c.SlurmSpawner.driver_class = "ssh"
#   c.SSHSlurmDriver.hosts = ["login1.cluster.example.org", "login2.cluster.example.org"]
#   c.SSHSlurmDriver.login_user = "jupyterhub"
#   c.SSHSlurmDriver.client_keys = ["/etc/jupyterhub/ssh/id_ed25519"]
#   c.SSHSlurmDriver.known_hosts = "/etc/jupyterhub/ssh/known_hosts"
DRIVER = os.environ.get("HPCSPAWNER_DEMO_DRIVER", "local")
if DRIVER == "ssh":
    c.SlurmSpawner.driver_class = "ssh"
    c.SSHSlurmDriver.hosts = ["127.0.0.1:2222"]
    # the service account whose sudoers lines let it run sbatch and scancel as the users
    c.SSHSlurmDriver.login_user = "hpcspawner-hub"
    c.SSHSlurmDriver.client_keys = ["/etc/hpcspawner-dev/ssh/id_ed25519"]
    c.SSHSlurmDriver.known_hosts = "/etc/hpcspawner-dev/ssh/known_hosts"
elif DRIVER == "rest":
    c.SlurmSpawner.driver_class = "rest"
    # slurmrestd cannot write the user's files: the API token travels in the job's
    # environment (token_delivery, below, says what that costs)
    c.SlurmSpawner.token_delivery = "environment"  # noqa: S105 - a delivery mode
    c.RESTSlurmDriver.url = "http://127.0.0.1:6820"  # loopback; else https or a unix socket
    c.RESTSlurmDriver.service_user = "slurm"  # SlurmUser: only its tokens may act for users
    # the hub mints short-lived tokens from the cluster's key (or: token_file, rotated by you)
    c.RESTSlurmDriver.jwt_key_file = "/var/lib/slurm/slurmctld/jwt_hs256.key"
elif DRIVER != "local":
    raise ValueError(f"HPCSPAWNER_DEMO_DRIVER={DRIVER!r}: use local, ssh or rest")

# The software the job runs: a venv on the compute nodes with jupyterhub,
# jupyterlab and hpcspawner (for hpcspawner-singleuser). JupyterHub >= 5.2 does
# not pass its own PATH to the job: say here where things are.
SINGLEUSER = os.environ.get("HPCSPAWNER_SINGLEUSER_VENV", "/opt/hpcspawner-dev/singleuser")
c.SlurmSpawner.job_path = f"{SINGLEUSER}/bin:/usr/local/bin:/usr/bin:/bin"

# Resources when the user asks for nothing; users change them on the spawn page
# or through the REST API's user_options.
c.SlurmSpawner.default_options = {
    "partition": "debug",
    "cpus": 1,
    "memory": "1G",
    "runtime": "1:00:00",
}

# Which partitions users may pick, and the limits the hub enforces before
# anything reaches sbatch (Slurm's own limits still apply on top).
c.SlurmSpawner.partitions = {
    "debug": {"description": "Quick tests on one node", "max_runtime": "1:00:00", "max_cpus": 2},
    "compute": {"description": "All nodes", "max_runtime": "8:00:00", "max_nodes": 3},
    "gpu": {"description": "Nodes with GPUs", "max_gpus": 2, "max_runtime": "4:00:00"},
    "remote": {"description": "The extra nodes n1 and n2", "max_nodes": 2},
}
c.SlurmSpawner.max_nodes = 3

# Named software environments users may choose (never a path they type).
ENVIRONMENTS = {
    "default": {"description": "The site's Jupyter environment"},
}
# An environment in a container image (docs/howto/containers.md). With Apptainer, the
# production choice, an image is a SIF file and container_exec keeps its default:
#   ENVIRONMENTS["rocky9"] = {"description": "Rocky 9", "container": "/apps/images/jupyter.sif"}
# DEMO: a Debian 12 root file system that the jobs run with rootless podman, built by
# scripts/build-job-image.sh (install-deps.sh runs it); offered where it was built.
JOB_IMAGE = "/opt/hpcspawner-dev/job-rootfs"
if os.path.isdir(JOB_IMAGE):
    ENVIRONMENTS["container"] = {"description": "Debian 12 container", "container": JOB_IMAGE}
    c.SlurmSpawner.container_exec = [
        "hpcspawner-podman",  # rootless podman in the job (installed with hpcspawner)
        "--env=PATH=/opt/jupyter/bin:/usr/local/bin:/usr/bin:/bin",  # the image's venv
    ]
c.SlurmSpawner.environments = ENVIRONMENTS

# Presets for the common cases.
c.SlurmSpawner.profiles = {
    "small": {
        "description": "1 CPU, 1 GB, 1 hour on debug",
        "options": {"partition": "debug", "cpus": 1, "memory": "1G", "runtime": "1:00:00"},
    },
    "medium": {
        "description": "2 CPUs, 4 GB, 4 hours on compute",
        "options": {"partition": "compute", "cpus": 2, "memory": "4G", "runtime": "4:00:00"},
    },
}

# Site set-up run in every job before the server starts (admin-written shell).
# c.SlurmSpawner.batch_script_prologue = "module load jupyter"

# Where the job writes its output; shown to users when a start fails.
c.SlurmSpawner.job_output = "{home}/.jupyterhub-slurm-%j.log"
# The job's umask: the output file and the server's files are the user's only.
# c.SlurmSpawner.job_umask = "077"  # the default; "027" lets the user's group read them

# How the server's API token reaches the job: "file" (the default) writes it to a
# 0600 file the launcher reads and deletes, so it stays out of Slurm's record of the
# job; "environment" (for batchspawner-singleuser) passes it in sbatch's
# environment, which slurmctld and slurmdbd (AccountingStoreFlags=job_env) keep.
# c.SlurmSpawner.token_delivery = "file"
# c.SlurmSpawner.token_dir = "{home}/.jupyterhub-tokens/{server}"

# Ports the server may use on the compute node (open them from the hub to the nodes).
c.SlurmSpawner.port_range = (40000, 49999)

# A stopped JupyterLab leaves Slurm (and frees its CPUs) ~0.1 s after scancel: the launcher
# skips the Python interpreter's final garbage collection (see the option's help).
# c.SlurmSpawner.fast_exit = True

# Give each hub sharing a cluster its own tag: jobs' comments say which hub owns them.
c.SlurmSpawner.job_tag = os.environ.get("HPCSPAWNER_JOB_TAG", "demo")

# One squeue for all servers every poll_interval seconds; starting servers are
# followed every startup_poll_interval seconds (again one squeue for all).
c.SlurmSpawner.poll_interval = 30
c.SlurmSpawner.startup_poll_interval = 1.0

# Queue wait + server start-up; a job that fails fails the spawn at once.
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 120

# ----------------------------------------------------------------- idle servers
# An idle server holds its allocation until its walltime ends. jupyterhub-idle-culler
# (pip install "hpcspawner[cull]"), run by the hub as a service, asks the hub every
# --cull-every seconds when each server was last active and stops those idle for --timeout
# seconds; stopping a server cancels its job. Activity is what the user does: a JupyterLab tab
# open and visible (it polls the server; a hidden tab does not), API calls, kernels' and
# terminals' output, and a kernel busy computing or a command running in a terminal, however
# long and silent (hpcspawner's server extension in the job reports them). The policy, and
# what users are told, are in docs/howto/culling.md.
CULL_TIMEOUT = 3600  # seconds; well above the 5 minutes in which servers report activity
c.JupyterHub.services = [
    {
        "name": "jupyterhub-idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            # this hub's API, on loopback (with a c.JupyterHub.base_url, insert it before hub/)
            f"--url=http://127.0.0.1:{c.JupyterHub.hub_port}/hub/api",
            f"--timeout={CULL_TIMEOUT}",
            "--cull-every=300",  # how often it looks; a server may stay up to this much longer
            # at most this many requests to the hub at once: each stop runs scancel as the user
            "--concurrency=5",
            # stop servers this old even when active (seconds; the walltime does this too):
            # "--max-age=86400",
            # a culled named server stays on the user's list, to start again; to delete it:
            # "--remove-named-servers=true",
            # booleans take =true: a bare --remove-named-servers is refused
        ],
    },
]
# The scopes the culler needs, and no more: find the servers, read their last activity, stop
# them. With --cull-users=true (delete idle users: not for users who log in with their
# cluster account) add "admin:users".
c.JupyterHub.load_roles = [
    {
        "name": "jupyterhub-idle-culler",
        "description": "Stop servers idle for longer than the culling policy allows",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["jupyterhub-idle-culler"],
    },
]
# The job's own safety net, for when the hub cannot reach the server (the hub is down, the
# network to the nodes is cut): a server with no activity, busy kernels included, for this many
# seconds stops by itself, and its job ends. Longer than CULL_TIMEOUT, so the hub culls first.
c.SlurmSpawner.job_idle_timeout = 2 * CULL_TIMEOUT
