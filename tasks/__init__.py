"""The steps of the runbooks: each a function with a name and its retries (tasks/steps.py), carried out
as Prefect tasks in a flow run (tasks/prefect_runner.py) or as plain calls on the CLI's direct path.
No Prefect import here: the direct path must not pay for it."""
