"""What the api refused, gathered by the form control each refusal concerns, for pages that show
a refusal next to its field and in a summary at the top."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from kairos_console.app import HTTP_STATUS

#: The api's answers that refuse what the user sent, with the HTTP status of the page that
#: shows the refusal on its form; any other failure is left to the api_errors middleware.
REFUSALS = {
    code: HTTP_STATUS[code]
    for code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.ALREADY_EXISTS,
    )
}


@dataclass
class Problems:
    """Messages by the id of the control they concern, and all of them in the order given."""

    by_control: dict[str, list[str]] = field(default_factory=dict)
    #: Every message once, with its control ("" when it concerns none), for the summary.
    summary: list[tuple[str, str]] = field(default_factory=list)

    def add(self, control: str, message: str) -> None:
        if control:
            self.by_control.setdefault(control, []).append(message)
        self.summary.append((control, message))

    def of(self, control: str) -> list[str]:
        return self.by_control.get(control, [])

    def __bool__(self) -> bool:
        return bool(self.summary)
