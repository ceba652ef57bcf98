"""/docs: Swagger UI from the vendored bundle, so the API's description works with no internet.
(FastAPI's own /docs page loads Swagger UI from a CDN and is blank offline.)"""

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Karta API</title>
<link rel="stylesheet" href="/ui/static/vendor/swagger-ui/swagger-ui.css">
<link rel="icon" type="image/png" href="/ui/static/vendor/swagger-ui/favicon-32x32.png">
</head>
<body>
<main id="swagger-ui"></main>
<script src="/ui/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/ui/static/swagger-init.js"></script>
</body>
</html>
"""


@router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(PAGE)
