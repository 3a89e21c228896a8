"""Every value that enters the studio is checked where it enters (studio.inputs and the handlers' checks): a bad
one, whatever JSON an API client sends, ends in one clear StudioError message, never in Gradio's generic error."""

import random
import time

import pytest

from studio import StudioError, inputs
from studio.events import MALFORMED_REQUEST
from studio.ui import Handlers


@pytest.mark.parametrize("value, message", [
    ("lone \ud800 surrogate", "not valid Unicode"),
    ("a bell \x07 rings", "control character U\\+0007"),
    ("nul \x00", "control character U\\+0000"),
    ("x" * (inputs.MAX_PROMPT_CHARS + 1), "the limit is 1000"),
    (5, "must be text; got int 5"),
    (["a"], "must be text; got list"),
])
def test_text_is_refused_with_a_reason(value, message):
    with pytest.raises(StudioError, match=message):
        inputs.text(value, "The prompt")


def test_text_keeps_line_breaks_and_tabs():
    assert inputs.text("  a red ball\n\tbounces  ", "The prompt") == "a red ball\n\tbounces"
    assert inputs.text(None, "The prompt") == ""
    with pytest.raises(StudioError, match="U\\+000A"):
        inputs.text("one\ntwo", "The folder", multiline=False)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e308, 10**40, "4", None, True, [4], 2.5, -1])
def test_numbers_are_refused_with_a_reason(value):
    with pytest.raises(StudioError, match="Steps must be a whole number from 1 to 200; got "):
        inputs.whole_number(value, "Steps", 1, 200)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value or abs(value) > 20:
        with pytest.raises(StudioError, match="Guidance must be a number from 0 to 20; got "):
            inputs.number(value, "Guidance", 0, 20)
    assert inputs.whole_number(4.0, "Steps", 1, 200) == 4


def test_prompts_are_checked_before_any_job(model, session):
    for prompt, message in (("lone \ud800 surrogate", "The prompt holds a character that is not valid Unicode"),
                            ("", "Enter a prompt"), ("\x1b[31mred", "control character U\\+001B")):
        with pytest.raises(StudioError, match=message):
            model.generate_prior(session, prompt, steps=1, guidance=1.0)
    with pytest.raises(StudioError, match="Guidance must be a number"):
        model.generate_prior(session, "a ball", steps=1, guidance=float("nan"))
    with pytest.raises(StudioError, match="The motion prompts box holds a character"):
        model.animate(session, "it rolls\nlone \udfff", steps=1)
    assert session.priors == {}


def test_words_the_model_does_not_know_are_named_but_the_job_runs(shapes_model, store):
    handlers = Handlers(shapes_model, store, demo=None, queue_size=None)
    with pytest.warns(UserWarning, match="This model does not know: corgi, beach"):
        sid, gallery, *_ = handlers.generate_prior(None, "a corgi on a beach", "", 1, False, 1, 1.0, 1, "")
    assert len(gallery) == 1
    with pytest.warns(UserWarning, match="This model does not know: hops"):
        handlers.run_animate(sid, "a red circle hops", 10, 0.2, 0.25, 1, 1.0, 1, False)
    assert shapes_model.unknown_words("a red circle moves left on a cyan background.") == []


def test_the_page_checks_a_prompt_in_an_event_without_outputs(app, raw, capfd):
    """An empty or broken prompt is refused once, before the job queues: no field gets an error badge (the check
    has no outputs) and the server prints no traceback (it is the visitor's mistake)."""
    (check,) = [i for i, fn in app.demo.fns.items() if fn.name == "check_prior"]
    dependency = app.demo.config["dependencies"][check]
    assert dependency["outputs"] == [] and len(dependency["inputs"]) == 8
    capfd.readouterr()
    for prompt, message in (("", "Enter a prompt for the spatial prior."),
                            ("lone \ud800 surrogate", "The prompt holds a character that is not valid Unicode")):
        reply = raw(app.url, check, [None, prompt, "", 0, True, 1, 1.0, 1])
        assert reply["success"] is False and reply["output"]["error"].startswith(message)
    assert "Traceback" not in capfd.readouterr().err


def junk_values(rng: random.Random) -> list:
    return [None, float("nan"), float("inf"), -float("inf"), 1e308, -(10**40), 10**40, "12", "abc", "", True,
            False, [], [1, 2], {"a": 1}, 3.5, -1, 0, "lone \ud800", "\x07", "x" * 5000, rng.randint(-5, 300)]


def test_fuzzed_api_requests_get_studio_messages(app, raw, monkeypatch):
    """A hundred requests to the named endpoints, each with one to three arguments replaced by junk, as raw JSON
    (NaN and lone surrogates included): each one succeeds or fails with the text of a StudioError."""
    raised = []
    original = StudioError.__init__

    def recording_init(self, *args):
        raised.append(str(args[0]) if args else "")
        original(self, *args)

    monkeypatch.setattr(StudioError, "__init__", recording_init)
    index = {fn.api_name: i for i, fn in app.demo.fns.items() if fn.api_name}
    # Valid and quick: one step, one candidate, two frames (0.25 s). The first value of each is the session (a State).
    valid = {"generate_prior": [None, "a red ball", "", 1, False, 1, 1.0, 1, ""],
             "animate": [None, "it rolls", 50, 0.5, 0.25, 1, 1.0, 1, False, 1, 1, 17]}
    rng = random.Random(1234)
    generic, outcomes = [], {"ok": 0, "refused": 0}
    started = time.time()
    for _ in range(100):
        if time.time() - started > 120:
            break
        name = rng.choice(sorted(valid))
        data = list(valid[name])
        for position in rng.sample(range(1, len(data)), rng.randint(1, 3)):
            data[position] = rng.choice(junk_values(rng))
        reply = raw(app.url, index[name], data)
        if reply["success"]:
            outcomes["ok"] += 1
            continue
        outcomes["refused"] += 1
        error = reply["output"].get("error")
        if error not in raised:
            generic.append((name, data, error))
    assert generic == [], generic[:3]
    assert outcomes["refused"] >= 50


def test_a_lone_surrogate_reaches_an_api_client_as_a_message(app, raw):
    index = next(i for i, fn in app.demo.fns.items() if fn.api_name == "generate_prior")
    reply = raw(app.url, index, [None, "lone \ud800 surrogate", "", 1, False, 1, 1.0, 1, ""])
    assert reply["output"]["error"] == ("The prompt holds a character that is not valid Unicode (a lone "
                                        "surrogate): remove it.")



FILE_META = {"_type": "gradio.FileData"}
# What a careless or hostile client sends for the image of /use_image instead of a file uploaded through the page.
MALFORMED_FILES = [1, "x", [], {}, {"path": 3}, {"path": "/etc/passwd"}, {"path": "/etc/passwd", "meta": FILE_META},
                   {"path": "../../etc/passwd", "meta": FILE_META}, {"path": None, "meta": FILE_META},
                   {"path": "http://127.0.0.1:9/x.png", "url": "http://127.0.0.1:9/x.png", "meta": FILE_META},
                   [{"path": "a.png", "meta": FILE_META}], {"path": "lone \ud800"}, float("nan")]


def test_a_file_that_is_no_upload_of_this_page_is_refused_with_a_message(app, raw):
    """Gradio refuses these itself, before the handler runs; the caller still gets its reason, and no file outside
    the uploads becomes a prior."""
    index = next(i for i, fn in app.demo.fns.items() if fn.api_name == "use_image")
    priors_before = sum(len(session.priors) for session in app.store._sessions.values())
    for payload in MALFORMED_FILES:
        reply = raw(app.url, index, [None, payload, "", "crop", 0.5])
        assert reply["success"] is False and reply["output"]["error"] == MALFORMED_REQUEST.format(count=5), payload
    assert sum(len(session.priors) for session in app.store._sessions.values()) == priors_before


def test_every_event_answers_junk_with_a_message(app, raw):
    """Each event of the page, called by its index with arguments of the wrong kind or number, is refused with text."""
    for index in app.demo.fns:
        for data in ([], [None] * 40, [{"path": "/etc/passwd"}] * len(app.demo.fns[index].inputs)):
            reply = raw(app.url, index, data)
            if reply["msg"] == "refused" or reply["success"]:
                continue
            assert reply["output"]["error"], (app.demo.fns[index].name, data)
