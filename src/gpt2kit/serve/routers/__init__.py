"""The server's endpoint groups, one `APIRouter` each; `create_app` includes them all."""

from . import basic, completions, tasks

ALL = [basic.router, completions.router, tasks.router]
