"""/api/v1/relationships: typed, directed links between CIs."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import Reader, RegistryDep, Writer, read_transaction, write
from app.api.responses import JSON
from app.models.relationship import RelationshipCreate, RelationshipPage, RelationshipPublic
from app.services import relationships

router = APIRouter(prefix="/api/v1/relationships", tags=["relationships"])


@router.post("", status_code=201, response_model=RelationshipPublic)
def create_relationship(data: RelationshipCreate, request: Request, principal: Writer, registry: RegistryDep):
    relationship = write(request, principal, lambda uow: relationships.create_relationship(uow, registry, data))
    return JSON(relationship, status_code=201, headers={"Location": f"/api/v1/relationships/{relationship['id']}"})


@router.get("", response_model=RelationshipPage)
def list_relationships(
    request: Request,
    principal: Reader,
    type: str | None = None,
    source: uuid.UUID | None = None,
    target: uuid.UUID | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: str | None = None,
):
    with read_transaction(request) as conn:
        page = relationships.list_relationships(
            conn, rel_type=type, source=source, target=target,
            limit=limit or request.app.state.settings.default_page_size, cursor=cursor,
        )
    return JSON(page)


@router.get("/{relationship_id}", response_model=RelationshipPublic)
def get_relationship(relationship_id: uuid.UUID, request: Request, principal: Reader):
    with read_transaction(request) as conn:
        return JSON(relationships.get_relationship(conn, relationship_id))


@router.delete("/{relationship_id}", status_code=204)
def delete_relationship(relationship_id: uuid.UUID, request: Request, principal: Writer):
    """Ends the relationship; its change record keeps the ends and type."""
    write(request, principal, lambda uow: relationships.delete_relationship(uow, relationship_id))
    return Response(status_code=204)
