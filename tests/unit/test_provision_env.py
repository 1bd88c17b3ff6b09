"""The environment a provisioned server gets, without a server: the allow-list, and the operator's
explicit `env` / `pass_env` options (the real processes and containers: tests/integration/test_child_environment.py)."""

from __future__ import annotations

import os

import pytest

from qilbee_backup.errors import UsageError
from qilbee_backup.provision import open_provisioner
from qilbee_backup.provision.base import base_environment, check_env, check_pass_env, chosen_environment
from qilbee_backup.provision.process import PACKAGE_ROOT, ProcessProvisioner

PARENT = {
    "PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
    "TMPDIR": "/var/tmp", "AWS_SECRET_ACCESS_KEY": "s3cret", "QILBEE_API_KEY": "k", "PREFECT_API_KEY": "p",
    "PYTHONPATH": "/elsewhere", "LC": "not a locale variable",
}


def test_the_base_environment_is_the_allow_list_only():
    assert base_environment(PARENT) == {
        "PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
        "TMPDIR": "/var/tmp",
    }


def test_the_operator_chooses_by_name_or_by_value_and_values_win():
    assert chosen_environment(("QILBEE_API_KEY", "UNSET_HERE"), {}, PARENT) == {"QILBEE_API_KEY": "k"}
    assert chosen_environment(("QILBEE_API_KEY",), {"QILBEE_API_KEY": "given"}, PARENT) == {"QILBEE_API_KEY": "given"}
    assert check_pass_env("RUST_LOG, SERVER_SECRET RUST_LOG") == ("RUST_LOG", "SERVER_SECRET")
    assert check_pass_env(None) == () and check_env(None) == {}
    assert check_env({"RUST_LOG": "info", "WORKERS": 4}) == {"RUST_LOG": "info", "WORKERS": "4"}


@pytest.mark.parametrize("bad", [["1ABC"], ["A=B"], ["A B"], [""], [None], 42])
def test_pass_env_takes_variable_names_only(bad):
    with pytest.raises(UsageError, match="pass_env"):
        check_pass_env(bad)


@pytest.mark.parametrize("bad", [{"A=B": "x"}, {"A": "x\0y"}, {"A": None}, {"A": True}, ["A=x"]])
def test_env_takes_names_and_string_values_only(bad):
    with pytest.raises(UsageError, match="env"):
        check_env(bad)


def test_a_custom_command_gets_no_python_variables(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    env = ProcessProvisioner(server_cmd="qilbeedb {data_dir}")._environment()
    assert "PYTHONPATH" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    emulator = ProcessProvisioner()._environment()
    assert emulator["PYTHONPATH"].split(os.pathsep) == [str(PACKAGE_ROOT), "/elsewhere"]
    assert "AWS_SECRET_ACCESS_KEY" not in emulator


def test_both_providers_take_the_options_through_open_provisioner(monkeypatch):
    monkeypatch.setenv("SERVER_SECRET", "marker-passed")
    process = open_provisioner("process", server_cmd="qilbeedb {data_dir}", pass_env=["SERVER_SECRET"],
                               env={"RUST_LOG": "marker-given"})
    assert process._environment()["SERVER_SECRET"] == "marker-passed"
    assert process._environment()["RUST_LOG"] == "marker-given"
    docker = open_provisioner("docker", image="example/qilbeedb:1", pass_env="SERVER_SECRET",
                              env={"RUST_LOG": "marker-given"})
    for provisioner in (process, docker):
        assert "marker" not in repr(provisioner)
