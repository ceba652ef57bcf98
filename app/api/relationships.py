"""/api/v1/relationships: typed, directed links between CIs."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import Reader, RegistryDep, Writer, read_transaction, write
from app.api.responses import JSON
from app.integrations import csv_export
from app.models.relationship import RelationshipCreate, RelationshipPage, RelationshipPublic
from app.services import relationships
from app.services.errors import InvalidInput, field_error

router = APIRouter(prefix="/api/v1/relationships", tags=["relationships"])


@router.post("", status_code=201, response_model=RelationshipPublic)
def create_relationship(data: RelationshipCreate, request: Request, principal: Writer, registry: RegistryDep):
    relationship = write(request, principal, lambda uow: relationships.create_relationship(uow, registry, data))
    return JSON(relationship, status_code=201, headers={"Location": f"/api/v1/relationships/{relationship['id']}"})


@router.get("", response_model=RelationshipPage)
def list_relationships(
    request: Request,
    principal: Reader,
    registry: RegistryDep,
    type: str | None = None,
    source: uuid.UUID | None = None,
    target: uuid.UUID | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: str | None = None,
    format: Annotated[Literal["json", "csv"], Query(
        description="csv: every matching relationship as the spreadsheet POST /api/v1/import?relationships=true "
                    "reads back (streamed, by id; each end an identifier naming that CI alone, else its id; "
                    "no limit or cursor)")] = "json",
):
    if format == "csv":
        given = [name for name in ("limit", "cursor") if name in request.query_params]
        if given:
            raise InvalidInput(f"format=csv exports every matching relationship in id order: drop {', '.join(given)}.",
                               [field_error(f"query.{name}", "not with format=csv") for name in given])
        filters = {"rel_type": type, "source": source, "target": target}
        return StreamingResponse(csv_export.export_relationships(request.app.state.engine, registry, filters),
                                 media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="karta-relationships.csv"'})
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
