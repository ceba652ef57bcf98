"""Karta's in-memory graph and impact algorithms: plain Python over networkx.

This package must never import `app/`, a web framework, an ORM or anything HTTP; the service
builds an `ImpactGraph` from its database and turns these results into responses. The impact
rules are written out in `graph.semantics`.
"""

from graph.causes import RootCauseCandidate
from graph.impact_graph import ImpactGraph
from graph.propagation import ImpactedCI, ImpactResult
from graph.semantics import STANDARD_SEMANTICS, RelationshipSemantics

__all__ = [
    "STANDARD_SEMANTICS",
    "ImpactGraph",
    "ImpactResult",
    "ImpactedCI",
    "RelationshipSemantics",
    "RootCauseCandidate",
]
