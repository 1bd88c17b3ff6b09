"""A flipped bit in random blobs (of an S3 repository) and in random manifests (of a local one).

`verify --read-data` fails naming every damaged backup and passes the others; restoring a damaged
backup fails with one line and leaves the target untouched; restoring an intact one gives the
snapshot back byte for byte; list and prune still work on the rest; a drill recovers the newest
intact backup. The oldest backup is never damaged, so at least one stays intact.
"""

from __future__ import annotations

import hashlib
import os

import zstandard

from tests.faults.conftest import DAMAGE
from tests.faults.harness import check_repository, check_restore, leftovers

BACKUPS = 4


def _flip(data: bytes, rng) -> bytes:
    damaged = bytearray(data)
    damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def _decodes_to(repo, key: str, blob: bytes, sha: str) -> bool:
    from qilbee_backup.errors import IntegrityError

    try:
        if repo.key() is not None:
            blob = repo.key().open(blob, f"blob:{key.rsplit('/', 1)[-1]}")
        content = zstandard.ZstdDecompressor().stream_reader(blob).read()
    except (zstandard.ZstdError, IntegrityError):
        return False
    return hashlib.sha256(content).hexdigest() == sha


def flip_blobs(repo, rng) -> set[str]:
    """Flip a bit in DAMAGE blobs the oldest backup does not use (a flip that still decodes to the same
    content is done again); the backups that use them."""
    ids = repo.backup_ids()
    files = {b: {f["sha256"]: f["path"] for f in repo.manifest(b)["files"]} for b in ids}
    uses = {b: set(files[b]) for b in ids}
    # In the order of the files' names (RocksDB numbers them the same way each run), so a seed replays.
    blobs = sorted(set().union(*(uses[b] for b in ids[1:])) - uses[ids[0]],
                   key=lambda sha: (min(files[b][sha] for b in ids if sha in uses[b]), sha))
    hit = set()
    for sha in rng.sample(blobs, min(DAMAGE, len(blobs))):
        key = repo.blob_key(sha)
        whole = repo.read(key)
        while _decodes_to(repo, key, flipped := _flip(whole, rng), sha):
            pass
        repo.write(key, flipped)
        hit |= {b for b in ids if sha in uses[b]}
    return hit


def flip_manifests(repo, rng) -> set[str]:
    """Flip a bit in the manifests of DAMAGE backups other than the oldest; those backups."""
    ids = repo.backup_ids()
    hit = set(rng.sample(ids[1:], min(DAMAGE, len(ids) - 1)))
    for backup_id in sorted(hit):
        key = repo.manifest_keys()[backup_id]
        repo.write(key, _flip(repo.read(key), rng))
    return hit


def test_flipped_bits(repos, source, cli, rng, trials, tmp_path):
    for _ in range(BACKUPS):
        source.grow()
        run = cli(*source.backup(*repos))
        assert run.code == 0, str(run)
    snapshots = {b: source.snapshot(repos[0].manifest(b)) for b in repos[0].backup_ids()}

    local, s3 = repos
    for repo, what, flip in ((s3, "blobs", flip_blobs), (local, "manifests", flip_manifests)):
        with trials.trial(f"flipped bits in {DAMAGE} {what} ({repo.kind})") as trial:
            damaged = flip(repo, rng)
            assert damaged, f"no {what} to damage in {repo.url}"
            intact = sorted(set(repo.backup_ids()) - damaged)
            trial.notes.append(f"damaged {len(damaged)} of {len(damaged) + len(intact)} backups")
            check_repository(cli, trial, repo, damaged=damaged)

            backup_id = rng.choice(sorted(damaged))
            target, beside = tmp_path / f"{repo.kind}-{backup_id}", set(os.listdir(tmp_path))
            run = cli("restore", "--repo", repo.url, "--backup", backup_id, "--data-dir", str(target), "--no-check")
            trial.contract(run)
            trial.check(run.code == 1, f"{run} -- restoring damaged backup {backup_id} must fail")
            trial.check(not target.exists(), f"the failed restore of {backup_id} left {target.name} behind")
            trial.check(not leftovers(target, beside), f"the failed restore left {leftovers(target, beside)}")

            backup_id = rng.choice(intact)
            target = tmp_path / f"{repo.kind}-{backup_id}"
            run = cli("restore", "--repo", repo.url, "--backup", backup_id, "--data-dir", str(target), "--no-check")
            check_restore(trial, run, target, snapshots[backup_id])

            run = cli("list", "--repo", repo.url, "--json")
            trial.contract(run)
            listed = {b["backup_id"] for b in run.result() or [] if not b.get("damaged")}
            trial.check(run.code == 0 and set(intact) <= listed,
                        f"{run} -- list must show every intact backup; missing {sorted(set(intact) - listed)}")

            run = cli("drill", "--repo", repo.url, "--provider", "process", "--json")
            trial.contract(run)
            chosen = (run.result() or {}).get("backup_id")
            trial.check(run.code == 0 and chosen == intact[-1],
                        f"{run} -- the drill must recover the newest intact backup {intact[-1]}, not {chosen}")

            # Rules that keep every backup (all are minutes apart): what is left to do is the sweep.
            run = cli("prune", "--repo", repo.url, "--keep-within", "1d", "--grace", "0", "--json")
            trial.contract(run)
            trial.check(run.code == 0, f"{run} -- prune must work on the intact backups")
            stored = set(repo.keys("blobs/"))
            lost = sorted(b for b in intact if b not in repo.backup_ids()
                          or any(repo.blob_key(f["sha256"]) not in stored for f in repo.manifest(b)["files"]))
            trial.check(not lost, f"prune removed intact backups or their blobs: {lost}")
    trials.assert_all_passed()
