"""The data converter every client and worker of this project uses.

Pydantic JSON (``temporalio.contrib.pydantic``) with one change: a payload that cannot be decoded
(truncated JSON, invalid UTF-8, nesting past the parser's limit, an unknown encoding) raises a
non-retryable ``ValidationError`` instead of the SDK's plain ``RuntimeError``. The SDK treats a
``FailureError`` raised while decoding a workflow's start arguments as a workflow failure, so a
hostile start ends the run Failed after its first workflow task; a plain error would fail the task
and Temporal would retry it forever. Activity inputs get the same treatment (one failed attempt, not
ten); an undecodable signal is dropped by the SDK and logged.

It also refuses arguments given to a target that declares none (a ``healthCheckWorkflow`` started
with an argument): the SDK would otherwise drop them without a word. Other wrong counts are refused by
:mod:`alga_worker.workflows.strict_start`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import temporalio.api.common.v1
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter
from temporalio.exceptions import FailureError

from alga_worker import errors


class StrictPydanticPayloadConverter(PydanticPayloadConverter):
    """Pydantic payload conversion whose decoding failures are typed, non-retryable failures."""

    def from_payloads(
        self,
        payloads: Sequence[temporalio.api.common.v1.Payload],
        type_hints: list[type] | None = None,
    ) -> list[Any]:
        if type_hints is not None and len(type_hints) != len(payloads):
            # Only reachable for a target declaring no parameters (the SDK drops type hints that do
            # not match in count otherwise): without this, its extra arguments are silently dropped.
            problem = f"expected {len(type_hints)} argument(s), got {len(payloads)}"
            raise errors.validation_error(f"wrong argument count: {problem}",
                                          [{"field": "(arguments)", "problem": problem}])
        try:
            return super().from_payloads(payloads, type_hints)
        except FailureError:
            raise
        except Exception as err:  # RecursionError, UnicodeDecodeError, pydantic errors, unknown encoding
            root: BaseException = err
            while root.__cause__ is not None:
                root = root.__cause__
            raise errors.validation_error(
                f"undecodable payload: {type(root).__name__}",
                [{"field": "(payload)", "problem": _summary(root)}],
            ) from None


def _summary(err: BaseException) -> str:
    """A bounded description of a decoding error: never the payload itself."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]


DATA_CONVERTER = DataConverter(payload_converter_class=StrictPydanticPayloadConverter)
