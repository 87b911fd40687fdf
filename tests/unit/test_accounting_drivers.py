"""The drivers' accounting questions (qos_limits, user_accounting) on the recorded answers:
the command drivers (local; the SSH driver runs the same cli.py, see test_ssh_driver's
parity table) and the REST driver give the same records; slurmdbd stopped is an error
(an outage), not "no accounting"."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import test_ssh_driver
from restserver import RESTServer, answer, recorded_json, slurmrestd_routes
from test_accounting import QOS, recorded

from hpcspawner.slurm import SlurmError
from hpcspawner.slurm.accounting import AccountLimits, JobLimits, UserAccounting
from hpcspawner.slurm.local import LocalSlurmDriver
from hpcspawner.slurm.rest import RESTSlurmDriver

#: alice on the recorded site: the account chemistry's own GrpTRES cpu=6 holds for her jobs
ALICE = UserAccounting(
    default_account="physics",
    limits={
        "chemistry": AccountLimits(
            "chemistry", group=JobLimits(cpus=6), group_set_by={"cpus": "chemistry"}
        ),
        "physics": AccountLimits("physics"),
    },
)
DB = "/slurmdb/v0.0.38"
#: the fake login node whose commands (sacctmgr) answer as the test says
node = test_ssh_driver.node


def bounded(awaitable, timeout: float = 20):
    return asyncio.wait_for(awaitable, timeout)


@pytest.fixture
def local(node) -> LocalSlurmDriver:
    return LocalSlurmDriver(
        commands_path=f"{node.bin}:/usr/bin:/bin", user_command_prefix=list(test_ssh_driver.SUDO)
    )


async def test_the_command_drivers_read_the_recorded_site(node, local):
    node.answer("sacctmgr", match="show qos", stdout=recorded("sacctmgr_qos.txt"))
    node.answer(
        "sacctmgr", match="where user=alice", stdout=recorded("sacctmgr_assoc_limits_alice.txt")
    )
    node.answer("sacctmgr", match="withassoc", stdout=recorded("sacctmgr_user_alice.txt"))
    answer_account_rows(node)
    assert await bounded(local.qos_limits()) == QOS
    assert await bounded(local.user_accounting("alice")) == ALICE
    argv = [" ".join(call["argv"]) for call in node.calls("sacctmgr")]
    limit_fields = (
        "format=user,account,qos,defaultqos,partition,grptres,grpjobs,grpsubmit,maxtres,"
        "maxtrespernode,maxwall,maxjobs,maxsubmit,priority,fairshare,parentname"
    )
    assert [a.split(" ", 1)[1] for a in argv] == [
        "--noheader --parsable2 show qos format=name,priority,maxwall,maxtresperjob,"
        "maxtrespernode,maxtrespu,maxjobspu,maxsubmitpu,grptres,mintresperjob,flags,description",
        f"--noheader --parsable2 show assoc where user=alice {limit_fields}",
        "--noheader --parsable2 show user alice withassoc format=user,defaultaccount,account,qos",
        # one call per level of the account tree: alice's accounts, then their parent root
        f"--noheader --parsable2 show assoc where accounts=chemistry,physics users= {limit_fields}",
        f"--noheader --parsable2 show assoc where accounts=root users= {limit_fields}",
    ]


def answer_account_rows(node, *, synthetic: bool = False) -> None:
    """sacctmgr answers the account rows as recorded (or, ``synthetic``, with chemistry below
    an account science)."""
    if synthetic:
        for accounts in ("chemistry,physics", "root,science"):
            name = f"sacctmgr_account_rows_{accounts.replace(',', '_')}_synthetic.txt"
            node.answer("sacctmgr", match=f"accounts={accounts} ", stdout=recorded(name))
        return
    for accounts in ("chemistry,physics", "root"):
        name = f"sacctmgr_account_rows_{accounts.replace(',', '_')}.txt"
        node.answer("sacctmgr", match=f"accounts={accounts} ", stdout=recorded(name))


async def test_the_command_drivers_walk_up_the_account_tree(node, local):
    node.answer(
        "sacctmgr", match="where user=alice", stdout=recorded("sacctmgr_assoc_limits_alice.txt")
    )
    node.answer("sacctmgr", match="withassoc", stdout=recorded("sacctmgr_user_alice.txt"))
    answer_account_rows(node, synthetic=True)
    accounting = await bounded(local.user_accounting("alice"))
    assert accounting.limits["chemistry"] == AccountLimits(
        "chemistry",
        group=JobLimits(cpus=6, memory_mb=8192, gpus=1),
        group_set_by={"cpus": "chemistry", "memory_mb": "science", "gpus": "science"},
    )
    assert accounting.limits["physics"] == AccountLimits("physics")
    asked = [c["argv"][-3] for c in node.calls("sacctmgr") if "users=" in c["argv"]]
    assert asked == ["accounts=chemistry,physics", "accounts=root,science"]


async def test_the_account_walk_stops_without_accounting(node, local):
    node.answer("sacctmgr", stdout=recorded("sacctmgr_assoc_limits_alice.txt"))
    node.answer("sacctmgr", match="withassoc", stdout=recorded("sacctmgr_user_alice.txt"))
    node.answer("sacctmgr", match="users=", stderr=recorded("../sacctmgr_no_dbd.stderr"), rc=1)
    assert await bounded(local.user_accounting("alice")) is None


async def test_the_command_drivers_raise_when_slurmdbd_is_down(node, local):
    node.answer("sacctmgr", stderr=recorded("sacctmgr_dbd_down.stderr"), rc=1)
    for call in (
        local.qos_limits(),
        local.user_accounting("alice"),
        local.user_associations("alice"),
    ):
        with pytest.raises(SlurmError, match="persistent connection"):
            await bounded(call)


#: slurmrestd's associations by query: the user's (recorded), the accounts' (synthetic)
ASSOCIATIONS = {
    ("user", "alice"): "rest_associations_alice.json",
    ("account", "chemistry,physics"): "rest_associations_chemistry_physics_synthetic.json",
    ("account", "root"): "rest_associations_root_synthetic.json",
}


async def associations_by_query(request):
    ((key, (value,)),) = request.query.items()
    return answer(200, json.loads(recorded(ASSOCIATIONS[key, value])))


def accounting_routes(**override) -> dict:
    """slurmrestd with the dbv0.0.38 plugin, answering as recorded."""
    spec = recorded_json("openapi_v3")
    spec["paths"] = [
        *spec["paths"],
        f"{DB}/associations/",
        f"{DB}/qos/",
        f"{DB}/user/{{user_name}}",
    ]
    routes = slurmrestd_routes() | {
        ("GET", "/openapi/v3"): answer(200, spec),
        ("GET", f"{DB}/associations"): associations_by_query,
        ("GET", f"{DB}/qos"): answer(200, json.loads(recorded("rest_qos.json"))),
        ("GET", f"{DB}/user/alice"): answer(200, json.loads(recorded("rest_user_alice.json"))),
    }
    return routes | override


@pytest.fixture
async def rest(tmp_path):
    made = []
    key = tmp_path / "jwt.key"
    key.write_bytes(b"k" * 32)

    async def make(routes) -> tuple[RESTSlurmDriver, RESTServer]:
        server = RESTServer(routes=routes)
        await server.start_tcp()
        driver = RESTSlurmDriver(
            url=server.url,
            jwt_key_file=str(key),
            request_timeout=5.0,
            job_query="batch",
            log=logging.getLogger("test.rest"),
        )
        made.append((driver, server))
        return driver, server

    yield make
    for driver, server in made:
        await bounded(driver.close())
        await bounded(server.stop())


async def test_the_rest_driver_gives_the_same_records(rest):
    driver, server = await rest(accounting_routes())
    assert await bounded(driver.qos_limits()) == QOS
    assert await bounded(driver.user_accounting("alice")) == ALICE
    asked = [(r.path, r.query) for r in server.requests if r.path.startswith(DB)]
    assert asked == [
        (f"{DB}/qos", {}),
        (f"{DB}/associations", {"user": ["alice"]}),
        (f"{DB}/user/alice", {}),
        (f"{DB}/associations", {"account": ["chemistry,physics"]}),
        (f"{DB}/associations", {"account": ["root"]}),
    ]
    with pytest.raises(ValueError):
        await driver.user_accounting("alice/../bob")


async def test_the_rest_driver_raises_when_slurmdbd_is_down(rest):
    down = answer(500, json.loads(recorded("rest_associations_dbd_down.json")))
    driver, _ = await rest(
        accounting_routes(**{}) | {("GET", f"{DB}/associations"): down, ("GET", f"{DB}/qos"): down}
    )
    for call in (
        driver.qos_limits(),
        driver.user_accounting("alice"),
        driver.user_associations("alice"),
    ):
        with pytest.raises(SlurmError, match="Unable to connect to database"):
            await bounded(call)


async def test_the_rest_driver_without_the_db_plugin_has_no_accounting(rest):
    driver, server = await rest(slurmrestd_routes())
    assert await bounded(driver.qos_limits()) is None
    assert await bounded(driver.user_accounting("alice")) is None
    assert not [r for r in server.requests if r.path.startswith(DB)]
