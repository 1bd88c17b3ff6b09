"""A restore started from the UI asks before it touches its target, as a disaster recovery asks before DNS:
the run pauses with what is restored and what it replaces; declined, nothing is touched."""

from __future__ import annotations

import pytest

from flows.backup import backup
from flows.restore import restore
from qilbee_backup.errors import UsageError
from qilbee_backup.recovery import RecoveryError
from tests.flows.approvals import InThread, pause_description, resume, wait_paused


@pytest.fixture
def target_in_use(emulator, tmp_path):
    """A backup, and a data directory that holds other data now (the primary's, as far as the restore knows)."""
    repo = str(tmp_path / "repo")
    made = backup(source=emulator.url, repos=[repo])
    target = tmp_path / "data"
    target.mkdir()
    (target / "OLD-DATA").write_text("what the server had before\n")
    return repo, made, target


@pytest.mark.parametrize("approve", [False, True])
def test_restore_pauses_before_the_target_is_touched(target_in_use, approve):
    from flows import deployed  # a pause needs a flow run

    repo, made, target = target_in_use
    worker = InThread(deployed.restore, repo=repo, data_dir=str(target), replace=True, approve=True)
    paused = wait_paused("restore", lambda p: p.get("data_dir") == str(target), worker)
    assert sorted(p.name for p in target.iterdir()) == ["OLD-DATA"]  # nothing touched while waiting
    shown = pause_description(paused.id)
    assert f"Restore backup `{made['backup_id']}` into `{target}`?" in shown
    assert "**holds data now**" in shown and "put back otherwise" in shown
    assert f"{made['stats']['nodeCount']:,} nodes" in shown
    resume(paused.id, approve=approve, decided_by="bob@example.com", note="ticket 4711")
    outcome = worker.join()
    if approve:
        result = outcome["result"]
        assert result["backup_id"] == made["backup_id"] and result["replaced_existing"] is True
        assert result["integrity"]["ok"] and result["approval"]["approved"] is True
        assert result["approval"]["decided_by"] == "bob@example.com"
        assert not (target / "OLD-DATA").exists() and (target / "CURRENT").exists()
    else:
        error = outcome.get("error")
        assert isinstance(error, RecoveryError), outcome
        assert str(error) == (f"the restore of {made['backup_id']} into {target} was declined by bob@example.com "
                              "(ticket 4711); nothing was touched")
        assert sorted(p.name for p in target.iterdir()) == ["OLD-DATA"]
        assert not list(target.parent.glob("data.*")) and not list(target.parent.glob(".data*"))  # nothing set aside


def test_an_approval_needs_a_prefect_api_and_nothing_is_touched(target_in_use):
    repo, _, target = target_in_use
    with pytest.raises(UsageError, match="waiting for an approval needs a Prefect API"):
        restore(repo=repo, data_dir=str(target), replace=True, approve=True)  # run directly: nobody to ask
    assert sorted(p.name for p in target.iterdir()) == ["OLD-DATA"]


def test_without_approve_the_restore_runs_as_before(target_in_use):
    repo, made, target = target_in_use
    result = restore(repo=repo, data_dir=str(target), replace=True)
    assert result["backup_id"] == made["backup_id"] and "approval" not in result
    assert (target / "CURRENT").exists() and not (target / "OLD-DATA").exists()
