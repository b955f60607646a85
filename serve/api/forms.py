"""OpenAPI request bodies of the multipart routes, whose forms are parsed by hand
(core/uploads): written one way, so that each says which parts exist (an unknown part is a
422, so no others: additionalProperties false), which are required, and which content types
a photo part takes (encoding: JPEG, PNG or WebP)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PHOTO_TYPES = "image/jpeg, image/png, image/webp"


def photo(description: str = "JPEG, PNG or WebP") -> dict[str, Any]:
    """A photo part (its bytes are sniffed: the declared type may lie)."""
    return {"type": "string", "format": "binary", "description": description}


def multipart_body(properties: dict[str, Any], *, required: Iterable[str] = (),
                   photos: Iterable[str] = (), body_required: bool = True) -> dict[str, Any]:
    """`openapi_extra` of a route reading a multipart form with these parts."""
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    media: dict[str, Any] = {"schema": schema}
    encoding = {name: {"contentType": PHOTO_TYPES} for name in photos}
    if encoding:
        media["encoding"] = encoding
    return {"requestBody": {"required": body_required,
                            "content": {"multipart/form-data": media}}}
