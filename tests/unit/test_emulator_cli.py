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


def test_bad_user_spec_is_a_usage_error():
    with pytest.raises(SystemExit) as caught:
        _parse("--data-dir", "d", "--user", "no-password")
    assert caught.value.code == 2


def test_negative_seed_is_refused(tmp_path, capsys):
    assert run(_parse("--data-dir", str(tmp_path / "d"), "--seed-nodes", "-1")) == 2
    assert "--seed-nodes" in capsys.readouterr().err
