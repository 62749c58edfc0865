"""The generated Space in a real browser: `python app.py` as a Space runs it, driven by Playwright on Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from hf_distill.publish.space import create_space
from tests.space_helpers import free_port, save_models

CHROMIUM = "/usr/bin/chromium"
STARTUP_TIMEOUT_S = 180
ANSWER_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")


def _wait_until_up(url: str, process: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"app.py did not answer within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def space_url(tmp_path_factory, model_factory):
    """The generated Space folder served by its own `python app.py` on a free loopback port; stopped afterwards."""
    root = tmp_path_factory.mktemp("space_browser")
    student, teacher = save_models(root, model_factory)
    result = create_space(student, teacher=teacher, output_dir=root / "space", max_new_tokens=8)
    port = free_port()
    env = dict(
        os.environ,
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
    )
    log_path = root / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=result.folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: `apt-get install chromium` (.ci/run does it in CI).")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        except sync_api.Error as error:
            pytest.skip(f"Chromium at {CHROMIUM} cannot start here: {error}")
        yield browser
        browser.close()


def test_prompt_streams_both_answers_with_timings(space_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(space_url)
        expect = sync_api.expect
        expect(page.locator("#benchmark")).to_contain_text("perplexity", timeout=ANSWER_TIMEOUT_MS)
        page.locator("#prompt textarea").fill("what is two add three")
        page.locator("#generate").click()
        # The teacher answers second: its total time appears when both answers are complete.
        done = re.compile(r"Total time\s*\d+\.\d{3} s")
        expect(page.locator("#teacher-stats")).to_contain_text(done, timeout=ANSWER_TIMEOUT_MS)
        for role in ("student", "teacher"):
            assert page.locator(f"#{role}-answer textarea").input_value().strip(), f"empty {role} answer"
            stats = page.locator(f"#{role}-stats")
            expect(stats).to_contain_text(re.compile(r"Time to first token\s*\d+\.\d{3} s"))
            expect(stats).to_contain_text(done)
            expect(stats).to_contain_text(re.compile(r"Tokens/s\s*\d+\.\d"))
            expect(stats).to_contain_text(re.compile(r"Parameters\s*\d"))
        screenshot = tmp_path / "space.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
    finally:
        page.close()
