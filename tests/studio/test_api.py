"""The named endpoints, driven with gradio_client against the app served on 127.0.0.1."""

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from higen_core import video_io


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


def test_generate_a_prior_then_animate_two_motion_prompts_on_it(client, app):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate_prior", "/animate", "/use_image", "/stop"} <= set(endpoints)

    gallery, seed, current, motion = client.predict(
        "a red ball", "", 5, False, 2, 1.0, 2, "", api_name="/generate_prior")
    assert seed == 5 and [item["caption"] for item in gallery] == ["seed 5", "seed 6"]
    assert motion == "a red ball"  # the prior's prompt is the default motion prompt

    files, settings, used_seed = client.predict(
        "a red ball rolls left\na red ball bounces", 60, 0.5, 0.75, 2, 1.0, 7, False, api_name="/animate")
    mp4s = [f for f in files if f.endswith(".mp4")]
    assert len(mp4s) == 2 and used_seed == 7
    assert [s["motion_prompt"] for s in settings] == ["a red ball rolls left", "a red ball bounces"]
    for path, expected in zip(mp4s, settings):
        assert video_io.read_mp4_frames(path).shape[0] == 6
        assert video_io.read_mp4_metadata(path) == expected
    prior_id = settings[0]["prior"]["id"]
    assert settings[1]["prior"]["id"] == prior_id and settings[0]["prior"]["seed"] == 5

    # Animating again reuses the same prior: no new one is made.
    _, again, _ = client.predict("a red ball spins", 60, 1.0, 0.375, 2, 1.0, 7, False, api_name="/animate")
    assert again[0]["prior"]["id"] == prior_id
    session = next(s for s in app.store._sessions.values() if prior_id in s.priors)
    assert len(session.priors) == 2  # the two candidates, nothing since


def test_errors_reach_the_client_as_messages(client, tmp_path):
    with pytest.raises(Exception, match="Enter a prompt"):
        client.predict("", "", 0, False, 2, 1.0, 1, "", api_name="/generate_prior")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(Exception, match="not a readable image"):
        client.predict(handle_file(str(not_an_image)), "", api_name="/use_image")


def test_sessions_do_not_see_each_other(app, client):
    other = Client(app.url, verbose=False)
    with pytest.raises(Exception, match="no spatial prior yet"):
        other.predict("it moves", 60, 1.0, 0.375, 2, 1.0, 1, False, api_name="/animate")


def test_a_client_picks_a_candidate_as_a_click_does(app):
    client = Client(app.url, verbose=False)
    with pytest.raises(Exception, match="no candidates yet"):
        client.predict(0, "", api_name="/choose_candidate")
    client.predict("a green cone", seed=30, randomize_seed=False, steps=2, guidance=1.0, candidates=3,
                   api_name="/generate_prior")  # what is left out takes the page's starting value
    current, motion = client.predict(2, api_name="/choose_candidate")
    assert current["label"] == "Current prior · seed 32" and Path(current["value"]).is_file()
    _, settings, _ = client.predict("it turns", 60, 1.0, 0.25, 1, 1.0, 1, False, api_name="/animate")
    assert settings[0]["prior"]["seed"] == 32 and motion == "a green cone"
    with pytest.raises(Exception, match="The candidate must be a whole number from 0 to 2; got 3"):
        client.predict(3, "", api_name="/choose_candidate")


def test_the_one_mcp_tool_needs_no_session(app):
    import httpx

    # What an MCP client asks for: the tools/list request of the protocol, over its streamable HTTP transport.
    listed = httpx.post(app.url + "gradio_api/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"accept": "application/json, text/event-stream"}, timeout=30)
    data = next(line for line in listed.text.splitlines() if line.startswith("data:"))
    tools = {tool["name"]: tool for tool in json.loads(data[len("data:"):])["result"]["tools"]}
    # One tool: an agent's calls share no session, so the endpoints that act on one (a prior made by one call,
    # animated by the next) would only fail there; no private event of the page (checks, previews, model loading)
    # is a tool either.
    assert set(tools) == {"text_to_video"}
    properties = tools["text_to_video"]["inputSchema"]["properties"]
    assert "sid" not in properties and properties["prompt"]["description"].startswith("what the picture shows")


def test_both_steps_in_one_call_need_no_session(app):
    # What an MCP agent calls: its calls share no session, so a prior from one call could not be animated by the next.
    files = Client(app.url, verbose=False).predict("a red ball", "it rolls\nit bounces", 60, 0.5, 0.25, 2, 1.0, 4,
                                                   api_name="/text_to_video")
    mp4s = [f for f in files if f.endswith(".mp4")]
    assert len(mp4s) == 2 and video_io.read_mp4_frames(mp4s[0]).shape[0] == 2
    settings = video_io.read_mp4_metadata(mp4s[1])
    assert (settings["motion_prompt"], settings["seed"], settings["prior"]["prompt"]) == ("it bounces", 4, "a red ball")
    with pytest.raises(Exception, match="Enter a prompt"):
        Client(app.url, verbose=False).predict("", "", 60, 0.5, 0.25, 2, 1.0, 4, api_name="/text_to_video")
