"""The playground's chat tab, in headless Chromium with Playwright: shown only when the
model has a chat template, and a message streams a reply through /v1/chat/completions.

Needs Debian's `chromium` and `pip install playwright` (it drives the system browser).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

from gpt2kit import GPT2Config, GPT2ForCausalLM  # noqa: E402
from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.serve.testing import BackgroundServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary: apt-get install -y chromium")
@pytest.mark.parametrize("template", [TEMPLATE, None], ids=["with-template", "without"])
def test_chat_tab_follows_the_template(tmp_path: Path, template):
    torch.manual_seed(0)
    model = GPT2ForCausalLM(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128)).eval()
    app = create_app(model, model_name="tiny", chat_template=template)
    with BackgroundServer(app) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#generate-section:not([hidden])")
            if template is None:
                assert page.locator("#chat-section").is_hidden()
                return
            page.wait_for_selector("#chat-section:not([hidden])")
            page.fill("#chat-input", "Hi there")
            page.fill("#chat-max", "12")
            page.fill("#chat-temp", "0")
            page.click("#chat-send")
            page.wait_for_function(
                "document.getElementById('chat-status').textContent === 'done'", timeout=60_000
            )
            bubbles = page.locator("#chat-log .msg")
            assert bubbles.count() == 2
            assert "Hi there" in bubbles.nth(0).inner_text()
            reply = bubbles.nth(1).inner_text()
            assert reply.startswith("assistant") and len(reply) > len("assistant")
            page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
        finally:
            browser.close()
