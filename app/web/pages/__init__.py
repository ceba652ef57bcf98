"""The web UI's pages, one module per area; each is an APIRouter included by app.web.install."""
