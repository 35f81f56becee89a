"""Reading a multipart/form-data body as the recording middleware kept it, for the fakes that
take uploads (the body has been read by then, so aiohttp's own form reader cannot run again)."""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Part:
    """One field of a form: its text, or a file with its name and declared type."""

    name: str
    content: bytes = field(repr=False)
    filename: str | None = None
    content_type: str = "text/plain"

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def is_file(self) -> bool:
        return self.filename is not None


def parts(content_type: str, body: bytes) -> dict[str, Part] | None:
    """The fields of a multipart/form-data body by name, or None when it is not one (no
    boundary, or a body that does not parse)."""
    kind = content_type.lower()
    if not kind.startswith("multipart/form-data") or "boundary=" not in kind:
        return None
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        return None
    found: dict[str, Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        found[name] = Part(name, payload, filename, part.get_content_type())
    return found
