"""LocalSlurmDriver.install_files: the internal-TLS files land 0700/0600, content via stdin only.

Runs the real ``install`` and ``dd`` (no Slurm needed) as the current user (prefix ``[]``).
"""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from hpcspawner.slurm.local import LocalSlurmDriver


def test_files_are_private_and_content_never_in_argv(tmp_path):
    driver = LocalSlurmDriver(user_command_prefix=[])
    seen_argv = []
    real_run = driver.run

    async def spy(argv, **kwargs):
        seen_argv.append(list(argv))
        return await real_run(argv, **kwargs)

    driver.run = spy
    directory = tmp_path / "certs" / "default"
    key = b"-----BEGIN PRIVATE KEY-----\nsecret-key-material\n-----END PRIVATE KEY-----\n"
    asyncio.run(
        driver.install_files("nobody", str(directory), {"server.key": key, "ca.crt": b"ca"})
    )
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name, content in (("server.key", key), ("ca.crt", b"ca")):
        path = directory / name
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.read_bytes() == content
    assert not any("secret-key-material" in " ".join(argv) for argv in seen_argv)
    # a second start replaces shorter content completely
    asyncio.run(driver.install_files("nobody", str(directory), {"server.key": b"new"}))
    assert (directory / "server.key").read_bytes() == b"new"


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", ".."])
def test_only_plain_file_names(tmp_path, name):
    driver = LocalSlurmDriver(user_command_prefix=[])
    with pytest.raises(ValueError, match="plain file name"):
        asyncio.run(driver.install_files("nobody", str(tmp_path), {name: b"x"}))
