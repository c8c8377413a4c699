"""Request body parsing for the API: JSON only, and hostile JSON is a 400, never a crash."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:  # nesting deeper than Python's json module can follow
            raise ParseError() from None
