"""Slurm accounting's limits: the parsers on the recorded answers, the CLI and REST forms
giving the same records, and the one validator applying them in the hub's words.

The recordings are in data/accounting/ (record.sh; README.md says what each holds).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcspawner.resources.limits import describe_limits
from hpcspawner.resources.offer import make_offer
from hpcspawner.resources.options import OptionsError, Policy, validate_options
from hpcspawner.slurm import rest_v0038
from hpcspawner.slurm.accounting import (
    ASSOC_LIMIT_FIELDS,
    DBD_DOWN_RE,
    AccountLimits,
    AccountNode,
    JobLimits,
    QOSInfo,
    UserAccounting,
    account_rows_args,
    ancestry,
    assoc_limits_args,
    parse_account_rows,
    parse_assoc_limits,
    parse_default_account,
    parse_qos,
    parse_tres,
    parse_walltime,
    user_args,
    walk_accounts,
    with_account_limits,
)
from hpcspawner.slurm.records import NO_ACCOUNTING_RE, ParseError, parse_associations
from hpcspawner.spawner import form

DATA = Path(__file__).parent / "data" / "accounting"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def recorded_json(name: str):
    return json.loads(recorded(name))


# ---------------------------------------------------------------- small parsers


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("", {}, id="empty-is-no-limit"),
        pytest.param("cpu=2,gres/gpu=0,mem=4G", {"cpu": 2, "gres/gpu": 0, "mem": 4096}, id="qos"),
        pytest.param("cpu=6", {"cpu": 6}, id="grptres"),
        pytest.param("mem=512M,node=2", {"mem": 512, "node": 2}, id="megabytes-nodes"),
        pytest.param("mem=1T", {"mem": 1024 * 1024}, id="terabytes"),
        pytest.param("mem=2048", {"mem": 2048}, id="no-suffix-is-mb"),
        pytest.param("billing=10,gres/gpu:a100=2", {"billing": 10, "gres/gpu:a100": 2}, id="typed"),
        pytest.param("license/matlab@db=3", {"license/matlab@db": 3}, id="license"),
    ],
)
def test_parse_tres(text, expected):
    assert parse_tres(text) == expected


@pytest.mark.parametrize(
    "text", ["cpu", "cpu=two", "cpu=2G", "cpu=2;rm -rf", "=2", "cpu=1234567890123"]
)
def test_parse_tres_refuses(text):
    with pytest.raises(ParseError):
        parse_tres(text)


@pytest.mark.parametrize(
    "text, minutes",
    [
        pytest.param("02:00:00", 120, id="hours"),
        pytest.param("1-00:00:00", 1440, id="days"),
        pytest.param("1-02:30:00", 1590, id="days-hours-minutes"),
        pytest.param("45:00", 45, id="minutes-seconds"),
        pytest.param("00:00:30", 1, id="seconds-round-up"),
        pytest.param("", None, id="empty"),
        pytest.param("UNLIMITED", None, id="unlimited"),
        pytest.param("INFINITE", None, id="infinite"),
    ],
)
def test_parse_walltime(text, minutes):
    assert parse_walltime(text) == minutes


@pytest.mark.parametrize("text", ["2h", "1-", "-1:00", "1:2:3:4", "a:00"])
def test_parse_walltime_refuses(text):
    with pytest.raises(ParseError):
        parse_walltime(text)


# ---------------------------------------------------------------- sacctmgr, recorded

SHORT = JobLimits(runtime_minutes=120, cpus=2, memory_mb=4096, gpus=0)
LONG = JobLimits(runtime_minutes=1440, cpus=4, memory_mb=8192, gpus=1)
QOS = {
    "normal": QOSInfo("normal", JobLimits(), False, "Normal QOS default"),
    "short": QOSInfo("short", SHORT, True, "short interactive sessions"),
    "long": QOSInfo("long", LONG, True, "long sessions"),
}


@pytest.mark.parametrize("name", ["sacctmgr_qos.txt", "sacctmgr_qos_as_alice.txt"])
def test_qos_from_sacctmgr(name):
    assert parse_qos(recorded(name)) == QOS


def test_qos_from_slurmrestd_is_the_same():
    assert rest_v0038.parse_qos(recorded_json("rest_qos.json")) == QOS


NO_LIMITS = {
    "alice": {"chemistry": AccountLimits("chemistry"), "physics": AccountLimits("physics")},
    "bob": {"chemistry": AccountLimits("chemistry")},
    "carol": {"physics": AccountLimits("physics")},
}


@pytest.mark.parametrize(
    "user, default", [("alice", "physics"), ("bob", "chemistry"), ("carol", "physics")]
)
def test_user_accounting_from_sacctmgr(user, default):
    assert (
        parse_assoc_limits(recorded(f"sacctmgr_assoc_limits_{user}.txt"), user) == NO_LIMITS[user]
    )
    assert parse_default_account(recorded(f"sacctmgr_user_{user}.txt"), user) == default


def test_user_accounting_from_slurmrestd_is_the_same():
    rest = rest_v0038.parse_user_accounting(
        recorded_json("rest_associations_alice.json"),
        recorded_json("rest_user_alice.json"),
        "alice",
    )
    assert rest == UserAccounting(default_account="physics", limits=NO_LIMITS["alice"])


def test_association_limits_synthetic():
    limits = parse_assoc_limits(recorded("sacctmgr_assoc_limits_synthetic.txt"), "dave")
    assert limits == {
        # the debug-only association's MaxWall 45:00 is lower: the hub takes the lowest
        "physics": AccountLimits(
            "physics",
            per_job=JobLimits(runtime_minutes=45, cpus=3, memory_mb=6144, gpus=1),
            group=JobLimits(cpus=8, memory_mb=16384),
        ),
        "chemistry": AccountLimits("chemistry", group=JobLimits(cpus=6)),
    }
    assert parse_default_account(recorded("sacctmgr_user_synthetic.txt"), "dave") == "physics"


# ---------------------------------------------------------------- the account tree

#: the recorded site's account rows: chemistry's own GrpTRES cpu=6; both below root
ACCOUNT_ROWS = {
    "chemistry": AccountNode("chemistry", ("root",), JobLimits(cpus=6)),
    "physics": AccountNode("physics", ("root",)),
}
#: the synthetic tree: root -> science (cpu=16, mem=8G, gres/gpu=1) -> chemistry (cpu=6)
SCIENCE = AccountNode("science", ("root",), JobLimits(cpus=16, memory_mb=8192, gpus=1))
TREE = {
    "chemistry": AccountNode("chemistry", ("science",), JobLimits(cpus=6)),
    "physics": AccountNode("physics", ("root",)),
    "root": AccountNode("root"),
    "science": SCIENCE,
}


def test_account_rows_from_sacctmgr():
    assert parse_account_rows(recorded("sacctmgr_account_rows_chemistry_physics.txt")) == (
        ACCOUNT_ROWS
    )
    assert parse_account_rows(recorded("sacctmgr_account_rows_root.txt")) == {
        "root": AccountNode("root")
    }
    synthetic = parse_account_rows(
        recorded("sacctmgr_account_rows_chemistry_physics_synthetic.txt")
    ) | parse_account_rows(recorded("sacctmgr_account_rows_root_science_synthetic.txt"))
    assert synthetic == TREE


def test_account_rows_from_slurmrestd_are_the_same():
    """The users' entries in the answer (alice, bob, carol) are left out."""
    rows = rest_v0038.parse_account_rows(
        recorded_json("rest_associations_chemistry_physics_synthetic.json")
    )
    assert rows == ACCOUNT_ROWS
    root = rest_v0038.parse_account_rows(recorded_json("rest_associations_root_synthetic.json"))
    assert root == {"root": AccountNode("root")}


def test_account_rows_of_several_clusters_take_the_lowest_and_every_parent():
    rows = parse_account_rows(
        "|chemistry|normal|normal||cpu=6,mem=4G|||||||||1|science\n"
        "|chemistry|normal|normal||cpu=8|||||||||1|root\n"
    )
    assert rows == {
        "chemistry": AccountNode(
            "chemistry", ("science", "root"), JobLimits(cpus=6, memory_mb=4096)
        )
    }


def test_account_rows_args():
    assert account_rows_args(["physics", "chemistry", "physics"])[4:7] == [
        "where",
        "accounts=chemistry,physics",
        "users=",
    ]
    for bad in ("a,b", "a b", "-a", "", "a=b"):
        with pytest.raises(ParseError):
            account_rows_args([bad])


async def test_the_walk_asks_one_level_at_a_time_up_to_root():
    asked = []

    async def ask(names):
        asked.append(names)
        return {name: TREE[name] for name in names if name in TREE}

    assert await walk_accounts(ask, ["physics", "chemistry"]) == TREE
    assert asked == [["chemistry", "physics"], ["root", "science"]]


async def test_the_walk_stops_at_its_depth_and_on_loops_and_without_accounting():
    chain = {f"a{n}": AccountNode(f"a{n}", (f"a{n + 1}",)) for n in range(20)}
    loop = {"a": AccountNode("a", ("b",)), "b": AccountNode("b", ("a",))}
    asked = []

    async def ask_in(tree):
        async def ask(names):
            asked.append(names)
            return {name: tree[name] for name in names if name in tree}

        return ask

    assert len(await walk_accounts(await ask_in(chain), ["a0"], max_depth=3)) == 3
    assert asked == [["a0"], ["a1"], ["a2"]]
    asked.clear()
    assert await walk_accounts(await ask_in(loop), ["a"]) == loop
    assert asked == [["a"], ["b"]]

    async def no_accounting(names):
        return None

    assert await walk_accounts(no_accounting, ["a"]) is None
    with pytest.raises(ParseError):
        await walk_accounts(await ask_in({"x": AccountNode("x", ("bad,name",))}), ["x"])


def test_ancestry_is_nearest_first_each_once():
    assert [node.name for node in ancestry("chemistry", TREE)] == ["chemistry", "science", "root"]
    assert ancestry("unknown", TREE) == []


@pytest.mark.parametrize(
    "own, tree, group, set_by",
    [
        pytest.param(JobLimits(), {}, JobLimits(), {}, id="no-account-rows"),
        pytest.param(
            JobLimits(),
            ACCOUNT_ROWS | {"root": AccountNode("root")},
            JobLimits(cpus=6),
            {"cpus": "chemistry"},
            id="recorded-site",
        ),
        pytest.param(
            JobLimits(),
            TREE,
            JobLimits(cpus=6, memory_mb=8192, gpus=1),
            {"cpus": "chemistry", "memory_mb": "science", "gpus": "science"},
            id="parent-sets-memory-and-gpus",
        ),
        pytest.param(
            JobLimits(cpus=6, memory_mb=1024),
            TREE,
            JobLimits(cpus=6, memory_mb=1024, gpus=1),
            {"gpus": "science"},
            id="the-users-own-wins-ties",
        ),
        pytest.param(
            JobLimits(),
            TREE | {"root": AccountNode("root", (), JobLimits(cpus=2, gpus=1))},
            JobLimits(cpus=2, memory_mb=8192, gpus=1),
            {"cpus": "root", "memory_mb": "science", "gpus": "science"},
            id="root-lowest-nearer-wins-ties",
        ),
    ],
)
def test_account_limits_fold_into_the_association(own, tree, group, set_by):
    limits = {"chemistry": AccountLimits("chemistry", JobLimits(cpus=3), own)}
    folded = with_account_limits(limits, tree)["chemistry"]
    assert folded == AccountLimits("chemistry", JobLimits(cpus=3), group, set_by)


def test_group_by_account_names_who_set_each_limit():
    folded = with_account_limits({"chemistry": AccountLimits("chemistry")}, TREE)["chemistry"]
    assert folded.group_by_account() == [
        ("chemistry", JobLimits(cpus=6)),
        ("science", JobLimits(memory_mb=8192, gpus=1)),
    ]
    assert AccountLimits("physics").group_by_account() == [("physics", JobLimits())]


@pytest.mark.parametrize(
    "parse, output",
    [
        pytest.param(parse_qos, "short|0|02:00:00\n", id="qos-short-row"),
        pytest.param(parse_qos, "|0||||||||||x\n", id="qos-without-name"),
        pytest.param(parse_qos, "x|0|2h|||||||||\n", id="qos-bad-walltime"),
        pytest.param(
            lambda out: parse_assoc_limits(out, "alice"),
            recorded("sacctmgr_assoc_limits_bob.txt"),
            id="assoc-other-user",
        ),
        pytest.param(
            lambda out: parse_assoc_limits(out, "alice"),
            recorded("sacctmgr_assoc_alice.txt"),
            id="assoc-without-limit-fields",
        ),
        pytest.param(
            lambda out: parse_default_account(out, "alice"),
            "alice|physics|physics|normal\nalice|chemistry|chemistry|normal\n",
            id="two-defaults",
        ),
        pytest.param(
            parse_account_rows, recorded("sacctmgr_assoc_limits_alice.txt"), id="account-user-row"
        ),
        pytest.param(
            parse_account_rows, "|" * (len(ASSOC_LIMIT_FIELDS) - 1) + "\n", id="account-no-name"
        ),
        pytest.param(
            rest_v0038.parse_account_rows, {"associations": [{"user": None}]}, id="rest-no-account"
        ),
        pytest.param(
            lambda out: parse_default_account(out, "alice"),
            recorded("sacctmgr_user_bob.txt"),
            id="user-other-user",
        ),
    ],
)
def test_parsers_refuse_what_they_do_not_understand(parse, output):
    with pytest.raises(ParseError):
        parse(output)


def test_args_are_one_plain_name():
    assert assoc_limits_args("alice")[-2:] == ["user=alice", assoc_limits_args("x")[-1]]
    assert user_args("alice")[3:6] == ["user", "alice", "withassoc"]
    for bad in ("alice,bob", "alice bob", "-alice", "", "a=b"):
        with pytest.raises(ValueError):
            user_args(bad)
        with pytest.raises(ValueError):
            assoc_limits_args(bad)


def test_a_stopped_slurmdbd_is_an_outage_not_no_accounting():
    stderr = recorded("sacctmgr_dbd_down.stderr")
    assert DBD_DOWN_RE.search(stderr)
    assert not NO_ACCOUNTING_RE.search(stderr)
    assert recorded("sacctmgr_dbd_down.rc").startswith("rc=1 ")
    errors = rest_v0038.errors_of(recorded_json("rest_associations_dbd_down.json"))
    assert any(DBD_DOWN_RE.search(text) for _, text in errors)


# ---------------------------------------------------------------- for people


@pytest.mark.parametrize(
    "limits, text",
    [
        pytest.param(SHORT, "at most 2:00:00, 2 CPUs, 4G, no GPU", id="short"),
        pytest.param(LONG, "at most 1-00:00:00, 4 CPUs, 8G, 1 GPU", id="long"),
        pytest.param(JobLimits(), "", id="normal"),
        pytest.param(
            JobLimits(cpus=1, memory_mb=1536, nodes=2), "at most 2 nodes, 1 CPU, 1536M", id="odd"
        ),
        pytest.param(JobLimits(runtime_minutes=90), "at most 1:30:00", id="walltime-only"),
    ],
)
def test_describe_limits(limits, text):
    assert describe_limits(limits) == text


# ---------------------------------------------------------------- the validator


def offer_for(user: str, policy: Policy | None = None):
    """alice's, bob's or carol's offer from the recorded site (CLI answers)."""
    return make_offer(
        policy or Policy(),
        associations=parse_associations(recorded(f"sacctmgr_assoc_{user}.txt"), user),
        qos_limits=parse_qos(recorded("sacctmgr_qos.txt")),
        accounting=UserAccounting(
            default_account=parse_default_account(recorded(f"sacctmgr_user_{user}.txt"), user),
            limits=parse_assoc_limits(recorded(f"sacctmgr_assoc_limits_{user}.txt"), user),
        ),
    )


def alice_offer(tree):
    """alice's offer with the account rows ``tree`` folded into her limits."""
    return make_offer(
        Policy(max_nodes=4, max_cpus=64),
        associations=parse_associations(recorded("sacctmgr_assoc_alice.txt"), "alice"),
        qos_limits=parse_qos(recorded("sacctmgr_qos.txt")),
        accounting=UserAccounting(
            default_account="physics",
            limits=with_account_limits(
                parse_assoc_limits(recorded("sacctmgr_assoc_limits_alice.txt"), "alice"), tree
            ),
        ),
    )


def dave_offer():
    return make_offer(
        Policy(max_nodes=4),
        associations=parse_associations(
            "dave|physics|long,normal,short|normal|\ndave|chemistry|normal|normal|\n", "dave"
        ),
        qos_limits=parse_qos(recorded("sacctmgr_qos.txt")),
        accounting=UserAccounting(
            default_account="physics",
            limits=parse_assoc_limits(recorded("sacctmgr_assoc_limits_synthetic.txt"), "dave"),
        ),
    )


BASE = {"memory": "1G", "runtime": "30"}


@pytest.mark.parametrize(
    "user, raw, field, message",
    [
        pytest.param(
            "alice",
            {"qos": "short", "runtime": "3:00:00"},
            "runtime",
            "QOS short allows at most 2:00:00",
            id="qos-walltime",
        ),
        pytest.param(
            "alice",
            {"qos": "short", "cpus": "3"},
            "cpus",
            "QOS short allows at most 2 CPUs",
            id="qos-cpus",
        ),
        pytest.param(
            "alice",
            {"qos": "short", "memory": "5G"},
            "memory",
            "QOS short allows at most 4G",
            id="qos-memory",
        ),
        pytest.param(
            "alice",
            {"qos": "short", "gpus": "1"},
            "gpus",
            "QOS short allows no GPU",
            id="qos-no-gpu",
        ),
        pytest.param(
            "alice",
            {"qos": "long", "gpus": "2"},
            "gpus",
            "QOS long allows at most 1 GPU",
            id="qos-gpus",
        ),
        pytest.param(
            "alice",
            {"account": "chemistry", "qos": "long"},
            "qos",
            "QOS long is not allowed with account chemistry (choose from: normal, short)",
            id="qos-not-of-the-account",
        ),
        pytest.param(
            "bob",
            {"account": "physics"},
            "account",
            "you may not charge Slurm account 'physics' (your accounts: chemistry)",
            id="not-a-member",
        ),
        pytest.param(
            "bob",
            {"qos": "long"},
            "qos",
            "'long' is not an available qos (choose from: normal, short)",
            id="qos-of-no-association",
        ),
    ],
)
def test_accounting_refusals_in_the_hubs_words(user, raw, field, message):
    policy = Policy(max_nodes=4)
    with pytest.raises(OptionsError) as caught:
        validate_options({**BASE, **raw}, offer_for(user, policy).policy)
    assert caught.value.errors[field].startswith(message), caught.value.errors
    assert "violates" not in str(caught.value.errors)


@pytest.mark.parametrize(
    "raw, field, message",
    [
        pytest.param(
            {"qos": "short", "cpus": "2", "nodes": "2"},
            "cpus",
            "QOS short allows at most 2 CPUs (you asked for 4 CPUs on 2 nodes)",
            id="cpus-times-nodes",
        ),
        pytest.param(
            {"qos": "short", "memory": "3G", "nodes": "2"},
            "memory",
            "QOS short allows at most 4G (you asked for 6G on 2 nodes)",
            id="memory-times-nodes",
        ),
        pytest.param(
            {"runtime": "1:00:00"},
            "runtime",
            "account physics allows at most 0:45:00",
            id="association-maxwall-default-account",
        ),
        pytest.param(
            {"cpus": "4"}, "cpus", "account physics allows at most 3 CPUs", id="association-maxtres"
        ),
        pytest.param(
            {"account": "chemistry", "cpus": "7"},
            "cpus",
            "account chemistry allows at most 6 CPUs for all its jobs at once",
            id="association-grptres",
        ),
    ],
)
def test_association_limits_and_whole_job_totals(raw, field, message):
    with pytest.raises(OptionsError) as caught:
        validate_options({**BASE, **raw}, dave_offer().policy)
    assert caught.value.errors[field] == message


@pytest.mark.parametrize(
    "tree, raw, field, message",
    [
        pytest.param(
            ACCOUNT_ROWS,
            {"account": "chemistry", "cpus": "7"},
            "cpus",
            "account chemistry allows at most 6 CPUs for all its jobs at once",
            id="recorded-account-grptres",
        ),
        pytest.param(
            ACCOUNT_ROWS,
            {"account": "chemistry", "cpus": "4", "nodes": "2"},
            "cpus",
            "account chemistry allows at most 6 CPUs for all its jobs at once"
            " (you asked for 8 CPUs on 2 nodes)",
            id="recorded-account-grptres-nodes",
        ),
        pytest.param(
            TREE,
            {"account": "chemistry", "memory": "9G"},
            "memory",
            "account science (above chemistry) allows at most 8G for all its jobs at once",
            id="parent-memory",
        ),
        pytest.param(
            TREE,
            {"account": "chemistry", "gpus": "2"},
            "gpus",
            "account science (above chemistry) allows at most 1 GPU for all its jobs at once",
            id="parent-gpus",
        ),
        pytest.param(
            TREE | {"root": AccountNode("root", (), JobLimits(cpus=4))},
            {"cpus": "5"},
            "cpus",
            "account root (above physics) allows at most 4 CPUs for all its jobs at once",
            id="root-default-account",
        ),
    ],
)
def test_account_and_parent_limits(tree, raw, field, message):
    with pytest.raises(OptionsError) as caught:
        validate_options({**BASE, **raw}, alice_offer(tree).policy)
    assert caught.value.errors == {field: message}


def test_within_the_account_and_parent_limits_is_accepted():
    raw = {"account": "chemistry", "cpus": "6", "memory": "8G", "gpus": "1"}
    assert validate_options({**BASE, **raw}, alice_offer(TREE).policy).account == "chemistry"


@pytest.mark.parametrize(
    "user, raw",
    [
        pytest.param(
            "alice",
            {"qos": "short", "runtime": "2:00:00", "cpus": "2", "memory": "4G"},
            id="at-the-limit",
        ),
        pytest.param("alice", {"account": "chemistry", "qos": "short"}, id="chemistry-short"),
        pytest.param("alice", {"qos": "long", "gpus": "1", "runtime": "1-00:00:00"}, id="long-gpu"),
        pytest.param(
            "alice", {"runtime": "3:00:00", "cpus": "8"}, id="default-qos-normal-no-limits"
        ),
        pytest.param("bob", {"account": "chemistry", "qos": "normal"}, id="bob-chemistry"),
    ],
)
def test_within_the_limits_is_accepted(user, raw):
    request = validate_options({**BASE, **raw}, offer_for(user, Policy(max_cpus=64)).policy)
    assert request.account == raw.get("account")
    assert request.qos == raw.get("qos")


def test_without_accounting_nothing_more_is_checked():
    request = validate_options({**BASE, "qos": "short", "runtime": "3:00:00"}, Policy())
    assert request.qos == "short" and request.runtime_minutes == 180


def test_the_offer_knows_each_accounts_qos_and_the_default_account():
    policy = offer_for("alice").policy
    assert policy.accounts == ("chemistry", "physics")
    assert dict(policy.account_qos) == {
        "chemistry": ("normal", "short"),
        "physics": ("long", "normal", "short"),
    }
    assert policy.default_account == "physics"
    # the admin's allow-list narrows the default too
    assert offer_for("alice", Policy(accounts=("chemistry",))).policy.default_account is None


# ---------------------------------------------------------------- the page


def test_the_page_preselects_the_default_account_and_labels_each_qos():
    policy = offer_for("alice").policy
    context = form.form_context(policy=policy, partitions=[], values={})
    html = form.render(form.default_template(), context)
    assert '<option value="physics" selected' in html
    assert '<option value="chemistry" >' in html
    assert "short — at most 2:00:00, 2 CPUs, 4G, no GPU" in html
    assert "long — at most 1-00:00:00, 4 CPUs, 8G, 1 GPU" in html
    assert 'data-accounts="physics">long' in html
    assert 'data-accounts="chemistry physics">short' in html
    assert "hpc-accounting-stale" not in html


def test_bobs_page_offers_only_chemistry():
    policy = offer_for("bob").policy
    html = form.render(
        form.default_template(), form.form_context(policy=policy, partitions=[], values={})
    )
    assert '<option value="chemistry" selected' in html
    assert 'value="physics"' not in html and 'value="long"' not in html


def test_a_chosen_account_is_kept_over_the_default():
    policy = offer_for("alice").policy
    context = form.form_context(policy=policy, partitions=[], values={"account": "chemistry"})
    assert context["values"]["account"] == "chemistry"


def test_the_outage_notice_is_shown():
    notice = "Slurm's accounting database is not answering; the accounts shown are from 10:42."
    context = form.form_context(
        policy=offer_for("alice").policy, partitions=[], values={}, accounting_notice=notice
    )
    html = form.render(form.default_template(), context)
    assert "the accounts shown are from 10:42." in html
    assert 'id="hpc-accounting-stale"' in html


def test_accounts_with_limits_of_their_own_say_so():
    policy = dave_offer().policy
    html = form.render(
        form.default_template(), form.form_context(policy=policy, partitions=[], values={})
    )
    assert (
        "physics — at most 0:45:00, 3 CPUs, 6G, 1 GPU; at most 8 CPUs, 16G for all its jobs"
        " at once</option>" in html
    )
    assert "chemistry — at most 6 CPUs for all its jobs at once</option>" in html
    assert form.account_labels(alice_offer(TREE).policy)["chemistry"] == (
        "chemistry — at most 6 CPUs for all its jobs at once; at most 8G, 1 GPU for all jobs"
        " of science"
    )
    # alice's associations have no limits of their own: the names alone
    assert form.account_labels(offer_for("alice").policy) == {
        "chemistry": "chemistry",
        "physics": "physics",
    }
