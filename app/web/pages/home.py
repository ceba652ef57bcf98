"""/ui/: the service manager's view."""

from fastapi import APIRouter, Request

from app.web.auth import CurrentUser
from app.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/ui/")
def home(request: Request, user: CurrentUser):
    return render(request, "home.html")
