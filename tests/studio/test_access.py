"""Who may reach what (studio.access, app.py): a public studio has no model-loading event at all, even for a raw call
by fn_index; locally, "Load model" reads only what the operator allows and its refusals reveal nothing."""

import pytest

import app
from studio import StudioError
from studio.access import REFUSED, ModelSources, is_loopback, parse_auth
from studio.model import StudioModel
from studio.sessions import SessionStore
from studio.ui import Handlers, create_demo

OPERATOR_HANDLERS = {"load_model", "toggle_offload", "toggle_vae_tiling", "apply_lora", "list_models"}


def test_loopback_hosts():
    for host in (None, "localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "studio.example.org"):
        assert not is_loopback(host), host


@pytest.mark.parametrize("argv, env", [([], {"SPACE_ID": "someone/higen"}), (["--share"], {}),
                                       (["--host", "0.0.0.0"], {}), ([], {"GRADIO_SERVER_NAME": "0.0.0.0"})])
def test_spaces_share_links_and_open_hosts_are_public(argv, env, monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert app.parse_args(argv).public


def test_loopback_is_not_public(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert not app.parse_args([]).public and not app.parse_args(["--host", "127.0.0.1"]).public


def public_demos(model, store):
    return {"space": create_demo(model, store, on_spaces=True, allow_model_loading=False),
            "open host": create_demo(model, store, allow_model_loading=False)}


def test_a_public_studio_registers_no_operator_event(model, store):
    local = create_demo(model, store)
    assert OPERATOR_HANDLERS <= {fn.name for fn in local.fns.values()}
    for name, demo in public_demos(model, store).items():
        names = {fn.name for fn in demo.fns.values()}
        assert not OPERATOR_HANDLERS & names, name
        # The page's config, which is what /gradio_api/info and fn_index calls are built from, has no trace either.
        dependencies = demo.config["dependencies"]
        assert len(dependencies) == len(demo.fns)
        ids = {b.elem_id for b in demo.blocks.values()}
        assert not {"model-source", "model-vgen", "model-base", "model-load", "model-loading", "model-lora",
                     "model-lora-apply"} & ids, name
        for elem_id in ("model-offload", "model-vae-tiling"):
            assert next(b for b in demo.blocks.values() if b.elem_id == elem_id).interactive is False


def test_a_raw_call_by_fn_index_cannot_load_a_model_on_a_public_studio(model, serve, raw, tmp_path):
    target = tmp_path / "other-model"
    model.pipe.save_pretrained(target)
    store = SessionStore(tmp_path / "sessions")
    local = create_demo(model, store)
    load_index = next(i for i, fn in local.fns.items() if fn.name == "load_model")
    demo = serve(model, store, on_spaces=True, allow_model_loading=False)
    try:
        name = model.name
        # Whatever the index the load event had locally, and one past the last event: no model is loaded.
        raw(demo.local_url, load_index, [str(target), "", ""])
        assert model.name == name
        assert raw(demo.local_url, len(demo.fns), [str(target), "", ""])["msg"] == "refused"
    finally:
        demo.close()
        store.close()


def test_load_model_takes_only_what_the_operator_allows(tmp_path, monkeypatch):
    allowed = tmp_path / "models"
    outside = tmp_path / "private"
    allowed.mkdir()
    outside.mkdir()
    model = StudioModel.load("tiny", cache_dir=tmp_path / "cache", sources=ModelSources((allowed.resolve(),)))
    model.pipe.save_pretrained(allowed / "mine")
    model.pipe.save_pretrained(outside / "theirs")
    (allowed / "escape").symlink_to(outside / "theirs")
    (outside / "higen.pth").write_bytes(b"weights")
    conversions = []
    monkeypatch.setattr("higen_core.convert.convert_to_pipeline", lambda *args: conversions.append(args))

    # Missing, outside, through a symlink, a file where a folder is wanted, an unlisted hub id: one message, which
    # names no path.
    refusals = []
    for source in (str(allowed / "missing"), str(outside / "theirs"), str(allowed / "escape"),
                   str(tmp_path / "nowhere"), "owner/model", "../private/theirs", "/etc/passwd"):
        with pytest.raises(StudioError) as refused:
            model.load_other(source=source)
        refusals.append(str(refused.value))
    with pytest.raises(StudioError) as refused:
        model.load_other(vgen_checkpoint=str(outside / "higen.pth"), base=str(allowed / "mine"))
    refusals.append(str(refused.value))
    assert set(refusals) == {REFUSED} and str(tmp_path) not in REFUSED
    assert conversions == []  # the checkpoint outside was never handed to the converter
    assert model.name == "tiny"
    assert model.load_other(source=str(allowed / "mine"))["model"] == "mine"
    assert model.load_other(source="tiny")["tiny"] is True


def test_the_default_allows_the_starting_models_folder_and_the_cache(tmp_path, demo_model_dir):
    sources = ModelSources.default(str(demo_model_dir), tmp_path / "cache")
    assert sources.folders == (demo_model_dir.resolve(), (tmp_path / "cache").resolve())
    assert ModelSources.default("tiny", tmp_path / "cache").folders == ((tmp_path / "cache").resolve(),)
    listed = ModelSources.from_entries([str(tmp_path), "stabilityai/stable-diffusion-2-1-base"])
    assert listed.base("stabilityai/stable-diffusion-2-1-base") == "stabilityai/stable-diffusion-2-1-base"
    with pytest.raises(StudioError, match="neither a folder nor a hub id"):
        ModelSources.from_entries([str(tmp_path / "missing")])


def test_the_model_panel_offers_what_it_finds_in_the_allowed_folders(tmp_path, model, store):
    from higen_core.lora import LORA_WEIGHT_NAME as WRITTEN

    runs = tmp_path / "workspace" / "runs"
    for run in ("a", "b"):
        (runs / run / "final").mkdir(parents=True)
        (runs / run / "final" / "model_index.json").write_text("{}")
        (runs / run / "final" / "unet").mkdir()
    (runs / "b" / "lora").mkdir()
    (runs / "b" / "lora" / WRITTEN).write_bytes(b"")
    (runs / ".hidden" / "final").mkdir(parents=True)
    (runs / ".hidden" / "final" / "model_index.json").write_text("{}")
    (tmp_path / "elsewhere" / "final").mkdir(parents=True)
    (tmp_path / "elsewhere" / "final" / "model_index.json").write_text("{}")
    (runs / "link").symlink_to(tmp_path / "elsewhere")  # leads outside: not offered
    sources = ModelSources().with_folders(tmp_path / "workspace")
    assert sources.found() == ([str((runs / "a" / "final").resolve()), str((runs / "b" / "final").resolve())],
                               [str((runs / "b" / "lora").resolve())])
    assert sources.found(max_depth=1) == ([], [])  # runs/X/final is three levels down
    assert sources.with_folders(tmp_path / "workspace").folders == sources.folders  # no folder twice

    # The panel lists them, and opening it again lists what a training run made since.
    before = model.sources
    try:
        model.sources = sources
        demo = create_demo(model, store)
        panel = next(b for b in demo.blocks.values() if b.elem_id == "model-source")
        assert [choice[1] for choice in panel.choices] == ["tiny", *sources.found()[0]]
        (runs / "c" / "final").mkdir(parents=True)
        (runs / "c" / "final" / "model_index.json").write_text("{}")
        pipelines, loras = Handlers(model, store, demo=None, queue_size=None).list_models()
        assert [choice[1] for choice in pipelines.choices][-1] == str((runs / "c" / "final").resolve())
        assert [choice[1] for choice in loras.choices] == [str((runs / "b" / "lora").resolve())]
    finally:
        model.sources = before


def test_the_train_tabs_workspace_is_a_folder_the_studio_may_load_from(tmp_path, monkeypatch):
    seen = {}

    def serve_nothing(model, *args, **kwargs):  # what the app would serve, caught before it is served
        seen["model"] = model
        raise SystemExit(0)

    monkeypatch.setattr("studio.ui.create_demo", serve_nothing)
    with pytest.raises(SystemExit):
        app.main(["--model", "tiny", "--enable-training", "--workspace", str(tmp_path / "ws"),
                  "--cache-dir", str(tmp_path / "cache")])
    assert (tmp_path / "ws").resolve() in seen["model"].sources.folders


def test_credentials(tmp_path):
    assert parse_auth(None, None) is None
    assert parse_auth("ann:pass:word", None) == [("ann", "pass:word")]
    file = tmp_path / "logins"
    file.write_text("# who may come in\nann:one\n\nbob:two\n")
    assert parse_auth(None, str(file)) == [("ann", "one"), ("bob", "two")]
    for pair in ("ann", ":pw", "ann:"):
        with pytest.raises(StudioError, match="USER:PASSWORD"):
            parse_auth(pair, None)


def test_training_on_an_open_host_needs_a_login(monkeypatch, capsys):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        app.parse_args(["--enable-training", "--host", "0.0.0.0"])
    assert exit_info.value.code == 2 and "without --auth" in capsys.readouterr().err
    args = app.parse_args(["--enable-training", "--host", "0.0.0.0", "--auth", "ann:secret"])
    assert args.public and args.auth == [("ann", "secret")]
    assert app.parse_args(["--enable-training"]).auth is None  # loopback: as before
    with pytest.raises(SystemExit):
        app.parse_args(["--enable-training", "--share", "--auth", "ann:secret"])  # never with a share link
    with pytest.raises(SystemExit):
        app.parse_args(["--host", "0.0.0.0", "--allow-models", "."])
    assert "local use" in capsys.readouterr().err
