"""URL converters shared by the pages and the API."""

from django.urls import register_converter


class IdConverter:
    """A database id: 1 to 18 digits (a bigint), so an absurd number is a 404, not an error."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
