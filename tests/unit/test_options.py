"""hpcspawner.resources.options: value parsers, the one validator, and the config builders."""

from __future__ import annotations

import pytest

from hpcspawner.resources.options import (
    OPTION_FIELDS,
    Environment,
    OptionsError,
    PartitionPolicy,
    Policy,
    Profile,
    ResourceRequest,
    check_defaults,
    environments_from_config,
    format_memory,
    format_runtime,
    parse_memory_mb,
    parse_runtime_minutes,
    partition_policies,
    profiles_from_config,
    validate_options,
)

# ---------------------------------------------------------------- value parsers


@pytest.mark.parametrize(
    ("value", "megabytes"),
    [
        pytest.param("4G", 4096, id="gigabytes"),
        pytest.param("512M", 512, id="megabytes"),
        pytest.param("1T", 1024 * 1024, id="terabytes"),
        pytest.param("2048", 2048, id="plain-number-is-megabytes"),
        pytest.param(2048, 2048, id="int-is-megabytes"),
        pytest.param("4g", 4096, id="lower-case-unit"),
        pytest.param("4GB", 4096, id="GB-suffix"),
        pytest.param("4GiB", 4096, id="GiB-suffix"),
        pytest.param(" 4 G ", 4096, id="spaces-around"),
        pytest.param("1.5G", 1536, id="fraction"),
        pytest.param("0.1G", 103, id="fraction-rounds-up"),
        pytest.param("1536K", 2, id="kilobytes-round-up"),
        pytest.param("1K", 1, id="one-kilobyte-is-one-megabyte"),
        pytest.param("0.5", 1, id="half-megabyte-rounds-up"),
        pytest.param(4.5, 5, id="float-rounds-up"),
    ],
)
def test_parse_memory_mb(value, megabytes):
    assert parse_memory_mb(value) == megabytes


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(True, id="bool-true"),
        pytest.param(False, id="bool-false"),
        pytest.param("", id="empty"),
        pytest.param("lots", id="word"),
        pytest.param("4X", id="unknown-unit"),
        pytest.param("-4G", id="negative"),
        pytest.param(-1, id="negative-int"),
        pytest.param(0, id="zero-int"),
        pytest.param("0", id="zero"),
        pytest.param("0G", id="zero-gigabytes"),
        pytest.param("1e5", id="exponent"),
        pytest.param("inf", id="infinity"),
        pytest.param(float("nan"), id="nan"),
        pytest.param("4 G B x", id="trailing-garbage"),
        pytest.param("4G; rm -rf ~", id="shell"),
        pytest.param(None, id="none"),
        pytest.param([4], id="list"),
    ],
)
def test_parse_memory_mb_rejects(value):
    with pytest.raises(ValueError, match=r"size such as 4G|at least 1M"):
        parse_memory_mb(value)


@pytest.mark.parametrize(
    ("megabytes", "text"),
    [
        pytest.param(4096, "4G", id="gigabytes"),
        pytest.param(1024, "1G", id="one-gigabyte"),
        pytest.param(1536, "1536M", id="not-whole-gigabytes"),
        pytest.param(1, "1M", id="one-megabyte"),
        pytest.param(1024 * 1024, "1T", id="terabyte"),
        pytest.param(3 * 1024 * 1024 + 1024, "3073G", id="not-whole-terabytes"),
    ],
)
def test_format_memory(megabytes, text):
    assert format_memory(megabytes) == text
    assert parse_memory_mb(text) == megabytes


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        pytest.param("90", 90, id="minutes"),
        pytest.param(90, 90, id="int-minutes"),
        pytest.param("1:30", 2, id="minutes-seconds-round-up"),
        pytest.param("0:30", 1, id="half-minute-rounds-up"),
        pytest.param("1:30:00", 90, id="hours-minutes-seconds"),
        pytest.param("1:30:01", 91, id="extra-second-rounds-up"),
        pytest.param("2-00:00:00", 2880, id="days-hours-minutes-seconds"),
        pytest.param("1-01:30", 1530, id="days-hours-minutes"),
        pytest.param("1-2", 1560, id="days-hours"),
        pytest.param(" 1:00:00 ", 60, id="spaces-around"),
        pytest.param("0-00:01:00", 1, id="one-minute-in-day-format"),
    ],
)
def test_parse_runtime_minutes(value, minutes):
    assert parse_runtime_minutes(value) == minutes


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(True, id="bool-true"),
        pytest.param(False, id="bool-false"),
        pytest.param("", id="empty"),
        pytest.param("0", id="zero"),
        pytest.param("0:00:00", id="zero-hms"),
        pytest.param("-5", id="negative"),
        pytest.param("1.5", id="fraction"),
        pytest.param(1.5, id="float"),
        pytest.param("1h", id="unit-suffix"),
        pytest.param("1:2:3:4", id="too-many-colons"),
        pytest.param("1-2-3", id="two-dashes"),
        pytest.param("UNLIMITED", id="unlimited"),
        pytest.param("1:00:00\n#SBATCH --time=0", id="newline"),
        pytest.param(None, id="none"),
    ],
)
def test_parse_runtime_minutes_rejects(value):
    with pytest.raises(ValueError, match=r"time such as 1:00:00|at least one minute"):
        parse_runtime_minutes(value)


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        pytest.param(1, "0:01:00", id="one-minute"),
        pytest.param(59, "0:59:00", id="under-an-hour"),
        pytest.param(60, "1:00:00", id="one-hour"),
        pytest.param(90, "1:30:00", id="ninety"),
        pytest.param(1439, "23:59:00", id="under-a-day"),
        pytest.param(1440, "1-00:00:00", id="one-day"),
        pytest.param(1500, "1-01:00:00", id="day-and-hour"),
        pytest.param(10 * 1440 + 61, "10-01:01:00", id="ten-days"),
    ],
)
def test_format_runtime(minutes, text):
    assert format_runtime(minutes) == text
    assert parse_runtime_minutes(text) == minutes


@pytest.mark.parametrize(
    "parse",
    [
        pytest.param(parse_memory_mb, id="memory"),
        pytest.param(parse_runtime_minutes, id="runtime"),
    ],
)
def test_parse_huge_number_is_a_value_error(parse):
    with pytest.raises(ValueError):
        parse("9" * 400)


def test_validate_huge_memory_is_an_options_error():
    with pytest.raises(OptionsError) as caught:
        validate_options({"memory": "9" * 400}, make_policy())
    assert set(caught.value.errors) == {"memory"}


# ---------------------------------------------------------------- the validator

BASE_DEFAULTS = {"memory": "2G", "runtime": "1:00:00"}


def make_policy(**overrides) -> Policy:
    """A policy like a small site's: two partitions, allow-lists, one environment, profiles."""
    values = {
        "partitions": {
            "debug": PartitionPolicy(
                "debug", max_cpus=4, max_memory_mb=8192, max_runtime_minutes=60, max_gpus=0
            ),
            "gpu": PartitionPolicy("gpu", max_nodes=2, max_gpus=4, max_runtime_minutes=24 * 60),
            "big": PartitionPolicy("big", max_cpus=512, max_memory_mb=2 * 1024 * 1024),
        },
        "accounts": ("proj-a", "proj-b"),
        "qos": ("normal", "high"),
        "reservations": ("course",),
        "environments": {"py312": Environment("py312", prefix="/opt/py312")},
        "profiles": {
            "small": Profile("small", options={"cpus": 2, "memory": "4G", "partition": "debug"}),
            "gpu": Profile("gpu", options={"partition": "gpu", "gpus": 1, "runtime": "4:00:00"}),
        },
        "defaults": dict(BASE_DEFAULTS),
        "max_nodes": 4,
        "max_cpus": 64,
        "max_memory_mb": 256 * 1024,
        "max_gpus": 8,
        "max_runtime_minutes": 24 * 60,
    }
    values.update(overrides)
    return Policy(**values)


def errors_of(raw, policy=None) -> dict[str, str]:
    with pytest.raises(OptionsError) as caught:
        validate_options(raw, policy or make_policy())
    return caught.value.errors


def test_defaults_only():
    request = validate_options({}, make_policy())
    assert request == ResourceRequest(
        partition=None,
        account=None,
        qos=None,
        reservation=None,
        nodes=1,
        cpus=1,
        memory_mb=2048,
        gpus=0,
        runtime_minutes=60,
        profile=None,
        environment=None,
    )
    assert request.memory == "2G"
    assert request.runtime == "1:00:00"
    assert request.to_user_options() == {
        "nodes": 1,
        "cpus": 1,
        "memory": "2G",
        "gpus": 0,
        "runtime": "1:00:00",
    }


def test_admin_defaults_fill_every_field():
    defaults = {
        "partition": "gpu",
        "account": "proj-a",
        "qos": "normal",
        "reservation": "course",
        "nodes": 2,
        "cpus": 8,
        "memory": "16G",
        "gpus": 2,
        "runtime": "8:00:00",
        "environment": "py312",
    }
    request = validate_options({}, make_policy(defaults=defaults))
    assert request.to_user_options() == {**defaults, "memory": "16G", "runtime": "8:00:00"}


@pytest.mark.parametrize(
    "missing",
    [pytest.param("memory", id="memory"), pytest.param("runtime", id="runtime")],
)
def test_memory_and_runtime_required_without_default(missing):
    defaults = {key: value for key, value in BASE_DEFAULTS.items() if key != missing}
    errors = errors_of({}, make_policy(defaults=defaults))
    assert errors == {missing: "is required (the admin set no default)"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"profile": "small"},
            {"partition": "debug", "cpus": 2, "memory_mb": 4096, "runtime_minutes": 60},
            id="profile-over-defaults",
        ),
        pytest.param(
            {"profile": "small", "cpus": 3},
            {"partition": "debug", "cpus": 3, "memory_mb": 4096, "runtime_minutes": 60},
            id="user-over-profile",
        ),
        pytest.param(
            {"profile": "small", "memory": "1G", "runtime": "0:30:00"},
            {"partition": "debug", "cpus": 2, "memory_mb": 1024, "runtime_minutes": 30},
            id="user-over-profile-and-defaults",
        ),
        pytest.param(
            {"profile": "gpu", "partition": "big", "gpus": 0},
            {"partition": "big", "gpus": 0, "runtime_minutes": 240, "memory_mb": 2048},
            id="user-overrides-profile-partition",
        ),
    ],
)
def test_profile_merge_order(raw, expected):
    request = validate_options(raw, make_policy())
    assert request.profile == raw["profile"]
    for name, value in expected.items():
        assert getattr(request, name) == value, name


def test_profile_chosen_by_default():
    request = validate_options({}, make_policy(defaults={**BASE_DEFAULTS, "profile": "gpu"}))
    assert (request.profile, request.partition, request.gpus) == ("gpu", "gpu", 1)


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param("huge", id="unknown-name"),
        pytest.param(["small"], id="list"),
        pytest.param(7, id="int"),
    ],
)
def test_unknown_profile(profile):
    errors = errors_of({"profile": profile})
    assert "is not an available profile (choose from: gpu, small)" in errors["profile"]


@pytest.mark.parametrize(
    ("raw", "unknown"),
    [
        pytest.param({"partiton": "debug"}, "'partiton'", id="typo"),
        pytest.param({"cmd": "bash", "env": {}}, "'cmd', 'env'", id="two-sorted"),
        pytest.param({"memory_mb": 1024}, "'memory_mb'", id="internal-name"),
        pytest.param({1: "x"}, "'1'", id="non-string-key"),
        pytest.param({"x" * 100: 1}, repr("x" * 40), id="long-key-shortened"),
    ],
)
def test_unknown_keys_rejected_by_name(raw, unknown):
    errors = errors_of(raw)
    assert errors == {
        "options": f"unknown option(s) {unknown}; allowed: {', '.join(OPTION_FIELDS)}"
    }


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        pytest.param(
            {"partition": "gpu2"},
            "partition",
            "'gpu2' is not an available partition (choose from: big, debug, gpu)",
            id="partition-not-in-policy",
        ),
        pytest.param(
            {"partition": "bad name"},
            "partition",
            "'bad name' is not a valid partition name",
            id="partition-not-a-name",
        ),
        pytest.param(
            {"account": "proj-c"},
            "account",
            "you may not charge Slurm account 'proj-c' (your accounts: proj-a, proj-b)",
            id="account-not-allowed",
        ),
        pytest.param(
            {"qos": "urgent"},
            "qos",
            "'urgent' is not an available qos (choose from: high, normal)",
            id="qos-not-allowed",
        ),
        pytest.param(
            {"reservation": "maint"},
            "reservation",
            "'maint' is not an available reservation (choose from: course)",
            id="reservation-not-allowed",
        ),
        pytest.param(
            {"environment": "py27"},
            "environment",
            "'py27' is not an available environment (choose from: py312)",
            id="environment-must-exist",
        ),
        pytest.param(
            {"account": "$(id)"},
            "account",
            "'$(id)' is not a valid account name",
            id="account-shell",
        ),
        pytest.param(
            {"qos": "a" * 65},
            "qos",
            "is not a valid qos name",
            id="name-too-long",
        ),
        pytest.param(
            {"account": 42},
            "account",
            "'42' is not a valid account name",
            id="name-not-a-string",
        ),
    ],
)
def test_choices(raw, field, message):
    errors = errors_of(raw)
    assert list(errors) == [field]
    assert message in errors[field]


def test_allow_lists_none_allow_any_valid_name():
    policy = make_policy(partitions={}, accounts=None, qos=None, reservations=None)
    request = validate_options(
        {"partition": "anything", "account": "p1", "qos": "q.1", "reservation": "r+1"}, policy
    )
    assert (request.partition, request.account, request.qos, request.reservation) == (
        "anything",
        "p1",
        "q.1",
        "r+1",
    )


def test_no_environments_configured():
    errors = errors_of({"environment": "py312"}, make_policy(environments={}))
    assert errors == {"environment": "'py312' is not an available environment (choose from: none)"}


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        pytest.param(
            {"partition": "debug", "runtime": "2:00:00"},
            "runtime",
            "Walltime 2:00:00 exceeds the 1:00:00 limit of partition debug",
            id="walltime-partition",
        ),
        pytest.param(
            {"runtime": "2-00:00:00"},
            "runtime",
            "Walltime 2-00:00:00 exceeds the 1-00:00:00 limit",
            id="walltime-global",
        ),
        pytest.param(
            {"partition": "debug", "cpus": 8},
            "cpus",
            "CPUs 8 exceeds the limit of 4 of partition debug",
            id="cpus-partition",
        ),
        pytest.param(
            {"cpus": "65"},
            "cpus",
            "CPUs 65 exceeds the limit of 64",
            id="cpus-global",
        ),
        pytest.param(
            {"partition": "big", "cpus": 100},
            "cpus",
            "CPUs 100 exceeds the limit of 64",
            id="cpus-global-below-partition",
        ),
        pytest.param(
            {"partition": "debug", "memory": "16G"},
            "memory",
            "Memory 16G exceeds the limit of 8G of partition debug",
            id="memory-partition",
        ),
        pytest.param(
            {"memory": "257G"},
            "memory",
            "Memory 257G exceeds the limit of 256G",
            id="memory-global",
        ),
        pytest.param(
            {"partition": "gpu", "nodes": 3},
            "nodes",
            "Nodes 3 exceeds the limit of 2 of partition gpu",
            id="nodes-partition",
        ),
        pytest.param(
            {"nodes": 5},
            "nodes",
            "Nodes 5 exceeds the limit of 4",
            id="nodes-global",
        ),
        pytest.param(
            {"partition": "debug", "gpus": 1},
            "gpus",
            "GPUs 1 exceeds the limit of 0 of partition debug",
            id="gpus-partition-none",
        ),
        pytest.param(
            {"partition": "gpu", "gpus": 5},
            "gpus",
            "GPUs 5 exceeds the limit of 4 of partition gpu",
            id="gpus-partition",
        ),
        pytest.param(
            {"gpus": 9},
            "gpus",
            "GPUs 9 exceeds the limit of 8",
            id="gpus-global",
        ),
    ],
)
def test_limits(raw, field, message):
    assert errors_of(raw) == {field: message}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"partition": "debug", "runtime": "1:00:00"}, id="walltime-at-limit"),
        pytest.param({"partition": "debug", "cpus": 4, "memory": "8G"}, id="cpus-memory-at-limit"),
        pytest.param({"partition": "gpu", "nodes": 2, "gpus": 4}, id="nodes-gpus-at-limit"),
        pytest.param({"cpus": 64, "memory": "256G", "runtime": "24:00:00"}, id="global-at-limit"),
    ],
)
def test_limits_are_inclusive(raw):
    validate_options(raw, make_policy())


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        pytest.param({"cpus": 0}, "cpus", "must be at least 1", id="cpus-zero"),
        pytest.param({"nodes": "0"}, "nodes", "must be at least 1", id="nodes-zero"),
        pytest.param({"gpus": -1}, "gpus", "must be at least 0", id="gpus-negative"),
        pytest.param({"cpus": "-1"}, "cpus", "'-1' is not a whole number", id="cpus-negative-str"),
        pytest.param({"cpus": "2.5"}, "cpus", "'2.5' is not a whole number", id="cpus-fraction"),
        pytest.param({"cpus": 2.0}, "cpus", "'2.0' is not a whole number", id="cpus-float"),
        pytest.param({"cpus": True}, "cpus", "must be a whole number", id="cpus-bool"),
        pytest.param({"gpus": False}, "gpus", "must be a whole number", id="gpus-bool"),
        pytest.param({"memory": True}, "memory", "must be a size", id="memory-bool"),
        pytest.param({"runtime": True}, "runtime", "must be a time", id="runtime-bool"),
        pytest.param({"cpus": "2000000"}, "cpus", "exceeds the limit of 1000000", id="cpus-sanity"),
        pytest.param({"memory": "lots"}, "memory", "'lots' is not a size", id="memory-word"),
        pytest.param({"runtime": "soon"}, "runtime", "'soon' is not a time", id="runtime-word"),
    ],
)
def test_bad_values(raw, field, message):
    errors = errors_of(raw)
    assert list(errors) == [field]
    assert message in errors[field]


def test_counts_accept_strings_with_spaces():
    request = validate_options({"cpus": " 4 ", "nodes": "2", "gpus": "0"}, make_policy())
    assert (request.cpus, request.nodes, request.gpus) == (4, 2, 0)


def test_empty_strings_and_none_mean_default():
    raw = dict.fromkeys(OPTION_FIELDS, "")
    raw.update(cpus=None, memory=None)
    assert validate_options(raw, make_policy()) == validate_options({}, make_policy())


def test_empty_string_keeps_profile_value():
    request = validate_options({"profile": "small", "cpus": "", "memory": None}, make_policy())
    assert (request.cpus, request.memory_mb) == (2, 4096)


def test_multiple_errors_reported_at_once():
    with pytest.raises(OptionsError) as caught:
        validate_options(
            {
                "bogus": 1,
                "partition": "debug",
                "cpus": 8,
                "memory": "lots",
                "runtime": "3:00:00",
                "account": "nope",
                "environment": "py27",
            },
            make_policy(),
        )
    errors = caught.value.errors
    assert sorted(errors) == ["account", "cpus", "environment", "memory", "options", "runtime"]
    summary = str(caught.value)
    assert summary == caught.value.summary()
    for name, message in errors.items():
        assert f"{name}: {message}" in summary


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="none"),
        pytest.param([("cpus", 2)], id="list"),
        pytest.param("cpus=2", id="string"),
        pytest.param(42, id="int"),
    ],
)
def test_non_dict_input(raw):
    assert errors_of(raw) == {"options": "must be an object of option names to values"}


def test_user_options_round_trip():
    raw = {"profile": "gpu", "account": "proj-b", "qos": "high", "environment": "py312"}
    request = validate_options(raw, make_policy())
    assert validate_options(request.to_user_options(), make_policy()) == request


def test_options_error_is_a_value_error():
    error = OptionsError({"cpus": "bad", "memory": "worse"})
    assert isinstance(error, ValueError)
    assert str(error) == "cpus: bad; memory: worse"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("account", "proj\n", id="account"),
        pytest.param("qos", "normal\n", id="qos"),
        pytest.param("reservation", "course\n", id="reservation"),
        pytest.param("partition", "debug\n", id="partition-without-partition-policy"),
    ],
)
def test_name_with_trailing_newline_rejected_without_allow_list(field, value):
    policy = make_policy(partitions={}, accounts=None, qos=None, reservations=None)
    assert list(errors_of({field: value}, policy)) == [field]


# ---------------------------------------------------------------- policy from config


def test_partition_policies():
    policies = partition_policies(
        {
            "debug": {
                "description": "Quick tests",
                "max_nodes": 1,
                "max_cpus": 4,
                "max_memory": "8G",
                "max_gpus": 0,
                "max_runtime": "1:00:00",
            },
            "long": {},
        }
    )
    assert policies == {
        "debug": PartitionPolicy(
            "debug",
            description="Quick tests",
            max_nodes=1,
            max_cpus=4,
            max_memory_mb=8192,
            max_gpus=0,
            max_runtime_minutes=60,
        ),
        "long": PartitionPolicy("long"),
    }


def test_environments_from_config():
    environments = environments_from_config(
        {
            "py312": {
                "description": "Python 3.12",
                "prefix": "/opt/envs/py312",
                "modules": ["gcc/13.2", "cuda/12.4"],
                "prologue": "export OMP_NUM_THREADS=1",
            },
            "bare": {},
        }
    )
    assert environments == {
        "py312": Environment(
            "py312",
            description="Python 3.12",
            prefix="/opt/envs/py312",
            modules=("gcc/13.2", "cuda/12.4"),
            prologue="export OMP_NUM_THREADS=1",
        ),
        "bare": Environment("bare"),
    }


def test_profiles_from_config():
    profiles = profiles_from_config(
        {"small": {"description": "2 CPUs", "options": {"cpus": 2, "memory": "4G"}}, "empty": {}}
    )
    assert profiles == {
        "small": Profile("small", description="2 CPUs", options={"cpus": 2, "memory": "4G"}),
        "empty": Profile("empty"),
    }


def test_check_defaults():
    assert check_defaults({"memory": "4G", "runtime": "1:00:00"}) == {
        "memory": "4G",
        "runtime": "1:00:00",
    }


@pytest.mark.parametrize(
    ("build", "config", "message"),
    [
        pytest.param(
            partition_policies,
            {"debug": {"max_cpu": 4, "maxnodes": 1}},
            "partitions['debug'] has unknown key(s) 'max_cpu', 'maxnodes'; "
            "allowed: description, max_cpus, max_gpus, max_memory, max_nodes, max_runtime",
            id="partition-unknown-keys",
        ),
        pytest.param(
            environments_from_config,
            {"py": {"module": ["gcc"]}},
            "environments['py'] has unknown key(s) 'module'; "
            "allowed: container, description, modules, prefix, prologue",
            id="environment-unknown-key",
        ),
        pytest.param(
            profiles_from_config,
            {"small": {"cpus": 2}},
            "profiles['small'] has unknown key(s) 'cpus'; allowed: description, options",
            id="profile-unknown-key",
        ),
        pytest.param(
            check_defaults,
            {"memroy": "4G"},
            "default_options has unknown key(s) ['memroy']; allowed: " + ", ".join(OPTION_FIELDS),
            id="defaults-unknown-key",
        ),
    ],
)
def test_config_unknown_keys(build, config, message):
    with pytest.raises(ValueError) as caught:
        build(config)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("build", "config", "message"),
    [
        pytest.param(
            partition_policies, {"debug": 4}, "partitions['debug'] must be a dict, not int", id="p"
        ),
        pytest.param(
            partition_policies,
            {"debug": {"max_memory": "lots"}},
            "partitions['debug']['max_memory']: 'lots' is not a size",
            id="partition-bad-memory",
        ),
        pytest.param(
            partition_policies,
            {"debug": {"max_runtime": "forever"}},
            "partitions['debug']['max_runtime']: 'forever' is not a time",
            id="partition-bad-runtime",
        ),
        pytest.param(
            partition_policies,
            {"debug": {"max_cpus": "four"}},
            "partitions['debug']['max_cpus']: 'four' is not a whole number",
            id="partition-bad-count",
        ),
        pytest.param(
            partition_policies,
            {"debug": {"description": 3}},
            "partitions['debug']['description']: must be a string",
            id="partition-bad-description",
        ),
        pytest.param(
            partition_policies, {"de bug": {}}, "is not a valid partition name", id="partition-name"
        ),
        pytest.param(
            environments_from_config,
            {"py": {"modules": "gcc"}},
            "environments['py']['modules']: must be a list",
            id="environment-modules-not-a-list",
        ),
        pytest.param(
            environments_from_config,
            {"py": {"modules": ["gcc; rm -rf /"]}},
            "environments['py']['modules']: 'gcc; rm -rf /' is not a module name",
            id="environment-bad-module",
        ),
        pytest.param(
            environments_from_config,
            {"py 3": {}},
            "is not a valid environment name",
            id="environment-name",
        ),
        pytest.param(
            profiles_from_config,
            {"small": {"options": ["cpus"]}},
            "profiles['small']['options']: must be a dict",
            id="profile-options-not-a-dict",
        ),
        pytest.param(
            profiles_from_config,
            {"small": {"options": {"cpu": 2}}},
            "profiles['small']['options'] has unknown option(s) 'cpu'; allowed: partition,",
            id="profile-unknown-option",
        ),
        pytest.param(
            profiles_from_config,
            {"small": {"options": {"profile": "big"}}},
            "profiles['small']['options'] has unknown option(s) 'profile'; allowed:",
            id="profile-may-not-name-a-profile",
        ),
    ],
)
def test_config_bad_values(build, config, message):
    with pytest.raises(ValueError) as caught:
        build(config)
    assert message in str(caught.value)


def test_profile_unknown_option_names_allowed():
    with pytest.raises(ValueError) as caught:
        profiles_from_config({"small": {"options": {"cpu": 2}}})
    assert "allowed: " + ", ".join(f for f in OPTION_FIELDS if f != "profile") in str(caught.value)


def test_environment_name_with_trailing_newline_rejected():
    with pytest.raises(ValueError, match="is not a valid environment name"):
        environments_from_config({"py\n": {}})
