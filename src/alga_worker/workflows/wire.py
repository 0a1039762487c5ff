"""Decoding a workflow's start argument: every malformed start ends as a typed ``ValidationError``.

Workflows declare their input as :class:`temporalio.common.RawValue`, so the SDK hands over the payload
untouched and the decoding happens here, in the workflow, where a refusal is an ``ApplicationError``
(the run fails) rather than a decoding error in the SDK (the workflow task fails and is retried for
ever). The payload must be ``json/plain`` and is validated straight from its bytes by the wire model in
strict, alias-only mode (:func:`alga_worker.models.parse_wire`): no type coercion, camelCase names only.

The other malformed shapes are covered by the two shared mechanisms beside this one: an undecodable
payload when the argument count is wrong is refused by the data converter
(:mod:`alga_worker.converter`), and the argument count itself by :mod:`alga_worker.workflows.strict_start`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.models import parse_wire

M = TypeVar("M", bound=BaseModel)

JSON_ENCODING = b"json/plain"


def problems_of(err: PydanticValidationError) -> list[dict[str, str]]:
    """Field and problem for each refusal, never the refused value (it may be a hostile payload)."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(input)", "problem": e["msg"]}
        for e in err.errors(include_input=False, include_url=False, include_context=False)
    ]


def describe(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)


class InputRefused(Exception):
    """The start argument was refused; ``problems`` says why, ``error`` is what the run fails with."""

    def __init__(self, error: ApplicationError, problems: list[dict[str, str]]) -> None:
        super().__init__(str(error))
        self.error = error
        self.problems = problems


def decode_input(raw: Any, model: type[M], what: str) -> M:
    """The start argument as ``model``, or :class:`InputRefused` wrapping a typed ValidationError."""
    if not isinstance(raw, RawValue):  # a replayer or a test calling run() with a decoded value
        problems = [{"field": "(input)", "problem": "input must be one JSON object"}]
        raise InputRefused(errors.validation_error(f"invalid {what} input", problems), problems)
    encoding = raw.payload.metadata.get("encoding", b"")
    if encoding != JSON_ENCODING:
        shown = encoding[:40].decode("ascii", "replace")
        problems = [{"field": "(input)", "problem": f"input must be a JSON object (encoding {shown!r})"}]
        raise InputRefused(errors.validation_error(f"invalid {what} input", problems), problems)
    try:
        return parse_wire(model, raw.payload.data)
    except PydanticValidationError as err:
        problems = problems_of(err)
        raise InputRefused(errors.validation_error(f"invalid {what} input", problems), problems) from None
    except (ValueError, RecursionError) as err:  # defensive: a parser limit outside pydantic's errors
        problems = [{"field": "(input)", "problem": f"undecodable input ({type(err).__name__})"}]
        raise InputRefused(errors.validation_error(f"invalid {what} input", problems), problems) from None


def decode_start(raw: Any, model: type[M], what: str) -> M:
    """:func:`decode_input` for workflows that keep no validation state: a refusal is raised as the
    typed, non-retryable ``ValidationError`` that fails the run."""
    try:
        return decode_input(raw, model, what)
    except InputRefused as refused:
        raise refused.error from None
