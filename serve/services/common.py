"""What several use cases share: a write whose unique constraint answers 409."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from serve.core.errors import ApiError

T = TypeVar("T")


def unique_write(session: Session, write: Callable[[Session], T], conflict: ApiError) -> T:
    """Run `write` in one transaction; a unique-constraint violation (at flush or commit)
    becomes `conflict`, the 409 that names what already exists."""
    try:
        with session.begin():
            return write(session)
    except IntegrityError as exc:
        raise conflict from exc
