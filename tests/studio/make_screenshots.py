"""The README's screenshots of the studio, made with the bundled demo model in headless Chromium:

    python tests/studio/make_screenshots.py        # writes assets/screenshots/step1.png and step2.png

Not a test: run it when the page changes. Needs what the browser test needs (Playwright, Debian's Chromium)."""

import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from studio.model import StudioModel  # noqa: E402
from studio.sessions import SessionStore  # noqa: E402
from studio.ui import LAUNCH_OPTIONS, create_demo  # noqa: E402
from tests.studio.test_browser import CHROMIUM, CHROMIUM_ARGS, PLAYING, set_number  # noqa: E402

OUT = REPO / "assets" / "screenshots"


def main() -> None:
    store = SessionStore(tempfile.mkdtemp())
    demo = create_demo(StudioModel.load(str(REPO / "assets" / "shapes-model")), store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH_OPTIONS)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo.local_url)
            page.wait_for_selector("#prior-generate")
            page.locator("#prior-prompt textarea").fill("a red circle on a cyan background")
            page.locator("#prior-randomize input").uncheck()
            set_number(page, "prior-seed", 0)
            page.click("#prior-generate")
            page.wait_for_function("document.querySelectorAll('#prior-gallery img').length == 4", timeout=120_000)
            page.locator("#prior-gallery img").nth(2).click()
            page.wait_for_function("document.querySelector('#prior-current').innerText.includes('seed 2')")
            page.mouse.move(0, 0)
            page.screenshot(path=str(OUT / "step1.png"), full_page=True)

            page.locator("#motion-prompts textarea").fill("a red circle moves left quickly on a cyan background\n"
                                                          "a red circle moves right quickly on a cyan background")
            set_number(page, "motion-factor", 17)
            page.locator("#animate-randomize input").uncheck()
            set_number(page, "animate-seed", 0)
            page.click("#animate")
            page.wait_for_function(PLAYING, timeout=120_000)
            page.wait_for_timeout(1500)
            page.mouse.move(0, 0)
            page.screenshot(path=str(OUT / "step2.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
        store.close()


if __name__ == "__main__":
    main()
