"""Open WebUI, the largest Ollama front-end, unchanged, against `vllama serve` on the embedded
default, used in a headless Chromium as a person would: pick the model, type a message, press
Enter, watch the answer stream in, stop it.

Open WebUI sends its built-in tools (about 20,000 tokens of JSON schemas with this tokenizer)
with every chat. With a 2,048-token context that chat failed with vLLM's "maximum context
length" message; the embedded default's context is now Qwen2.5's 32,768, and the test checks
that such a prompt reached the engine and an answer, not an error, came back.

Open WebUI (PyPI `open-webui`) is a large application of its own (a 3 GB environment, a few
minutes to install): `make test-webui` installs it in `.venv-webui` (scripts/install-webui.sh),
with Debian's Chromium and ChromeDriver, and runs this module with `VLLAMA_OPEN_WEBUI` pointing
at it. Without those, the module is skipped (`make test` does not install them). The screenshot is saved as
`bench/results/open-webui.png` (or under `VLLAMA_SCREENSHOTS`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_server

OPEN_WEBUI = str(Path(os.environ["VLLAMA_OPEN_WEBUI"]).absolute()) if os.environ.get("VLLAMA_OPEN_WEBUI") else ""
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("VLLAMA_SCREENSHOTS") or Path(__file__).parents[2] / "bench" / "results")
MODEL = "vllama-tiny:latest"
MESSAGE = "Hello from a browser"
#: The old context: a prompt longer than this is one that failed before.
OLD_CONTEXT = 2048

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (OPEN_WEBUI and os.access(OPEN_WEBUI, os.X_OK)),
                       reason="Open WebUI is installed and run by `make test-webui` (VLLAMA_OPEN_WEBUI)"),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason="Debian's chromium and chromium-driver are installed by `make test-webui`"),
]


@pytest.fixture(scope="module")
def vllama() -> Iterator[ServerProcess]:
    # The embedded default as a new user starts it: no engine flags, its own context.
    with vllama_server("vt-webui-", "--dashboard-port", "0") as server:
        yield server


@dataclass
class OpenWebUI:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Its whole process group, as a person's Ctrl-C would end it (then SIGKILL)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def open_webui(vllama: ServerProcess) -> Iterator[OpenWebUI]:
    workdir = short_tmpdir("vt-owui-")
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(workdir / "data"),
        "OLLAMA_BASE_URL": vllama.url,
        "ENABLE_OPENAI_API": "False",
        # No sign-up page (a single-user install), no model hub (its retrieval embedder is then
        # absent, which chat does not need), nothing fetched at start.
        "WEBUI_AUTH": "False",
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "ENABLE_PERSISTENT_CONFIG": "False",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
    }
    log_path = workdir / "open-webui.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([OPEN_WEBUI, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir, process_group=0)
    app = OpenWebUI(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 300
        while not _healthy(app.url):
            assert process.poll() is None, _tail(log_path)
            assert time.monotonic() < deadline, _tail(log_path)
            time.sleep(1)
        yield app
    finally:
        app.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_person_chats_with_vllama_through_open_webui(vllama: ServerProcess, open_webui: OpenWebUI, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(open_webui.url + "/")
    wait.until(ec.element_to_be_clickable((By.ID, "chat-input")))
    # A new install greets its first user with the release notes.
    for dismiss in browser.find_elements(By.XPATH, "//button[normalize-space()=\"Okay, Let's Go!\"]"):
        dismiss.click()

    # The models Open WebUI lists are vllama's (from /api/tags); pick the embedded default.
    wait.until(ec.element_to_be_clickable((By.ID, "model-selector-model-button"))).click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"[aria-label='Select {MODEL} model']"))).click()
    assert MODEL in browser.find_element(By.ID, "model-selector-model-button").get_attribute("aria-label")

    box = browser.find_element(By.ID, "chat-input")
    box.click()
    box.send_keys(MESSAGE)
    box.send_keys(Keys.ENTER)

    # The answer streams in: text appears under the model's name, then there is more of it.
    answer = "document.querySelector('#response-content-container')?.innerText ?? ''"
    first = WebDriverWait(browser, 300, poll_frequency=0.5).until(lambda b: b.execute_script(f"return {answer}").strip())
    WebDriverWait(browser, 60, poll_frequency=0.5).until(
        lambda b: len(b.execute_script(f"return {answer}").strip()) > len(first) + 20)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "open-webui.png"))
    shown = browser.execute_script(f"return {answer}")
    assert "context length" not in shown and "error" not in shown.lower(), shown
    assert browser.find_element(By.ID, "response-message-model-name").text == MODEL
    assert MESSAGE in browser.find_element(By.TAG_NAME, "body").text

    # The prompt that reached the engine carried Open WebUI's tools: longer than the old context.
    assert _metric(vllama, "vllm:prompt_tokens_total") > OLD_CONTEXT

    # A random model never ends an answer by itself (only at its num_predict, 2,048 tokens): the
    # person presses Stop, as they would, unless the answer has ended meanwhile.
    for stop in browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Stop']"):
        stop.click()
    WebDriverWait(browser, 60).until(lambda b: not b.find_elements(By.CSS_SELECTOR, "button[aria-label='Stop']"))
    assert browser.execute_script(f"return {answer}").strip().startswith(first[:10])


def test_nothing_is_left_running_once_open_webui_is_gone(vllama: ServerProcess, open_webui: OpenWebUI) -> None:
    """After the chat, and whatever Open WebUI still asks in the background (a title, tags),
    every engine request ends once its client, Open WebUI, has gone."""
    open_webui.stop()
    deadline = time.monotonic() + 120
    while _metric(vllama, "vllm:num_requests_running") or _metric(vllama, "vllm:num_requests_waiting"):
        assert time.monotonic() < deadline, "engine requests still running two minutes after the chat"
        time.sleep(1)
    statuses = httpx.get(f"{vllama.url}/metrics", timeout=10).text
    assert 'route="/api/chat",status="500"' not in statuses


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _metric(server: ServerProcess, name: str) -> float:
    """The sum of a metric's series in vllama's `GET /metrics`."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + "{", name + " ")))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
