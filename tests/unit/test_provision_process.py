"""ProcessProvisioner without a server: command templates, ports, environment, and the PID safety check."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from qilbee_backup.errors import UsageError
from qilbee_backup.provision import Instance, ProcessProvisioner, ProvisionError
from qilbee_backup.provision.process import PACKAGE_ROOT, names_data_dir, parse_server_cmd, read_cmdline


def test_the_default_command_runs_our_emulator_with_this_interpreter():
    assert parse_server_cmd(None) == [
        sys.executable, "-m", "qilbee_backup.emulator",
        "--data-dir", "{data_dir}", "--host", "{host}", "--port", "{port}",
    ]


def test_a_string_command_is_split_like_a_shell_without_running_one():
    assert parse_server_cmd("qilbeedb {data_dir}") == ["qilbeedb", "{data_dir}"]
    assert parse_server_cmd("'/opt/qilbee db/bin/qilbeedb' {data_dir} ; rm -rf /") == [
        "/opt/qilbee db/bin/qilbeedb", "{data_dir}", ";", "rm", "-rf", "/",
    ]
    for bad in ("", [], ["qilbeedb", ""], "qilbeedb 'unclosed"):
        with pytest.raises(UsageError):
            parse_server_cmd(bad)
    with pytest.raises(UsageError, match=r"unknown placeholder \{datadir\}"):
        ProcessProvisioner(server_cmd="qilbeedb {datadir}")


def test_a_command_without_a_port_placeholder_serves_7474():
    real = ProcessProvisioner(server_cmd="qilbeedb {data_dir}")
    assert real._choose_port(None) == 7474
    assert real._choose_port(7474) == 7474
    with pytest.raises(UsageError, match="no \\{port\\} placeholder, so it serves 7474, not 8000"):
        real._choose_port(8000)
    emulator = ProcessProvisioner()
    assert emulator._choose_port(8123) == 8123
    assert emulator._choose_port(None) not in (0, 7474)


def test_the_environment_lets_the_emulator_import_from_a_checkout(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    env = ProcessProvisioner(env={"QILBEE_EXTRA": "1"})._environment()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(PACKAGE_ROOT), "/somewhere/else"]
    assert (PACKAGE_ROOT / "qilbee_backup" / "__init__.py").is_file()
    assert env["QILBEE_EXTRA"] == "1"


def test_repr_shows_no_arguments_or_environment():
    provisioner = ProcessProvisioner(server_cmd="qilbeedb {data_dir} --api-key qilbee_live_s3cret",
                                     env={"QILBEE_API_KEY": "qilbee_live_s3cret"})
    assert "s3cret" not in repr(provisioner)
    assert "qilbeedb" in repr(provisioner)


def test_names_data_dir_matches_the_directory_not_a_prefix_of_it():
    data = Path("/srv/dr/data")
    assert names_data_dir(["python", "-m", "qilbee_backup.emulator", "--data-dir", "/srv/dr/data"], data)
    assert names_data_dir(["qilbeedb", "--data-dir=/srv/dr/data"], data)
    assert names_data_dir(["sh", "-c", "exec qilbeedb /srv/dr/data"], data)
    assert names_data_dir(["qilbeedb", "/srv/dr/data with space"], Path("/srv/dr/data with space"))
    assert not names_data_dir(["qilbeedb", "/srv/dr/data2"], data)
    assert not names_data_dir(["qilbeedb", "/srv/dr/data/snapshots"], data)
    assert not names_data_dir([], data)


def test_read_cmdline_of_this_process_and_of_no_process():
    mine = read_cmdline(os.getpid())
    assert mine is not None and Path(mine[0]).name.startswith("python")
    assert read_cmdline(2**22 + 12345) is None  # above pid_max: never a live process


def test_a_recorded_pid_that_is_not_the_server_is_never_signalled(tmp_path):
    """After a restart the PID may belong to another program: here, this test process."""
    provisioner = ProcessProvisioner()
    stranger = Instance(provider="process", url="http://127.0.0.1:1", data_dir=tmp_path / "data",
                        port=1, pid=os.getpid())
    assert not provisioner.is_running(stranger)
    provisioner.stop(stranger)  # would SIGTERM this very test if the check were missing
    provisioner.stop(Instance(provider="process", url="u", data_dir=tmp_path, port=1, pid=None))


def test_a_docker_instance_is_not_a_process_instance(tmp_path):
    other = Instance(provider="docker", url="http://127.0.0.1:1", data_dir=tmp_path, port=1, container="c")
    with pytest.raises(UsageError, match="a docker instance cannot be managed by the process provisioner"):
        ProcessProvisioner().stop(other)


def test_a_missing_program_is_a_one_line_provision_error(tmp_path):
    provisioner = ProcessProvisioner(server_cmd=[str(tmp_path / "no-such-qilbeedb"), "{data_dir}", "{port}"])
    with pytest.raises(ProvisionError, match="cannot run the server command .*no-such-qilbeedb.*No such file") as caught:
        provisioner.start(tmp_path / "data")
    assert "\n" not in str(caught.value)


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match="health_timeout"):
        ProcessProvisioner(health_timeout=0)
    with pytest.raises(UsageError, match="host must be an address"):
        ProcessProvisioner(host="")
