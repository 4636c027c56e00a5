"""The browser playground at `/`, driven in headless Chromium with Playwright.

Needs Debian's `chromium` (`apt-get install -y chromium`) and `pip install playwright`;
Playwright drives the system browser (`executable_path`), never a downloaded one.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (no browser download)"
)

from gpt2kit import GPT2Config, GPT2ForCausalLM  # noqa: E402
from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.serve.testing import BackgroundServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
log = logging.getLogger(__name__)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary: apt-get install -y chromium")
def test_playground_streams_generation(tmp_path: Path):
    torch.manual_seed(0)
    model = GPT2ForCausalLM(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128)).eval()
    with (
        BackgroundServer(create_app(model, model_name="tiny")) as url,
        sync_api.sync_playwright() as pw,
    ):
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#generate-section:not([hidden])")
            assert "tiny" in page.inner_text("#info")
            # The task forms follow the model's tasks: an LM gets score and embed, not classify.
            assert (
                page.locator("#score-run").count() == 1
                and page.locator("#classify-run").count() == 0
            )
            page.fill("#prompt", "Hello from the browser")
            page.fill("#max_tokens", "20")
            page.fill("#temperature", "0")
            page.click("#generate")
            page.wait_for_function(
                "document.getElementById('gen-status').textContent.startsWith('done')",
                timeout=60_000,
            )
            text = page.inner_text("#output")
            assert len(text.strip()) > 0
            page.fill("#score-input", "some text")
            page.click("#score-run")
            page.wait_for_function(
                "document.getElementById('score-result').textContent.includes('logprob')"
            )
            shot = tmp_path / "playground.png"
            page.screenshot(path=str(shot), full_page=True)
            log.warning("playground screenshot: %s", shot)
            assert shot.stat().st_size > 0
        finally:
            browser.close()
