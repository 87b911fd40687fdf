"""RESTSlurmDriver against a real HTTP server in-process (tests/unit/restserver.py) that
replays slurmrestd 22.05's recorded answers and records what it received: the headers
(user name, token), one reused connection, the submission's body, the errors
(timeout, refused connection, a rejected token, an unknown job), the version probe,
tokens minted and renewed (checked with hmac), a rotated token file, a unix socket and
TLS with a CA made here. Nothing secret in logs or exceptions.

Every request is bounded by the driver's own ``request_timeout`` (5 s here), the ones whose
bound is the point of a test also by ``asyncio.wait_for``."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path

import pytest
from restserver import RESTServer, answer, recorded, recorded_json, slurmrestd_routes
from test_jwt import verify

from hpcspawner.slurm import (
    ConnectionFailed,
    ConnectionLost,
    Liveness,
    SlurmError,
    SlurmTimeout,
    controller_unreachable,
    liveness_of,
    submission_uncertain,
)
from hpcspawner.slurm.rest import NO_FILES, OUTPUT_NOT_AVAILABLE, RESTSlurmDriver

GOLDEN = Path(__file__).parent / "golden"
KEY = os.urandom(32)
SECRET = "the-api-token-value-0123456789"
BASE = "/slurm/v0.0.38"


class Clock:
    def __init__(self, now: float = 1_800_000_000):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def servers():
    started: list[RESTServer] = []

    async def start(routes=None, *, unix: str | None = None, ssl_context=None) -> RESTServer:
        server = RESTServer(routes=slurmrestd_routes() if routes is None else routes)
        started.append(server)
        if unix:
            await server.start_unix(unix)
        else:
            await server.start_tcp(ssl_context)
        return server

    yield start
    for server in started:
        await asyncio.wait_for(server.stop(), 10)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "jwt_hs256.key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    return str(path)


@pytest.fixture
async def drivers(key_file):
    made: list[RESTSlurmDriver] = []

    def make(url: str, **config) -> RESTSlurmDriver:
        # the transport's tests pin the one listing; "each" and "auto" have their own below
        config.setdefault("job_query", "batch")
        config.setdefault("jwt_key_file", key_file)
        config.setdefault("request_timeout", 5.0)
        driver = RESTSlurmDriver(url=url, log=logging.getLogger("test.rest"), **config)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await asyncio.wait_for(driver.close(), 10)


def token_claims(request) -> dict:
    return verify(request.headers["x-slurm-user-token"], KEY)


async def test_query_reads_the_listing_once_and_maps_states(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    found = await asyncio.wait_for(driver.query(["313", "314", "999999"]), 10)
    assert sorted(found) == ["313", "314"]
    assert found["313"].running and found["314"].pending
    assert liveness_of("999999", found) is Liveness.GONE
    assert liveness_of("313", found) is Liveness.ALIVE
    paths = [(r.method, r.path) for r in server.requests]
    assert paths == [("GET", "/openapi/v3"), ("GET", f"{BASE}/jobs")]
    for request in server.requests:
        assert request.headers["x-slurm-user-name"] == "slurm"
        assert token_claims(request)["sun"] == "slurm"
    assert driver.calls == {"openapi": 1, "squeue": 1}


#: slurmctld unreachable behind slurmrestd: an error, not "no such job"
CONTROLLER_DOWN = answer(
    500,
    {
        "errors": [
            {
                "error_number": 1001,
                "error": "Unable to contact slurm controller (connect failure)",
                "source": "slurm_load_job",
            }
        ]
    },
)


def paths_of(server) -> list[str]:
    return [f"{r.method} {r.path.removeprefix(BASE)}" for r in server.requests]


async def test_per_job_lookups_read_one_job_each(servers, drivers):
    server = await servers()
    driver = drivers(server.url, job_query="each")
    found = await asyncio.wait_for(driver.query(["313", "999999"]), 10)
    assert list(found) == ["313"] and found["313"].running  # 999999: error 2017, gone
    assert liveness_of("999999", found) is Liveness.GONE
    listed = await asyncio.wait_for(drivers(server.url).query(["313"]), 10)
    assert found["313"] == listed["313"]  # the same record as the listing's
    assert sorted(paths_of(server)[1:3]) == ["GET /job/313", "GET /job/999999"]
    assert {r.headers["x-slurm-user-name"] for r in server.requests} == {"slurm"}
    assert driver.calls == {"openapi": 1, "squeue_job": 2}


@pytest.mark.parametrize(
    ("route", "words"),
    [
        pytest.param(CONTROLLER_DOWN, "Unable to contact slurm controller", id="controller-down"),
        pytest.param(recorded("bad_token"), "rejected the hub's token", id="token-rejected"),
        pytest.param(answer(200, {"errors": [], "jobs": "?"}), "no list of jobs", id="unreadable"),
    ],
)
async def test_one_failed_lookup_leaves_every_job_unknown(servers, drivers, route, words):
    routes = slurmrestd_routes() | {("GET", f"{BASE}/job/314"): route}
    driver = drivers((await servers(routes)).url, job_query="each")
    with pytest.raises((SlurmError, ValueError), match=words):
        await asyncio.wait_for(driver.query(["313", "314", "999999"]), 10)


async def test_a_slow_lookup_is_a_timeout(servers, drivers):
    async def hang(request):
        await asyncio.Event().wait()  # the server's stop() cancels it

    routes = slurmrestd_routes() | {("GET", f"{BASE}/job/314"): hang}
    driver = drivers((await servers(routes)).url, job_query="each", request_timeout=0.5)
    with pytest.raises(SlurmTimeout):
        await asyncio.wait_for(driver.query(["313", "314"]), 10)


def quiet_diag():
    body = recorded_json("diag_by_hand")
    body["statistics"] |= {"jobs_pending": 0, "jobs_running": 2}
    return answer(200, body)


@pytest.mark.parametrize(
    ("diag", "ids", "asked"),
    [
        pytest.param(None, ["313", "999999"], ["GET /job/313", "GET /job/999999"], id="busy"),
        pytest.param(quiet_diag(), ["313", "999999"], ["GET /jobs"], id="quiet"),
        pytest.param(
            CONTROLLER_DOWN, ["313", "999999"], ["GET /job/313", "GET /job/999999"], id="failed"
        ),
    ],
)
async def test_auto_chooses_by_the_queue_diag_reports(servers, drivers, diag, ids, asked):
    routes = slurmrestd_routes()
    if diag is not None:
        routes[("GET", f"{BASE}/diag")] = diag
    server = await servers(routes)
    driver = drivers(server.url, job_query="auto")
    assert list(await asyncio.wait_for(driver.query(ids), 10)) == ["313"]
    assert paths_of(server)[:2] == ["GET /openapi/v3", "GET /diag"]
    assert sorted(paths_of(server)[2:]) == asked
    await asyncio.wait_for(driver.query(ids), 10)
    assert paths_of(server).count("GET /diag") == 1  # not again within queue_size_interval


async def test_auto_without_diag_in_the_spec_does_not_ask_for_it(servers, drivers):
    spec = recorded_json("openapi_v3")
    spec["paths"] = [p for p in spec["paths"] if not p.endswith("/diag")]
    routes = slurmrestd_routes() | {("GET", "/openapi/v3"): answer(200, spec)}
    server = await servers(routes)
    driver = drivers(server.url, job_query="auto")
    assert list(await asyncio.wait_for(driver.query(["313"]), 10)) == ["313"]
    assert paths_of(server) == ["GET /openapi/v3", "GET /job/313"]


async def test_lookups_leave_the_listings_update_time_right(servers, drivers):
    """After per-job rounds the listing still asks since its own last full listing."""
    server = await servers()
    clock = Clock()
    driver = drivers(server.url, clock=clock, job_query="batch")
    await asyncio.wait_for(driver.query(["313"]), 10)
    listed_at = clock.now
    driver.job_query = "each"
    clock.now += 30
    await asyncio.wait_for(driver.query(["313"]), 10)
    driver.job_query = "batch"
    clock.now += 30
    await asyncio.wait_for(driver.query(["313"]), 10)
    assert server.requests[-1].query == {"update_time": [str(int(listed_at - 60))]}


async def test_many_requests_share_one_connection(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    for _ in range(20):
        await asyncio.wait_for(driver.query(["313"]), 10)
    await asyncio.wait_for(driver.cluster_snapshot(), 10)
    assert len(server.requests) == 1 + 20 + 2
    assert server.connections == 1
    assert {r.connection for r in server.requests} == {1}


@pytest.mark.parametrize(("keepalive", "connections"), [(300.0, 1), (0.1, 2)])
async def test_an_idle_connection_is_kept_for_keepalive_seconds(
    servers, drivers, keepalive, connections
):
    # the poller asks every poll_interval: the connection must outlive the pause
    server = await servers()
    driver = drivers(server.url, keepalive=keepalive)
    await asyncio.wait_for(driver.query(["313"]), 10)
    await asyncio.sleep(0.4)
    await asyncio.wait_for(driver.query(["313"]), 10)
    assert server.connections == connections


def test_a_negative_keepalive_is_refused():
    with pytest.raises(ValueError, match="keepalive = -1.0: 0 or more seconds"):
        RESTSlurmDriver(keepalive=-1)


async def test_submit_sends_the_job_object_in_the_users_name(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    script = (GOLDEN / "typical.sh").read_text()
    env = {"PATH": "/usr/bin:/bin", "JUPYTERHUB_API_TOKEN": SECRET}
    assert await asyncio.wait_for(driver.submit("alice", script, env), 10) == "313"
    request = server.requests[-1]
    assert (request.method, request.path) == ("POST", f"{BASE}/job/submit")
    assert request.headers["x-slurm-user-name"] == "alice"
    assert token_claims(request)["sun"] == "slurm"  # SlurmUser's token acts for alice
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["script"] == script
    assert body["job"]["environment"] == env
    assert body["job"]["comment"] == "hpcspawner:alice:-"
    assert body["job"]["current_working_directory"] == "/home/alice"


async def test_a_rejected_submission_carries_slurms_words(servers, drivers):
    routes = slurmrestd_routes() | {("POST", f"{BASE}/job/submit"): recorded("submit_rejected")}
    driver = drivers((await servers(routes)).url)
    with pytest.raises(SlurmError) as caught:
        await asyncio.wait_for(
            driver.submit("alice", (GOLDEN / "typical.sh").read_text(), {"A": "1"}), 10
        )
    assert caught.value.slurm_message == "Invalid partition name specified"
    assert not controller_unreachable(caught.value)


async def test_a_script_slurmrestd_cannot_take_is_refused_before_sending(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    with pytest.raises(SlurmError, match="--uid"):
        await driver.submit("alice", "#!/bin/sh\n#SBATCH --chdir=/t --uid=0\n", {"A": "1"})
    assert [r.method for r in server.requests] == ["GET"]  # the probe only


@pytest.mark.parametrize("username", ["root", "-x", "a/b", "", "x" * 40])
async def test_submit_and_cancel_refuse_names_no_server_runs_as(servers, drivers, username):
    server = await servers()
    driver = drivers(server.url)
    with pytest.raises(SlurmError, match="refusing"):
        await driver.submit(username, "#SBATCH --chdir=/t\n", {"A": "1"})
    with pytest.raises(SlurmError, match="refusing"):
        await driver.cancel(username, "313")
    assert server.requests == []


async def test_cancel_running_pending_and_unknown(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    for job_id in ("313", "314", "999999"):  # 999999: 500 with 2017, i.e. gone
        await asyncio.wait_for(driver.cancel("bob", job_id), 10)
    deletes = [r for r in server.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"{BASE}/job/{i}" for i in ("313", "314", "999999")]
    assert {r.headers["x-slurm-user-name"] for r in deletes} == {"bob"}


async def test_a_failed_cancel_is_an_error(servers, drivers):
    failure = answer(
        500,
        {
            "errors": [
                {
                    "error_number": 1800,
                    "error": "Unable to contact slurm controller (connect failure)",
                }
            ]
        },
    )
    routes = slurmrestd_routes() | {("DELETE", f"{BASE}/job/313"): failure}
    driver = drivers((await servers(routes)).url)
    with pytest.raises(SlurmError) as caught:
        await asyncio.wait_for(driver.cancel("alice", "313"), 10)
    assert controller_unreachable(caught.value)


async def test_a_rejected_token_is_named_and_never_shown(servers, drivers, caplog):
    routes = slurmrestd_routes() | {("GET", f"{BASE}/jobs"): recorded("bad_token")}
    server = await servers(routes)
    driver = drivers(server.url)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SlurmError) as caught:
        await asyncio.wait_for(driver.query(["313"]), 10)
    text = str(caught.value)
    assert "rejected the hub's token" in text and "jwt_key_file" in text
    token = server.requests[-1].headers["x-slurm-user-token"]
    assert token not in text and token not in caplog.text
    assert KEY.hex() not in caplog.text


async def test_a_slow_answer_is_a_timeout_and_unknown(servers, drivers):
    release = asyncio.Event()

    async def hang(request):
        await release.wait()  # never set: the server's stop() cancels it
        return recorded("jobs")

    routes = slurmrestd_routes() | {("GET", f"{BASE}/jobs"): hang}
    driver = drivers((await servers(routes)).url, request_timeout=0.5)
    with pytest.raises(SlurmTimeout) as caught:
        await asyncio.wait_for(driver.query(["313"]), 10)
    assert controller_unreachable(caught.value)
    assert submission_uncertain(caught.value)


async def test_a_refused_connection_is_unknown_and_nothing_was_sent(drivers):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    driver = drivers(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionFailed) as caught:
        await asyncio.wait_for(driver.query(["313"]), 10)
    assert controller_unreachable(caught.value)
    assert not submission_uncertain(caught.value)


async def test_the_probe_refuses_a_daemon_without_a_known_version(servers, drivers, caplog):
    spec = recorded_json("openapi_v3")
    spec["paths"] = [p for p in spec["paths"] if "v0.0.38" not in p]
    routes = slurmrestd_routes() | {("GET", "/openapi/v3"): answer(200, spec)}
    server = await servers(routes)
    driver = drivers(server.url)
    with pytest.raises(SlurmError) as caught:
        await asyncio.wait_for(driver.query(["313"]), 10)
    assert "offers v0.0.37" in str(caught.value) and "v0.0.38" in str(caught.value)
    assert "-s openapi/v0.0.38" in str(caught.value)
    assert [r.path for r in server.requests] == ["/openapi/v3"]


def test_an_unknown_configured_version_is_refused_at_once():
    with pytest.raises(ValueError, match="api_version"):
        RESTSlurmDriver(api_version="v0.0.99")
    with pytest.raises(ValueError, match="c.RESTSlurmDriver.url"):
        RESTSlurmDriver(url="ftp://x")


async def test_the_token_is_minted_short_and_renewed_before_it_ends(servers, drivers):
    server = await servers()
    clock = Clock()
    driver = drivers(server.url, clock=clock, token_lifetime=600)
    await driver.query(["313"])
    first = token_claims(server.requests[-1])
    assert first == {"iat": clock.now, "exp": clock.now + 600, "sun": "slurm"}
    clock.now += 440  # 160 s left: more than a quarter, the same token
    await driver.query(["313"])
    assert token_claims(server.requests[-1]) == first
    clock.now += 20  # 140 s left: renewed
    await driver.query(["313"])
    renewed = token_claims(server.requests[-1])
    assert renewed["iat"] == clock.now and renewed["exp"] == clock.now + 600


async def test_a_rotated_token_file_is_read_again(servers, drivers, tmp_path):
    server = await servers()
    path = tmp_path / "slurmrestd.jwt"
    path.write_text("SLURM_JWT=aaa.bbb.ccc\n")
    driver = drivers(server.url, jwt_key_file="", token_file=str(path))
    await driver.query(["313"])
    assert server.requests[-1].headers["x-slurm-user-token"] == "aaa.bbb.ccc"
    new = tmp_path / "new.jwt"
    new.write_text("ddd.eee.fff\n")
    os.replace(new, path)  # as an admin's rotation does: a new file
    await driver.query(["313"])
    assert server.requests[-1].headers["x-slurm-user-token"] == "ddd.eee.fff"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"jwt_key_file": ""}, "exactly one", id="neither"),
        pytest.param({"token_file": "/x"}, "exactly one", id="both"),
        pytest.param({"jwt_key_file": "/nonexistent/key"}, "cannot read", id="missing-key"),
        pytest.param(
            {"jwt_key_file": "", "token_file": "/nonexistent"}, "cannot read", id="missing-file"
        ),
    ],
)
async def test_a_token_misconfiguration_is_clear_at_first_use(servers, drivers, config, message):
    server = await servers()
    driver = drivers(server.url, **config)
    with pytest.raises(ConnectionFailed, match=message):
        await driver.query(["313"])
    assert server.requests == []


async def test_a_unix_socket(servers, drivers, tmp_path):
    path = str(tmp_path / "slurmrestd.socket")
    server = await servers(unix=path)
    for url in (f"unix:{path}", path):
        driver = drivers(url)
        assert sorted(await asyncio.wait_for(driver.query(["313", "314"]), 10)) == ["313", "314"]
    assert server.connections == 2  # one per driver


def make_tls(tmp_path):
    """A CA and a server certificate for 127.0.0.1, with the cryptography package."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slurmrestd")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return str(ca_file), context


async def test_tls_with_the_admins_ca_and_not_without_it(servers, drivers, tmp_path):
    ca_file, context = make_tls(tmp_path)
    server = await servers(ssl_context=context)
    assert server.url.startswith("https://")
    trusting = drivers(server.url, ca_file=ca_file)
    assert sorted(await asyncio.wait_for(trusting.query(["313"]), 10)) == ["313"]
    untrusting = drivers(server.url)
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await asyncio.wait_for(untrusting.query(["313"]), 10)
    assert len(server.requests) == 2  # the probe and the listing, over TLS, trusted only


async def test_the_cluster_snapshot_is_the_recorded_cluster(servers, drivers):
    driver = drivers((await servers()).url)
    snapshot = await asyncio.wait_for(driver.cluster_snapshot(), 10)
    assert list(snapshot.partitions) == ["debug", "compute", "gpu", "remote"]
    assert snapshot.partitions["gpu"].gpus_per_node == {"fake": 2}
    assert driver.calls == {"openapi": 1, "scontrol": 2}


async def test_find_jobs_by_comment(servers, drivers):
    driver = drivers((await servers()).url)
    comment = "hpcspawner:tb68b4287:alice:umask:7fdf396af38d"
    assert await asyncio.wait_for(driver.find_jobs("alice", comment), 10) == ["310"]
    assert await driver.find_jobs("bob", comment) == []


async def test_associations_none_without_slurmdbd_and_read_with_it(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    assert await asyncio.wait_for(driver.user_associations("alice"), 10) is None
    with pytest.raises(ValueError):
        await driver.user_associations("alice,bob")
    spec = recorded_json("openapi_v3")
    spec["paths"].append("/slurmdb/v0.0.38/associations/")
    assoc = "/slurmdb/v0.0.38/associations"
    routes = slurmrestd_routes() | {
        ("GET", "/openapi/v3"): answer(200, spec),
        ("GET", assoc): recorded_json_answer("associations_from_schema"),
    }
    server = await servers(routes)
    driver = drivers(server.url)
    associations = await asyncio.wait_for(driver.user_associations("alice"), 10)
    assert [a.account for a in associations] == ["physics", "gpu-course"]
    assert server.requests[-1].query == {"user": ["alice"]}
    assert server.requests[-1].headers["x-slurm-user-name"] == "slurm"


def recorded_json_answer(name: str):
    return answer(200, recorded_json(name))


async def test_files_are_refused_with_the_fix_named(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    for call in (
        driver.install_files("alice", "/home/alice/.t", {"token": SECRET.encode()}),
        driver.remove_file("alice", "/home/alice/.t/token"),
    ):
        with pytest.raises(SlurmError) as caught:
            await call
        assert 'token_delivery = "environment"' in str(caught.value)
        assert "internal_ssl" in str(caught.value)
        assert SECRET not in str(caught.value)
    output = await driver.read_output("alice", "/home/alice/jupyter-313.log")
    assert (output.text, output.problem) == ("", OUTPUT_NOT_AVAILABLE)
    assert server.requests == []
    assert "slurmrestd" in NO_FILES


async def test_nothing_secret_reaches_the_log(servers, drivers, caplog):
    caplog.set_level(logging.DEBUG)
    server = await servers()
    driver = drivers(server.url)
    env = {"JUPYTERHUB_API_TOKEN": SECRET, "PATH": "/bin"}
    await driver.submit("alice", (GOLDEN / "typical.sh").read_text(), env)
    await driver.query(["313"])
    tokens = {r.headers["x-slurm-user-token"] for r in server.requests}
    for secret in (SECRET, *tokens):
        assert secret not in caplog.text
    assert "slurmrestd POST /slurm/v0.0.38/job/submit as alice" in caplog.text


async def test_the_spawner_turns_the_file_refusals_into_clear_messages(servers, drivers):
    """What the spawner's user-file room makes of the driver's answers: a failed start whose
    log names token_delivery (no traceback), and a job's end without the output's tail."""
    from hpcspawner.slurm import JobOutput
    from hpcspawner.spawner.errors import SpawnFailure
    from hpcspawner.spawner.messages import job_ended
    from hpcspawner.spawner.userfiles import UserFiles

    driver = drivers((await servers()).url)
    files = UserFiles(driver, "alice", "", "alice", logging.getLogger("test.rest"))
    with pytest.raises(SpawnFailure) as caught:
        await files.write_token_file("/home/alice/.jupyterhub-tokens/default/api-token-1", SECRET)
    assert "API token" in str(caught.value.jupyterhub_message)
    # what the hub logs: JupyterHub 6's log_message, the JupyterHub 5 flavour's detail
    logged = str(getattr(caught.value, "detail", "")) + str(caught.value.log_message)
    assert 'token_delivery = "environment"' in logged
    assert SECRET not in logged + str(caught.value)
    await files.remove_token_file("/home/alice/.jupyterhub-tokens/{server}", "1")  # logged only
    output = await driver.read_output("alice", "/home/alice/jupyter-313.log")
    assert isinstance(output, JobOutput)
    message, logged = job_ended("313", "the job failed", "/home/alice/jupyter-313.log", output)
    assert message == (
        "Job 313 ended before the server started: the job failed. Its output file "
        "/home/alice/jupyter-313.log cannot be read by the hub: slurmrestd gives no access "
        "to files."
    )


async def test_an_unchanged_cluster_is_not_listed_again(servers, drivers):
    """update_time: the time of the last full listing less the skew; slurmrestd 22.05 answers
    304 without a body when no job changed (its operations.c), and the last listing holds."""
    changed = {"now": False}

    async def jobs(request):
        if "update_time" in request.query and not changed["now"]:
            return 304, b""
        body = recorded_json("jobs")
        if changed["now"]:
            body["jobs"] = [job for job in body["jobs"] if job["job_id"] != 313]
        return answer(200, body)

    server = await servers(slurmrestd_routes() | {("GET", f"{BASE}/jobs"): jobs})
    clock = Clock()
    driver = drivers(server.url, clock=clock)
    first = await asyncio.wait_for(driver.query(["313", "314"]), 10)
    listed_at = clock.now
    clock.now += 30
    assert await asyncio.wait_for(driver.query(["313", "314"]), 10) == first
    assert server.requests[-1].query == {"update_time": [str(int(listed_at - 60))]}
    clock.now += 30
    changed["now"] = True  # job 313 purged: the whole listing comes again
    assert sorted(await asyncio.wait_for(driver.query(["313", "314"]), 10)) == ["314"]
    clock.now += 30
    await asyncio.wait_for(driver.query(["314"]), 10)
    assert server.requests[-1].query == {"update_time": [str(int(listed_at + 60 - 60))]}
    assert driver.calls["squeue"] == 4 and driver.calls["squeue_unchanged"] == 1


async def test_without_update_time_every_poll_lists(servers, drivers):
    server = await servers()
    driver = drivers(server.url, use_update_time=False)
    for _ in range(3):
        await asyncio.wait_for(driver.query(["313"]), 10)
    assert all(r.query == {} for r in server.requests)


async def test_a_not_modified_answer_to_a_full_listing_is_an_error(servers, drivers):
    routes = slurmrestd_routes() | {("GET", f"{BASE}/jobs"): (304, b"")}
    driver = drivers((await servers(routes)).url)
    with pytest.raises(SlurmError):
        await asyncio.wait_for(driver.query(["313"]), 10)


async def test_a_vanished_version_is_probed_again(servers, drivers):
    routes = slurmrestd_routes()
    del routes[("GET", f"{BASE}/jobs")]  # 404, as for a plugin the daemon no longer loads
    server = await servers(routes)
    driver = drivers(server.url)
    for _ in range(2):
        with pytest.raises(SlurmError):
            await asyncio.wait_for(driver.query(["313"]), 10)
    assert [r.path for r in server.requests].count("/openapi/v3") == 2


async def test_a_path_prefix_behind_a_proxy(servers, drivers):
    routes = {
        (method, f"/slurm-api{path}"): route
        for (method, path), route in slurmrestd_routes().items()
    }
    server = await servers(routes)
    driver = drivers(f"{server.url}/slurm-api/")
    assert sorted(await asyncio.wait_for(driver.query(["313"]), 10)) == ["313"]
    assert [r.path for r in server.requests] == ["/slurm-api/openapi/v3", f"/slurm-api{BASE}/jobs"]
    assert await driver.query([]) == {}
    assert len(server.requests) == 2


async def test_an_expired_token_file_is_named_before_sending(servers, drivers, tmp_path):
    from hpcspawner.slurm import jwt

    server = await servers()
    clock = Clock()
    path = tmp_path / "slurmrestd.jwt"
    path.write_text(jwt.mint(b"k" * 32, "slurm", issued_at=int(clock.now) - 600, lifetime=300))
    driver = drivers(server.url, jwt_key_file="", token_file=str(path), clock=clock)
    with pytest.raises(ConnectionFailed, match="expired at") as caught:
        await asyncio.wait_for(driver.query(["313"]), 10)
    assert path.read_text() not in str(caught.value)
    assert server.requests == []


async def test_proxies_from_the_environment_never_see_a_token(servers, drivers, monkeypatch):
    proxy = await servers({})  # answers 404 to everything: it must get nothing
    server = await servers()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    driver = drivers(server.url)
    assert sorted(await asyncio.wait_for(driver.query(["313"]), 10)) == ["313"]
    assert proxy.requests == [] and len(server.requests) == 2


async def test_plain_http_to_another_host_is_warned_about(drivers, caplog):
    caplog.set_level(logging.WARNING)
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"):
        await drivers(url)._make_client().aclose()
    assert "plain http" not in caplog.text
    client = drivers("http://slurmrestd.example.org:6820")._make_client()
    await client.aclose()
    assert "plain http to another host" in caplog.text


async def test_a_job_id_beside_an_error_is_still_the_job(servers, drivers, caplog):
    """The job exists once slurmrestd names its id: failing the submission would leave a job
    the hub does not know about."""
    accepted = recorded_json("submit") | {"errors": [{"error_code": 1, "error": "odd"}]}
    routes = slurmrestd_routes() | {
        ("POST", f"{BASE}/job/submit"): answer(200, accepted),
        ("DELETE", f"{BASE}/job/abc"): answer(200, {"errors": []}),
    }
    driver = drivers((await servers(routes)).url)
    script = (GOLDEN / "typical.sh").read_text()
    assert await asyncio.wait_for(driver.submit("alice", script, {"A": "1"}), 10) == "313"
    assert "accepted job 313 of alice with error 1: odd" in caplog.text
    with pytest.raises(SlurmError, match="not a job id"):
        await driver.cancel("alice", "../jobs")


async def test_a_connection_dropped_mid_request_makes_a_submission_uncertain(servers, drivers):
    async def drop(request):
        raise ConnectionResetError  # the server closes the connection without an answer

    routes = slurmrestd_routes() | {("POST", f"{BASE}/job/submit"): drop}
    server = await servers(routes)
    driver = drivers(server.url)
    with pytest.raises(SlurmError) as caught:
        await asyncio.wait_for(
            driver.submit("alice", (GOLDEN / "typical.sh").read_text(), {"T": SECRET}), 10
        )
    assert isinstance(caught.value, ConnectionLost)
    assert submission_uncertain(caught.value) and controller_unreachable(caught.value)
    assert SECRET not in str(caught.value)
    assert server.requests[-1].json()["job"]["environment"] == {"T": SECRET}  # it was sent
    # the pool opens a new connection for the next request
    assert sorted(await asyncio.wait_for(driver.query(["313"]), 10)) == ["313"]


async def test_a_request_without_a_valid_token_is_named(servers, drivers):
    routes = slurmrestd_routes() | {("GET", f"{BASE}/jobs"): (401, b"Authentication failure")}
    driver = drivers((await servers(routes)).url)
    with pytest.raises(SlurmError, match="no valid token"):
        await asyncio.wait_for(driver.query(["313"]), 10)


async def test_a_rejected_submission_shows_no_secret(servers, drivers, caplog):
    caplog.set_level(logging.DEBUG)
    routes = slurmrestd_routes() | {("POST", f"{BASE}/job/submit"): recorded("bad_token")}
    driver = drivers((await servers(routes)).url)
    with pytest.raises(SlurmError) as caught:
        await asyncio.wait_for(
            driver.submit("alice", (GOLDEN / "typical.sh").read_text(), {"T": SECRET}), 10
        )
    assert SECRET not in str(caught.value) and SECRET not in caplog.text
