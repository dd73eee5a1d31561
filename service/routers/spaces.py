"""Spaces: the bundled ones, and validation of a document."""

from __future__ import annotations

from fastapi import APIRouter

from brainsearch.space import bundled_space_names, dimensions, load_space, space_size
from service.deps import ReadAccess, SettingsDep, WriteAccess
from service.routers.searches import space_of
from service.schemas import Page, SpaceCheck, SpaceOut, SpaceValidation

router = APIRouter(prefix="/spaces", tags=["spaces"])


@router.get("", dependencies=[ReadAccess], operation_id="list_spaces")
def list_spaces(settings: SettingsDep) -> Page[SpaceOut]:
    """The bundled search spaces (their names are accepted as ``space`` by ``POST /searches``)."""
    items = []
    for name in bundled_space_names():
        space = load_space(name, max_params=settings.max_space_params)
        items.append(SpaceOut(id=name, name=name, description=space.description, trials=space.search.trials))
    return Page(items=items, total=len(items), limit=len(items), offset=0)


@router.post("/validate", dependencies=[WriteAccess], operation_id="validate_space")
def validate(body: SpaceCheck, settings: SettingsDep) -> SpaceValidation:
    """Check a space (a bundled name, as ``POST /searches`` takes, or a document): 200 with its dimensions and
    size, or 422 with one entry per problem. A write route (it spends the server's CPU): it needs the token."""
    space = space_of(body.space, settings)
    return SpaceValidation(valid=True, name=space.name, dimensions=dimensions(space), size=space_size(space))
