"""Every Payload in a workflow history: what "no password in history" tests search.

Payload data is base64 inside the history's JSON, so a search of the JSON alone would miss a secret in
clear; these helpers give the decoded payloads of every event (inputs, results, failure details, memo
and header maps), one walker for every test that needs them.
"""

from __future__ import annotations

from typing import Any


def payloads_of(msg: Any) -> list[Any]:
    """Every ``Payload`` message inside one protobuf message (a history event), at any depth."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        for descriptor, value in node.ListFields():
            if descriptor.message_type is None:
                continue
            if hasattr(value, "ListFields"):
                items = [value]
            elif hasattr(value, "values") and callable(value.values):  # map fields (memo, header)
                items = list(value.values())
            else:
                items = list(value)
            for item in items:
                if descriptor.message_type.name == "Payload":
                    found.append(item)
                elif hasattr(item, "ListFields"):
                    walk(item)

    walk(msg)
    return found
