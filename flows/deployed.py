"""The runbooks as Prefect flows: what prefect.yaml deploys, `serve` schedules, and the CLI runs when
a Prefect API is configured. Each is the runbook itself (same signature: the UI form; same
docstring: its descriptions), its steps carried out as Prefect tasks."""

from flows.archive import archive as _archive
from flows.archive import list_archives as _list_archives
from flows.backup import backup as _backup
from flows.disaster_recovery import disaster_recovery as _disaster_recovery
from flows.drill import drill as _drill
from flows.failback import failback as _failback
from flows.maintenance import list_backups as _list_backups
from flows.maintenance import prune as _prune
from flows.maintenance import verify as _verify
from flows.restore import restore as _restore
from flows.status import status as _status
from qilbee_backup.crypto import add_password_source
from tasks.prefect_runner import as_flow
from tasks.secrets import password_from_secret_block

# A worker's runs find an encrypted repository's passphrase in a Secret block when its environment has none.
add_password_source(password_from_secret_block, first=False)

backup = as_flow(_backup, "backup", globals())
archive = as_flow(_archive, "archive", globals())
list_backups = as_flow(_list_backups, "list-backups", globals())
list_archives = as_flow(_list_archives, "list-archives", globals())
verify = as_flow(_verify, "verify", globals())
prune = as_flow(_prune, "prune", globals())
restore = as_flow(_restore, "restore", globals())
drill = as_flow(_drill, "restore-drill", globals())
disaster_recovery = as_flow(_disaster_recovery, "disaster-recovery", globals())
status = as_flow(_status, "status", globals())
failback = as_flow(_failback, "failback", globals())
