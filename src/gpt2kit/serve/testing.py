"""`BackgroundServer`: run an app with uvicorn in a thread on a free loopback port.

For tests, benchmarks and notebooks; `with BackgroundServer(app) as url:` starts the
server, waits until it answers, and on exit shuts it down gracefully (open requests
finish, the batcher drains) and joins the thread, so nothing is left running.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from typing import Any


class BackgroundServer:
    """Serve `app` on `http://127.0.0.1:<free port>` for the duration of a `with` block.

    Example:
        >>> with BackgroundServer(create_app(model)) as url:     # doctest: +SKIP
        ...     urllib.request.urlopen(url + "/healthz").read()
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0
    ):
        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, name="gpt2kit-test-server", daemon=True
        )
        self.startup_timeout = startup_timeout

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.server.started:
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=5):
                        return self.url
                except OSError:
                    pass
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"server at {self.url} did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
