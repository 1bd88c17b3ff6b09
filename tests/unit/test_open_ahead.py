"""Opening a repository ahead (ahead.open_ahead): the KDF and the first reads run in a thread while
the command goes on; open_repository takes the result. Only a success is kept, so every error is met
again, in the caller's thread, as without it; a prompt is never asked from the thread."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from qilbee_backup import crypto, key_cache
from qilbee_backup.crypto import WrongPassphrase
from qilbee_backup.ahead import forget as forget_ahead
from qilbee_backup.ahead import open_ahead
from qilbee_backup.repository import Repository, open_repository

PASSPHRASE = "open-ahead passphrase"


@pytest.fixture
def kdf_threads(monkeypatch):
    """The name of the thread each KDF ran in."""
    names: list[str] = []
    real = crypto._kek

    def counted(*args):
        names.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(crypto, "_kek", counted)
    yield names
    forget_ahead()


@pytest.fixture
def encrypted_repo(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = str(tmp_path / "repo")
    key_cache.enable(False)  # made outside a command: nothing remembered yet
    Repository.open(url).init(passphrase=PASSPHRASE)
    monkeypatch.setenv("QILBEE_PASSWORD", PASSPHRASE)
    return url


def test_the_kdf_runs_once_in_the_thread_and_the_repository_is_taken_unlocked(encrypted_repo, kdf_threads):
    open_ahead(encrypted_repo)
    repo = open_repository(encrypted_repo)
    assert repo.key is not None and repo.url == encrypted_repo
    assert kdf_threads == ["open-ahead"]


def test_a_wrong_passphrase_is_raised_where_the_caller_unlocks_without_a_second_kdf(encrypted_repo, kdf_threads,
                                                                                    monkeypatch):
    monkeypatch.setenv("QILBEE_PASSWORD", "not it")
    open_ahead(encrypted_repo)
    repo = open_repository(encrypted_repo, must_exist=False)  # as a backup opens: unlocked later, in prepare
    assert repo.key is None
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        repo.unlock()
    assert kdf_threads == ["open-ahead"]
    open_ahead(encrypted_repo)
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        open_repository(encrypted_repo)


def test_a_prompt_is_asked_only_from_the_callers_thread(encrypted_repo, kdf_threads, monkeypatch):
    monkeypatch.delenv("QILBEE_PASSWORD")
    asked: list[str] = []

    def prompt() -> str:
        asked.append(threading.current_thread().name)
        return PASSPHRASE

    crypto.add_password_source(prompt, first=False, interactive=True)
    try:
        open_ahead(encrypted_repo)
        repo = open_repository(encrypted_repo)
    finally:
        crypto.PASSWORDS.remove(prompt)
    assert repo.key is not None
    assert asked == ["MainThread"] and kdf_threads == ["MainThread"]


def test_other_options_or_a_forgotten_ahead_open_anew(encrypted_repo, kdf_threads):
    open_ahead(encrypted_repo)
    assert open_repository(encrypted_repo, storage_class="STANDARD_IA").key is not None  # not what was opened ahead
    open_ahead(encrypted_repo)
    forget_ahead()
    assert open_repository(encrypted_repo).key is not None
    assert kdf_threads.count("MainThread") == 2


def test_a_location_without_a_repository_is_reported_by_the_caller(tmp_path, kdf_threads):
    from qilbee_backup.errors import NotFound

    url = str(tmp_path / "nothing-here")
    open_ahead(url)
    with pytest.raises(NotFound):
        open_repository(url)
    assert not (tmp_path / "nothing-here").exists()  # opening ahead reads only


def test_the_key_file_that_opened_it_lets_the_next_command_start_the_kdf_before_reaching_it(encrypted_repo, kdf_threads,
                                                                                          tmp_path):
    from qilbee_backup import key_cache

    open_ahead(encrypted_repo)
    assert open_repository(encrypted_repo).key is not None
    remembered = key_cache.recall(encrypted_repo)
    assert remembered is not None and json.loads((Path(encrypted_repo) / "keys" / f"{remembered.key_id}.json")
                                                 .read_text()) == remembered.key_file
    assert oct(next((tmp_path / "cache" / "qilbee-backup" / "keys").iterdir()).stat().st_mode & 0o777) == "0o600"
    forget_ahead()
    open_ahead(encrypted_repo)
    assert open_repository(encrypted_repo).key is not None
    assert kdf_threads == ["open-ahead", "open-ahead-kdf"]  # the second one ran on the cached key file


def test_a_cached_key_file_the_repository_no_longer_holds_is_not_used(encrypted_repo, kdf_threads, monkeypatch):
    from qilbee_backup import key_cache

    open_ahead(encrypted_repo)
    first = open_repository(encrypted_repo)
    forget_ahead()
    # The passphrase changes (key passwd): the cached key file is gone from the repository.
    monkeypatch.setenv("QILBEE_PASSWORD", "the new one")
    new_id = first.change_passphrase("the new one")
    open_ahead(encrypted_repo)
    repo = open_repository(encrypted_repo)
    assert repo.key is not None and repo.key.key_id == new_id
    assert key_cache.recall(encrypted_repo).key_id == new_id
    # A cache entry someone planted (a key file of theirs, their passphrase) is never used either.
    other = Path(encrypted_repo).parent / "other"
    Repository.open(str(other)).init(passphrase="the new one")
    planted_id = next((other / "keys").iterdir()).stem
    planted = key_cache.Remembered(json.loads((other / "config.json").read_text())["id"], planted_id,
                                   json.loads((other / "keys" / f"{planted_id}.json").read_text()))
    key_cache.remember(encrypted_repo, planted)
    forget_ahead()
    kdf_threads.clear()
    open_ahead(encrypted_repo)
    repo = open_repository(encrypted_repo)
    assert repo.key is not None and repo.key.key_id == new_id
    assert "open-ahead" in kdf_threads  # opened from the repository's own key file


def test_nothing_is_remembered_for_a_command_that_never_takes_what_was_opened(encrypted_repo, kdf_threads, tmp_path):
    """A command refused for bad input opened its repository ahead, then stopped: no cache file written."""
    open_ahead(encrypted_repo)
    forget_ahead()
    assert not (tmp_path / "cache" / "qilbee-backup" / "keys").exists()
