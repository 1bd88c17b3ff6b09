"""S3 through a fault-injecting proxy (503 before, 500 after, connection dropped before or after the
store handled the request) at several rates: backups into a repository that holds one already, a
restore, prune and verify --read-data.

Commands may fail, but each says so in one line; a backup's exit code tells whether it committed;
a restore never writes wrong data; verify never calls an intact backup damaged; and afterwards,
without faults, every listed backup passes verify --read-data.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from tests.faults.conftest import BACKUPS, RATES
from tests.faults.harness import RawRepo, check_repository, check_restore, leftovers
from tests.faults.proxy import FaultProxy


@pytest.mark.timeout(900)  # a failed upload waits out Prefect's task retries (10 s, then 60 s)
@pytest.mark.parametrize("rate", RATES, ids=[f"{r:.0%}" for r in RATES])
def test_s3_through_a_faulty_proxy(rate, source, cli, rng, trials, tmp_path, moto_server, s3_client, s3_bucket):
    repo = RawRepo(f"s3://{s3_bucket}/repo", s3_client)
    # The faults meet a repository that already holds a backup, as a nightly run does; and so each
    # faulted backup is incremental, which keeps Prefect's upload retries (10 s, 60 s) rare.
    source.grow()
    run = cli(*source.backup(repo))
    assert run.code == 0, str(run)
    with trials.trial(f"S3 faults at {rate:.0%}") as trial:
        with FaultProxy(urlsplit(moto_server).port, rate, seed=rng.randrange(2**32)) as proxy:
            for _ in range(BACKUPS):
                source.grow()
                before = set(repo.backup_ids())
                run = cli(*source.backup(repo), s3_endpoint=proxy.url)
                trial.contract(run)
                new = set(repo.backup_ids()) - before
                said = {(run.result() or {}).get("backup_id")} if run.code == 0 else set()
                trial.check(new == said, f"{run} -- the exit code and the repository disagree: it committed {sorted(new) or 'nothing'}")

            if repo.backup_ids():
                backup_id = rng.choice(repo.backup_ids())
                target, beside = tmp_path / "restored", set(os.listdir(tmp_path))
                run = cli("restore", "--repo", repo.url, "--backup", backup_id, "--data-dir", str(target), "--no-check",
                          s3_endpoint=proxy.url)
                if run.code == 0:
                    check_restore(trial, run, target, source.snapshot(repo.manifest(backup_id)))
                else:
                    trial.contract(run)
                    trial.check(not target.exists(), f"{run} -- the failed restore left {target.name} behind")
                    trial.check(not leftovers(target, beside), f"{run} -- the failed restore left {leftovers(target, beside)}")

            run = cli("prune", "--repo", repo.url, "--keep-last", "1", "--grace", "0", "--json", s3_endpoint=proxy.url)
            trial.contract(run)
            run = cli("verify", "--repo", repo.url, "--read-data", "--json", s3_endpoint=proxy.url)
            trial.contract(run)
            claimed = {b["backup_id"]: b["problems"] for b in (run.result() or {}).get("backups", []) if b.get("problems")}
            trial.notes.append(proxy.summary())
        truly = check_repository(cli, trial, repo) or set()
        false = {b: p for b, p in claimed.items() if b not in truly}
        trial.check(not false, f"{run} -- verify through faults called intact backups damaged: "
                               + "; ".join(f"{b}: {p[0] if p else '?'}"[:200] for b, p in false.items()))
    trials.assert_all_passed()
