"""/api/v1/classes and /api/v1/relationship-types: the registry (reading needs `read`, changing `admin`)."""

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Request

from app.api.deps import Admin, Reader, RegistryDep, write
from app.api.responses import JSON
from app.services.history import UnitOfWork
from app.services.tokens import Principal
from app.models.ci_class import CIClassCreate, CIClassPublic, CIClassUpdate
from app.models.relationship import RelationshipTypeCreate, RelationshipTypePublic
from app.services import classes
from app.services.registry import RegistryCache

router = APIRouter(prefix="/api/v1", tags=["registry"])
T = TypeVar("T")


def _registry_write(request: Request, principal: Principal, registry: RegistryCache,
                    work: Callable[[UnitOfWork], T]) -> T:
    """A unit of work on the registry (its change records commit with it). The services read the
    registry inside it without touching this worker's cache, which is dropped once the change committed
    (or not): nothing may use a class or a relationship type before it exists for every other
    transaction (relationship.type has no foreign key to wait on, migration 0004)."""
    try:
        return write(request, principal, work)
    finally:
        registry.invalidate()


@router.get("/classes", response_model=list[CIClassPublic])
def list_classes(principal: Reader, registry: RegistryDep):
    return JSON([classes.class_to_public(info) for _, info in sorted(registry.get().classes.items())])


@router.get("/classes/{name}", response_model=CIClassPublic)
def get_class(name: str, principal: Reader, registry: RegistryDep):
    return JSON(classes.class_to_public(classes.get_class(registry.knows_class(name), name)))


@router.post("/classes", status_code=201, response_model=CIClassPublic)
def create_class(data: CIClassCreate, request: Request, principal: Admin, registry: RegistryDep):
    info = _registry_write(request, principal, registry, lambda uow: classes.create_class(uow, data))
    return JSON(classes.class_to_public(info), status_code=201, headers={"Location": f"/api/v1/classes/{info.name}"})


@router.patch("/classes/{name}", response_model=CIClassPublic)
def update_class(name: str, data: CIClassUpdate, request: Request, principal: Admin, registry: RegistryDep):
    """Changing identification rules re-indexes the class family's CIs; 409 (and no change) if they would
    clash. A schema that existing CIs of the class or its subclasses break is refused with 409 naming
    how many and the first few (they could no longer be edited)."""
    info = _registry_write(request, principal, registry, lambda uow: classes.update_class(uow, name, data))
    return JSON(classes.class_to_public(info))


@router.get("/relationship-types", response_model=list[RelationshipTypePublic])
def list_relationship_types(principal: Reader, registry: RegistryDep):
    return JSON([classes.type_to_public(info) for _, info in sorted(registry.get().relationship_types.items())])


@router.post("/relationship-types", status_code=201, response_model=RelationshipTypePublic)
def create_relationship_type(data: RelationshipTypeCreate, request: Request, principal: Admin, registry: RegistryDep):
    info = _registry_write(request, principal, registry, lambda uow: classes.create_relationship_type(uow, data))
    return JSON(classes.type_to_public(info), status_code=201)
