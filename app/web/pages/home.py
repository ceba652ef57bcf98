"""/ui/: the service manager's view of the estate (app/services/overview.py gathers it)."""

from fastapi import APIRouter, Request

from app.services import overview
from app.web.auth import CurrentUser
from app.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/ui/")
def home(request: Request, user: CurrentUser):
    state = request.app.state
    data = overview.home(state.live_graph, state.engine, state.registry)
    return render(request, "home.html", {**data, "shown": overview.SHOWN})
