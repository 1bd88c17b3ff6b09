"""A runbook is a plain function whose typed signature is its parameters (flows/parameters.py) and whose
docstring's Args describe them. `@runbook` validates what it is given against that signature when it
is called directly (the CLI's direct path, tests); as a Prefect flow (tasks/prefect_runner.as_flow)
Prefect validates the same signature, and builds the UI form from it. One signature, one set of
rules, whichever way it runs. No Prefect import here."""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from qilbee_backup.errors import UsageError


def parameters_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the function's parameters: their types (with every constraint) and defaults."""
    cached = getattr(fn, "__parameters_model__", None)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = {name: (hints.get(name, Any), ... if p.default is inspect.Parameter.empty else p.default)
              for name, p in inspect.signature(fn).parameters.items()}
    model = create_model(f"{fn.__name__}_parameters", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                         **fields)
    fn.__parameters_model__ = model
    return model


def validate(fn: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    """The parameters checked and converted (a dict becomes its model); ValidationError when they are not."""
    model = parameters_model(getattr(fn, "__wrapped__", fn))
    checked = model.model_validate(params)
    return {name: getattr(checked, name) for name in model.model_fields}


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """(parameter path, message) of the first problem, e.g. ("dns.record", "not a fully qualified DNS name")."""
    error = exc.errors()[0]
    loc = ".".join(str(p) for p in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return loc, message


def runbook(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        try:
            params = validate(fn, dict(bound.arguments))
        except ValidationError as exc:
            loc, message = first_problem(exc)
            raise UsageError(f"{loc}: {message}") from None
        return fn(**params)

    return checked
