"""SIGKILL at random points of backup, restore and prune: the real CLI, a local and an S3 repository.

Backups fan out to both repositories; each restore and prune works on one of them, chosen at random.
After each killed backup or prune: every listed backup of the repositories it wrote passes
`verify --read-data`, and the next backup succeeds (the dead run's lock is taken over at once).
After each killed restore: its target is absent or whole (never half-written), and the next restore
into it succeeds, byte for byte, leaving nothing beside it. At the end every backup is verified again.
Kill points are spread over one unkilled run's duration, measured first.
"""

from __future__ import annotations

import os

from tests.faults.conftest import ROUNDS
from tests.faults.harness import check_repository, check_restore, leftovers, tree


def test_sigkill_at_random_points(repos, source, cli, rng, trials, tmp_path):
    backup = source.backup(*repos)

    def prune(repo) -> tuple[str, ...]:
        return ("prune", "--repo", repo.url, "--keep-last", "2", "--grace", "0", "--json")

    def restore(repo, backup_id: str, target) -> tuple[str, ...]:
        return ("restore", "--repo", repo.url, "--backup", backup_id, "--data-dir", str(target), "--no-check", "--json")

    # One unkilled run of each command: the ground to stand on, and how long a run takes.
    seconds = {}
    for _ in range(2):
        source.grow()
        run = cli(*backup)
        assert run.code == 0, str(run)
    seconds["backup"] = run.seconds
    run = cli(*restore(repos[1], repos[1].backup_ids()[-1], tmp_path / "restored"))
    assert run.code == 0, str(run)
    seconds["restore"] = run.seconds
    run = cli(*prune(repos[1]))
    assert run.code == 0, str(run)
    seconds["prune"] = run.seconds

    plan = [command for command in seconds for _ in range(ROUNDS)]
    rng.shuffle(plan)
    for i, command in enumerate(plan):
        delay = rng.uniform(0, seconds[command])
        repo = rng.choice(repos)
        touched = {"backup": repos, "prune": [repo], "restore": []}[command]  # a restore only reads its repository
        with trials.trial(f"SIGKILL during {command}") as trial:
            trial.notes.append(f"{delay:.1f}s of {seconds[command]:.1f}s")
            if command == "restore":
                backup_id = rng.choice(repo.backup_ids())
                snapshot = source.snapshot(repo.manifest(backup_id))
                target = tmp_path / f"target-{i}"
                beside = set(os.listdir(tmp_path))
                killed = cli(*restore(repo, backup_id, target), kill_after=delay)
                trial.contract(killed)
                left = tree(target)
                trial.check(left is None or left == tree(snapshot),
                            f"{killed} after {delay:.2f}s -- left a half-written target: {len(left or {})} files")
                again = cli(*restore(repo, backup_id, target), *(["--replace"] if left else []))
                check_restore(trial, again, target, snapshot)
                trial.check(not leftovers(target, beside), f"restore left {leftovers(target, beside)} beside its target")
            else:
                source.grow()
                killed = cli(*(backup if command == "backup" else prune(repo)), kill_after=delay)
                trial.contract(killed)
            for each in touched:
                check_repository(cli, trial, each)
            if command != "restore":
                before = [set(r.backup_ids()) for r in repos]
                after = cli(*backup)
                trial.contract(after)
                if trial.check(after.code == 0, f"{after} -- the backup after a {command} killed at {delay:.2f}s failed"):
                    trial.check(all(set(r.backup_ids()) - b for r, b in zip(repos, before)),
                                "the backup after the kill is missing from a repository")

    for repo in repos:
        with trials.trial(f"every backup after the kills ({repo.kind})") as trial:
            check_repository(cli, trial, repo)
    trials.assert_all_passed()
