"""The answer of GET /api/v1/search: CIs found by name, identifier or attribute value, best first."""

import uuid

from pydantic import BaseModel, ConfigDict, Field

from app.models.ci import CIStatus


class SearchMatch(BaseModel):
    field: str = Field(description="What matched: `name`, `identifier.<kind>` (e.g. identifier.mac_address) "
                                   "or `attributes.<key>`")
    value: str = Field(description="The matching value: the name, the indexed identifier, the attribute value")


class SearchResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    name: str
    ci_class: str = Field(alias="class")
    status: CIStatus
    owner: str | None
    matched: SearchMatch


class SearchPage(BaseModel):
    query: str = Field(description="The query as searched (surrounding whitespace removed)")
    results: list[SearchResult]
    truncated: bool = Field(description="More CIs match than `limit`: refine the query or raise the limit")
