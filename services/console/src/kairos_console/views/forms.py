"""Reading submitted forms, and the api's field violations placed next to the fields they name."""

from __future__ import annotations

from collections import defaultdict

from aiohttp import web
from multidict import MultiDictProxy

from kairos_client import KairosError

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]


async def form_of(request: web.Request) -> Form:
    from kairos_console.app import read_form

    return await read_form(request)


def text(form: Form, name: str) -> str:
    """A text field's value, stripped; "" when missing or a file."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def texts(form: Form, name: str) -> list[str]:
    """Every value of a repeated text field, stripped, empty ones left out."""
    return [v.strip() for v in form.getall(name, []) if isinstance(v, str) and v.strip()]


class FieldErrors(dict[str, list[str]]):
    """The api's field violations by field path ("content", "targets[1].content_override"),
    plus "" for a message that names no field."""

    @classmethod
    def of(cls, error: KairosError) -> FieldErrors:
        found: defaultdict[str, list[str]] = defaultdict(list)
        for field, description in error.violations:
            found[field].append(description)
        if not error.violations:
            found[""].append(error.message)
        return cls(found)

    def under(self, prefix: str) -> list[str]:
        """The messages of `prefix` and of every field below it."""
        return [
            message
            for field, messages in self.items()
            if field == prefix or field.startswith((f"{prefix}.", f"{prefix}["))
            for message in messages
        ]
