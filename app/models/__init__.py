"""All tables, imported together so SQLModel.metadata knows every one of them."""

from sqlmodel import SQLModel

from app.models.change import ChangeRecord
from app.models.ci import ConfigurationItem
from app.models.ci_class import CIClass
from app.models.discovery import CISource, DiscoveryRun, PrecedenceRule, RelationshipSource
from app.models.identifier import CIIdentifier
from app.models.incident import Incident, IncidentAlert
from app.models.relationship import EndedRelationship, Relationship, RelationshipType
from app.models.service_map import ServiceEntryKey, ServiceMapCursor, ServiceMapMember, ServiceMapState
from app.models.token import ApiToken
from app.models.web import ServiceSecret
from app.models.webhook import Webhook, WebhookDelivery

metadata = SQLModel.metadata

__all__ = [
    "ApiToken",
    "ChangeRecord",
    "CIClass",
    "CIIdentifier",
    "CISource",
    "DiscoveryRun",
    "EndedRelationship",
    "Incident",
    "IncidentAlert",
    "PrecedenceRule",
    "RelationshipSource",
    "ConfigurationItem",
    "Relationship",
    "RelationshipType",
    "ServiceEntryKey",
    "ServiceMapCursor",
    "ServiceMapMember",
    "ServiceMapState",
    "ServiceSecret",
    "Webhook",
    "WebhookDelivery",
    "metadata",
]
