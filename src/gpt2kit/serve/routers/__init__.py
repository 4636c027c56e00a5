"""The server's endpoint groups, one `APIRouter` each; `create_app` includes them all."""

from . import basic, chat, completions, embeddings, tasks, tokenize

ALL = [
    basic.router,
    completions.router,
    chat.router,
    embeddings.router,
    tokenize.router,
    tasks.router,
]
