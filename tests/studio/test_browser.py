"""The studio in a real browser: headless Chromium driven by Playwright through both steps by the stable elem_ids.

Needs `pip install playwright` and Debian's chromium (`apt-get install -y chromium`); Playwright's own browser
download is not used. Screenshots go to $HIGEN_TEST_ARTIFACTS (default: tests/studio/artifacts/).
"""

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

CHROMIUM = os.environ.get("HIGEN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("HIGEN_TEST_ARTIFACTS", Path(__file__).with_name("artifacts")))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

VIDEO_STATE = """() => Array.from(document.querySelectorAll('#videos video')).map(v => ({
    src: v.currentSrc, ready: v.readyState, paused: v.paused, time: v.currentTime, loop: v.loop}))"""
PLAYING = """() => { const videos = Array.from(document.querySelectorAll('#videos video')).filter(v => v.currentSrc);
    return videos.length == 2 && videos.every(v => v.readyState >= 2 && !v.paused); }"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"No Chromium at {CHROMIUM}: apt-get install -y chromium (or set HIGEN_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def own_studio(model, serve, folder: Path, **options):
    """A studio served for one test, with a session store of its own in `folder`: (url, demo, store). Closed after,
    and a Train tab's run still going is killed."""
    from studio.sessions import SessionStore

    store = SessionStore(folder / "sessions")
    demo = serve(model, store, **options)
    try:
        yield SimpleNamespace(url=demo.local_url, demo=demo, store=store)
    finally:
        training = options.get("training")
        if training is not None and training.running():
            training.process.kill()
        demo.close()
        store.close()


def set_number(page, elem_id: str, value) -> None:
    """A slider's or number's text box: type the value and leave the box, as a person would."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def session_of(app, page):
    browser_id = page.evaluate("Object.keys(localStorage).length")  # the BrowserState entry is there
    assert browser_id >= 1
    (session,) = [s for s in app.store._sessions.values() if s.clients]
    return session


def test_both_steps_in_chromium(browser, app, model):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app.url)
    page.wait_for_selector("#prior-generate")
    assert page.locator("#model-banner").inner_text().count("untrained tiny model") == 1

    # Step 1: two candidates, then pick the second.
    page.locator("#prior-prompt textarea").fill("a red ball bouncing on a wooden floor")
    page.locator("#prior-negative textarea").fill("blurry")
    page.locator("#prior-randomize input").uncheck()
    set_number(page, "prior-seed", 21)
    set_number(page, "prior-candidates", 2)
    set_number(page, "prior-steps", 2)
    page.click("#prior-generate")
    page.wait_for_function("document.querySelectorAll('#prior-gallery img').length == 2", timeout=60_000)
    page.locator("#prior-gallery img").nth(1).click()
    page.wait_for_function("document.querySelector('#prior-current').innerText.includes('seed 22')", timeout=30_000)
    assert page.locator("#motion-prompts textarea").input_value() == "a red ball bouncing on a wooden floor"
    page.mouse.move(0, 0)  # no hover decorations in the screenshot
    page.screenshot(path=str(ARTIFACTS / "step1.png"), full_page=True)

    # Step 2: two motion prompts on that prior, in one batch.
    page.locator("#motion-prompts textarea").fill("the ball rolls to the left\nthe ball jumps high")
    set_number(page, "motion-factor", 70)
    set_number(page, "appearance-factor", 0.5)
    set_number(page, "animate-duration", 0.75)  # 6 frames at 8 fps
    set_number(page, "animate-steps", 2)
    page.click("#animate")
    page.wait_for_function("Array.from(document.querySelectorAll('#videos video')).filter(v => v.currentSrc)"
                           ".length == 2", timeout=60_000)
    labels = page.locator("#videos").inner_text()
    assert "the ball rolls to the left" in labels and "the ball jumps high" in labels and "γm 70" in labels

    # Both play, and loop: each has data, is not paused, and its time moves on.
    page.wait_for_function(PLAYING, timeout=30_000)
    first = page.evaluate(VIDEO_STATE)
    page.wait_for_function("times => Array.from(document.querySelectorAll('#videos video'))"
                           ".every((v, i) => v.currentTime != times[i])", arg=[v["time"] for v in first],
                           timeout=30_000)
    later = page.evaluate(VIDEO_STATE)
    assert all(v["loop"] for v in later)
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "step2.png"), full_page=True)

    session = session_of(app, page)
    (prior,) = [p for p in session.priors.values() if p.settings["seed"] == 22]
    assert [v.prior_id for v in session.last_videos] == [prior.id, prior.id]
    shown = [v["src"] for v in later]

    # A long job shows a live preview in the first slot as it goes; Stop ends it within a step or two of the click
    # and keeps the videos its last step predicts, marked partial; the next job runs.
    set_number(page, "animate-steps", 200)
    page.click("#animate")
    page.wait_for_function("document.querySelector('#videos').innerText.includes('Preview · step')", timeout=30_000)
    assert page.evaluate(VIDEO_STATE)[0]["src"] not in shown
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=True)
    page.click("#stop")
    started = time.time()
    while model._lock.locked() and time.time() - started < 20:
        time.sleep(0.05)
    assert not model._lock.locked(), "the job did not stop"
    page.wait_for_function("document.querySelector('#videos').innerText.split('partial: stopped after').length == 3",
                           timeout=30_000)
    assert len(session.last_videos) == 2 and all(v.settings["partial"] for v in session.last_videos)
    assert session.last_videos[0].settings["partial"]["steps_done"] < 200
    set_number(page, "animate-steps", 2)
    page.locator("#motion-prompts textarea").fill("the ball spins")
    page.click("#animate")
    # Its result, not a passing state of the slots while the stopped job's videos and previews come and go.
    page.wait_for_function("document.querySelector('#videos').innerText.includes('the ball spins')", timeout=60_000)
    page.wait_for_function("Array.from(document.querySelectorAll('#videos video')).filter(v => v.currentSrc)"
                           ".length == 1", timeout=60_000)
    assert session.last_videos[0].settings["motion_prompt"] == "the ball spins"

    # A refresh keeps the session: history and the last videos come back.
    page.reload()
    page.wait_for_function("document.querySelectorAll('#history img').length == 6", timeout=30_000)
    assert session_of(app, page) is session
    assert "the ball spins" in page.locator("#videos").inner_text()

    # "Send back to inputs": the first video's settings return to step 2, its prior becomes current again.
    session.current_prior_id = None
    page.locator("#history img").nth(4).click()  # newest first: spins, 2 partial, jumps high, rolls left, the prior
    page.wait_for_function("document.querySelector('#history-settings').innerText.includes('the ball rolls')")
    page.click("#history-remix")
    page.wait_for_function("document.querySelector('#motion-prompts textarea').value == 'the ball rolls to the left'")
    assert page.locator("#motion-factor input[type=number]").input_value() == "70"
    assert page.locator("#animate-duration input[type=number]").input_value() == "0.75"
    assert session.current_prior is prior

    # Closing the page releases the session (deleted after the grace period).
    page.close()
    deadline = time.time() + 10
    while session.released_at is None and time.time() < deadline:
        time.sleep(0.1)
    assert session.released_at is not None


def test_a_motion_example_shows_its_own_videos_at_a_click(browser, recommending_model, serve, tmp_path):
    """Step 2's examples, like step 1's: a click fills the motion prompts and γm and shows the example's videos, made
    once from the first example prompt's prior and then read from this server's cache."""
    example_videos = "n => document.querySelectorAll('#motion-example-videos video').length == n"
    with own_studio(recommending_model, serve, tmp_path) as studio:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(studio.url)
        page.wait_for_selector("#prior-generate")
        page.get_by_text("flies left, then up (γm 40)").click()
        page.wait_for_function(example_videos, arg=2, timeout=60_000)
        assert page.locator("#motion-prompts textarea").input_value() == "a kite flies left\na kite flies up"
        assert page.locator("#motion-factor input[type=number]").input_value() == "40"
        assert "animating \"a kite over a hill\"" in page.inner_text("#motion-example-videos")
        page.get_by_text("hangs still (γm 10)").click()
        page.wait_for_function(example_videos, arg=1, timeout=60_000)
        page.get_by_text("flies left, then up (γm 40)").click()
        page.wait_for_function(example_videos, arg=2, timeout=60_000)
        assert "a kite hangs still" not in page.inner_text("#motion-example-videos")
        # Three videos made for three examples shown: the third click was served from the cache.
        assert len(list((tmp_path / "sessions" / "examples").rglob("*.mp4"))) == 3
        # The visitor's own step 2 is untouched: an example is shown, not made their prior.
        assert "none yet" in page.inner_text("#prior-current")
        page.close()


def test_a_full_queue_says_so(browser, model, serve, tmp_path):
    with own_studio(model, serve, tmp_path, queue_size=0) as studio:  # every job finds the queue full
        page = browser.new_page()
        page.goto(studio.url)
        page.locator("#prior-prompt textarea").fill("a red ball")
        page.click("#prior-generate")
        page.wait_for_selector("text=The studio is busy", timeout=30_000)
        assert not any(s.priors for s in studio.store._sessions.values())
        page.close()


TOASTS = "() => Array.from(document.querySelectorAll('.toast-body')).map(t => t.innerText)"
FIELD_ERRORS = ("() => Array.from(document.querySelectorAll('.error'))"
                ".filter(e => !e.closest('.toast-body, .toast-wrap')).length")


def test_the_page_is_calm_and_remembers(browser, model, serve, tmp_path):
    """One clear message for an empty prompt and no error badge on any field; galleries that are not upload boxes;
    Stop that says what it did; a refresh that brings the values back with the history."""
    with own_studio(model, serve, tmp_path) as studio:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(studio.url)
        page.wait_for_selector("#prior-generate")
        assert "Drop Media Here" not in page.inner_text("body")
        assert "middle frame" in page.locator("#prior-note").inner_text()

        page.click("#prior-generate")  # no prompt
        page.wait_for_selector("text=Enter a prompt for the spatial prior.", timeout=30_000)
        page.wait_for_timeout(500)
        toasts = page.evaluate(TOASTS)
        assert sum("Enter a prompt" in t for t in toasts) == 1, toasts
        # Nothing marked "error" outside the message itself: no badge on any field.
        assert page.evaluate(FIELD_ERRORS) == 0

        page.click("#stop")
        page.wait_for_selector("text=Nothing is running", timeout=30_000)
        stop_toast = page.locator(".toast-body", has_text="Nothing is running")
        assert "info" in stop_toast.get_attribute("class") and "error" not in stop_toast.get_attribute("class")

        page.locator("#prior-prompt textarea").fill("a green kite")
        page.locator("#prior-randomize input").uncheck()
        set_number(page, "prior-seed", 33)
        set_number(page, "prior-candidates", 1)
        set_number(page, "prior-steps", 2)
        page.click("#prior-generate")
        page.wait_for_function("document.querySelectorAll('#prior-gallery img').length == 1", timeout=60_000)
        page.locator("#motion-prompts textarea").fill("the kite rises")
        set_number(page, "motion-factor", 30)
        set_number(page, "animate-duration", 0.375)
        set_number(page, "animate-steps", 2)
        page.locator("#animate-randomize input").uncheck()
        set_number(page, "animate-seed", 5)
        page.click("#animate")
        page.wait_for_function("document.querySelectorAll('#history img').length == 2", timeout=60_000)
        page.mouse.move(0, 0)
        page.screenshot(path=str(ARTIFACTS / "calm.png"), full_page=True)
        # History is shown, not edited: no clear or upload control on it.
        assert page.locator("#history button[aria-label='Clear'], #history input[type=file]").count() == 0

        page.reload()
        page.wait_for_function("document.querySelectorAll('#history img').length == 2", timeout=30_000)
        page.wait_for_function("document.querySelector('#prior-prompt textarea').value == 'a green kite'")
        assert page.locator("#motion-prompts textarea").input_value() == "the kite rises"
        assert page.locator("#prior-seed input").input_value() == "33"
        assert page.locator("#motion-factor input[type=number]").input_value() == "30"
        assert page.locator("#animate-duration input[type=number]").input_value() == "0.375"
        assert page.locator("#animate-seed input").input_value() == "5"
        # The seeds were fixed, and stay fixed: the next run reuses them.
        assert not page.locator("#prior-randomize input").is_checked()
        assert not page.locator("#animate-randomize input").is_checked()

        # What was typed but not run yet comes back too.
        page.locator("#motion-prompts textarea").fill("the kite lands")
        set_number(page, "motion-factor", 45)
        page.wait_for_timeout(2000)  # the browser keeps them as the server answers each change
        page.reload()
        page.wait_for_selector("#motion-prompts textarea")
        page.wait_for_function("document.querySelector('#motion-prompts textarea').value == 'the kite lands'",
                               timeout=30_000)
        assert page.locator("#motion-factor input[type=number]").input_value() == "45"
        assert page.locator("#prior-prompt textarea").input_value() == "a green kite"
        page.close()


def test_the_train_tab_shows_samples_and_a_reopened_page_finds_its_run(browser, model, serve, tmp_path):
    """Start a run (a stand-in trainer), see its sample videos, reload: the form is the run's; Stop, reload: Resume is
    ticked, so that Start goes on from the checkpoint."""
    import sys

    from studio.train_tab import TrainingWorkspace

    workspace = TrainingWorkspace(tmp_path / "ws", trainer=[sys.executable, str(Path(__file__).with_name(
        "fake_trainer.py"))])

    def open_tab():
        page.goto(studio.url)
        page.get_by_role("tab", name="Train").click()
        page.wait_for_selector("#train-start")

    with own_studio(model, serve, tmp_path, training=workspace) as studio:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        open_tab()
        page.locator("#train-output textarea, #train-output input").first.fill("runs/browser")
        page.locator("#train-field-max_train_steps textarea, #train-field-max_train_steps input").first.fill("1000")
        page.locator("#train-field-sample_every textarea, #train-field-sample_every input").first.fill("3")
        page.click("#train-start")
        page.wait_for_function("document.querySelector('#train-status').innerText.startsWith('Running')",
                               timeout=30_000)
        page.wait_for_function("document.querySelectorAll('#train-samples video, #train-samples img').length >= 2",
                               timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "train.png"), full_page=True)

        open_tab()  # the page reopened while the run goes on: its form is the run's, Resume unticked
        page.wait_for_function("document.querySelector('#train-field-max_train_steps textarea, "
                               "#train-field-max_train_steps input').value == '1000'", timeout=30_000)
        assert page.locator("#train-output textarea, #train-output input").first.input_value() == "runs/browser"
        assert not page.locator("#train-resume input").is_checked()

        page.click("#train-stop")
        page.wait_for_function("document.querySelector('#train-status').innerText.startsWith('Stopped at a "
                               "checkpoint')", timeout=30_000)
        open_tab()
        page.wait_for_function("document.querySelector('#train-resume input').checked", timeout=30_000)
        assert "--resume=latest" in page.locator("#train-command").inner_text()
        page.close()


def queue_rows(page) -> list[list[str]]:
    """The queue table's rows as text: [number, job, state, result?] each."""
    lines = [line.strip() for line in page.locator("#queue").inner_text().splitlines() if line.strip()]
    rows = []
    for line in lines[lines.index("result") + 1:]:
        if line.isdigit():
            rows.append([line])
        else:
            rows[-1].append(line)
    return rows


def test_jobs_line_up_in_the_queue_and_land_in_the_history(browser, model, serve, tmp_path):
    """Add three animations to the queue from one page (the first long), cancel the last while the first runs, and
    walk away: the second's videos arrive in the history and the slots by themselves."""
    with own_studio(model, serve, tmp_path) as studio:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(studio.url)
        page.wait_for_selector("#prior-generate")
        page.locator("#prior-prompt textarea").fill("a yellow star")
        set_number(page, "prior-candidates", 1)
        set_number(page, "prior-steps", 2)
        page.click("#prior-generate")
        page.wait_for_function("document.querySelectorAll('#prior-gallery img').length == 1", timeout=60_000)

        # The first is long enough (2 videos, 150 steps) to be running while the others are added and cancelled.
        for prompt, steps in (("the star spins slowly", 150), ("the star falls", 2), ("the star hides", 2)):
            page.locator("#motion-prompts textarea").fill("\n".join([prompt] * (2 if steps == 150 else 1)))
            set_number(page, "animate-steps", steps)
            page.click("#animate-queue")
            page.wait_for_function(f"(document.querySelector('#queue') || {{innerText: ''}}).innerText"
                                   f".includes('{prompt}')",
                                   timeout=30_000)
        rows = queue_rows(page)
        # Each names the prior it animates: the one current when it was added (seeded at random here).
        prior = f"prior “a yellow star”, seed {session_of(studio, page).current_prior.settings['seed']}"
        assert [row[1:3] for row in rows] == [
            [f"animate “the star spins slowly” +1 · γm 50 · γa 1 · {prior}", "running"],
            [f"animate “the star falls” · γm 50 · γa 1 · {prior}", "waiting"],
            [f"animate “the star hides” · γm 50 · γa 1 · {prior}", "waiting"]]
        last = int(rows[2][0])
        page.locator("#queue").get_by_text("the star hides").click()  # its row: its number, to cancel
        page.wait_for_function(f"document.querySelector('#queue-number input').value == '{last}'", timeout=10_000)
        page.click("#queue-cancel")
        page.wait_for_function("(document.querySelector('#queue') || {innerText: ''}).innerText.includes('cancelled')",
                               timeout=30_000)
        page.wait_for_function("document.querySelector('#videos').innerText.includes('the star falls')",
                               timeout=120_000)
        page.wait_for_function("document.querySelectorAll('#history img').length == 4", timeout=30_000)  # 1 + 2 + 1
        page.mouse.move(0, 0)
        page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)
        assert [row[2] for row in queue_rows(page)] == ["done", "done", "cancelled"]
        page.close()
