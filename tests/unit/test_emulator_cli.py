"""The emulator's command-line options, as the top-level CLI reuses them."""

import argparse

import pytest

from qilbee_backup.emulator.auth import API_KEY_ENV
from qilbee_backup.emulator.cli import add_arguments, run


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    args = _parse("--data-dir", "d")
    assert (args.host, args.port, args.seed_nodes, args.admin_api, args.api_key) == ("127.0.0.1", 7474, 0, True, None)
    assert args.admin_user == "admin" and args.users == []


def test_flags_and_secrets_stay_out_of_the_namespace_repr(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env-key")
    args = _parse("--data-dir", "d", "--no-admin-api", "--seed-nodes", "5", "--user", "ops:pw-123",
                  "--admin-password", "adm-456")
    assert args.admin_api is False and args.seed_nodes == 5
    assert args.api_key == "from-env-key" and args.users == [("ops", "pw-123")]
    assert not any(secret in repr(args) for secret in ("from-env-key", "pw-123", "adm-456"))


@pytest.mark.parametrize("argv", [
    ["--user", "no-password"],
    ["--seed-nodes", "-1"],
    ["--seed-nodes", "10000001"],
    ["--port", "65536"],
    ["--port", " 7474x"],
    ["--host", "999.1.1.1"],
    ["--host", "bad_host"],
    ["--api-key", "with space"],
    ["--admin-user", " "],
    ["--admin-password", ""],
    ["--log-level", "loud"],
], ids=lambda argv: " ".join(argv))
def test_bad_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        _parse("--data-dir", "d", *argv)
    assert caught.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_good_edge_values_pass():
    args = _parse("--data-dir", "d", "--port", "0", "--host", "::1", "--seed-nodes", "10000000", "--log-level", "INFO")
    assert (args.port, args.host, args.seed_nodes, args.log_level) == (0, "::1", 10_000_000, "info")
    assert _parse("--data-dir", "d", "--host", "db-1.example.org").host == "db-1.example.org"


def test_an_empty_key_from_the_environment_is_refused(monkeypatch, capsys):
    monkeypatch.setenv(API_KEY_ENV, "")
    with pytest.raises(SystemExit) as caught:
        _parse("--data-dir", "d")
    assert caught.value.code == 2 and API_KEY_ENV in capsys.readouterr().err


def test_a_login_name_given_twice_is_refused_before_anything_starts(tmp_path, capsys):
    assert run(_parse("--data-dir", str(tmp_path / "d"), "--user", "admin:pw")) == 2
    assert run(_parse("--data-dir", str(tmp_path / "d"), "--user", "a:1", "--user", "a:2")) == 2
    assert capsys.readouterr().err.count("qilbee-backup: error: argument --user:") == 2
    assert not (tmp_path / "d").exists()
