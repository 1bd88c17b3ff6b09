"""Runbooks as Prefect flows: each step a task run (name, retries, logs), artifacts and events sent to
the API, an approval a paused run waiting for input. `as_flow` makes the flow that prefect.yaml
deploys and the CLI runs when a Prefect API is configured."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any, Callable

from prefect import Flow, flow, get_run_logger, pause_flow_run, task
from prefect.cache_policies import NONE
from prefect.events import emit_event
from prefect.input import RunInput
from pydantic import create_model

from tasks import artifacts, run_logs
from tasks.steps import Step, running


class PrefectRunner:
    recorded = True

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def _task(self, step: Step):
        # Inputs hold open clients and large file lists: never hash them for caching. No timeouts:
        # Prefect cannot interrupt a sync task in a worker thread, so a timeout would only mislead.
        made = self._tasks.get(step.name)
        if made is None:
            condition = None
            if step.retry_if is not None:
                def condition(_task, _run, state, cure=step.retry_if) -> bool:
                    return cure(state.data) if isinstance(state.data, BaseException) else False
            made = self._tasks[step.name] = task(step.fn, name=step.name, retries=step.retries,
                                                 retry_delay_seconds=list(step.retry_delay_seconds) or 0,
                                                 retry_condition_fn=condition, cache_policy=NONE)
        return made

    def call(self, step: Step, args: tuple, kwargs: dict) -> Any:
        return self._task(step)(*args, **kwargs)

    def submit(self, step: Step, args: tuple, kwargs: dict):
        return self._task(step).submit(*args, **kwargs)

    def logger(self):
        return get_run_logger()

    def table(self, key: str, result: Any, description: str) -> None:
        artifacts.publish_table(key, result, description)

    def rows(self, key: str, rows: list[dict], description: str) -> None:
        artifacts.publish_rows(key, rows, description)

    def markdown(self, key: str, markdown: str, description: str) -> None:
        artifacts.publish_markdown(key, markdown, description)

    def event(self, **event: Any) -> None:
        emit_event(**event)

    def pause(self, description: str, model: Any, timeout_s: float, **initial: Any) -> Any:
        """A paused run waiting for a person's answer in the UI: the model's fields are the form."""
        form = create_model(model.__name__, __base__=RunInput, __doc__=model.__doc__,
                            **{name: (field.annotation, field) for name, field in model.model_fields.items()})
        return pause_flow_run(wait_for_input=form.with_initial_data(description=description, **initial),
                              timeout=int(timeout_s))


def as_flow(runbook: Callable[..., Any], name: str, home: dict[str, Any], **options: Any) -> Flow:
    """The runbook as a Prefect flow with the same signature (the UI form) and docstring (its texts).

    home: the globals of the module that holds the flow under the runbook's name (flows/deployed.py).
    Prefect finds a flow's entrypoint from its function's module and file; the wrapper is made to
    live there, so a deployment or `serve` loads this flow, not the plain runbook."""
    run_logs.install()
    runner, enter = PrefectRunner, running  # the closure carries them: the wrapper's globals are `home`

    def in_prefect(*args: Any, **kwargs: Any) -> Any:
        with enter(runner()):
            return runbook(*args, **kwargs)

    target = inspect.unwrap(runbook)
    wrapper = types.FunctionType(in_prefect.__code__, home, target.__name__, None, in_prefect.__closure__)
    functools.update_wrapper(wrapper, runbook)
    wrapper.__module__ = home["__name__"]
    wrapper.__qualname__ = target.__name__
    # The types themselves, not their names: Prefect would resolve names in `home`, not the runbook's module.
    wrapper.__signature__ = inspect.signature(target, eval_str=True)
    wrapper.__annotations__ = typing.get_type_hints(target, include_extras=True)
    return flow(name=name, **options)(wrapper)
