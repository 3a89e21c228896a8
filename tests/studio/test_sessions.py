"""Per-session state (studio.sessions): ids, folders, refresh versus close, reaping, the stop flag."""

import os
import pickle
import socket
import subprocess
import sys
import tempfile

from studio.sessions import OWNER_FILE, SessionStore, StopFlag


def test_sessions_have_private_folders_and_unguessable_ids(store):
    a, b = store.ensure(None), store.ensure(None)
    assert a.id != b.id and len(a.id) == 16
    assert a.folder.parent == b.folder.parent == store.root and a.folder != b.folder
    assert a.folder.stat().st_mode & 0o077 == 0  # no one else on the machine reads it
    assert store.ensure(a.id) is a and store.get(b.id) is b
    assert store.get("unknown") is None and store.ensure("unknown").id != "unknown"


def test_a_refresh_keeps_the_session_and_a_closed_page_loses_it(store):
    session = store.attach(None, client="page-1")
    (session.folder / "video-1.mp4").write_bytes(b"x")
    store.detach("page-1")  # refresh: the old page unloads...
    assert store.attach(session.id, client="page-2") is session  # ...and the new one finds the same session
    assert session.released_at is None
    assert store.reap(now=session.last_seen + store.unload_grace_s + 1) == []

    store.detach("page-2")  # the tab is closed
    assert store.reap(now=session.released_at + store.unload_grace_s / 2) == []
    assert store.reap(now=session.released_at + store.unload_grace_s + 1) == [session.id]
    assert not session.folder.exists() and store.get(session.id) is None
    assert session.stop.is_set() is False  # its folder, flag file included, is gone


def test_api_sessions_end_after_idling(store):
    session = store.ensure(None)  # gradio_client never sends an unload
    assert store.reap(now=session.last_seen + store.max_idle_s - 1) == []
    assert store.reap(now=session.last_seen + store.max_idle_s + 1) == [session.id]


def test_close_deletes_everything(tmp_path):
    store = SessionStore(tmp_path / "root")
    sessions = [store.ensure(None) for _ in range(3)]
    store.start_reaper(interval_s=3600)
    store.close()
    assert len(store) == 0 and not any(s.folder.exists() for s in sessions)


def test_stop_flag_is_a_picklable_file(tmp_path):
    flag = StopFlag(tmp_path / ".stop")
    assert not flag.is_set()
    copy = pickle.loads(pickle.dumps(flag))  # what a ZeroGPU worker gets
    flag.set()
    assert copy.is_set()
    copy.clear()
    assert not flag.is_set()


def test_a_store_removes_the_roots_that_killed_servers_left(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited: its pid names no running server
    host = socket.gethostname()
    stale, alive, foreign, unowned = (tmp_path / f"higen-studio-{name}" for name in ("a", "b", "c", "d"))
    for root, owner in ((stale, f"{dead_pid} {host}"), (alive, f"{os.getppid()} {host}"),
                        (foreign, f"{dead_pid} another-host"), (unowned, None)):
        (root / "0123456789abcdef").mkdir(parents=True)
        if owner:
            (root / OWNER_FILE).write_text(owner)

    store = SessionStore()
    assert store.root.parent == tmp_path and (store.root / OWNER_FILE).read_text().split()[0] == str(os.getpid())
    assert not stale.exists()
    assert alive.exists() and foreign.exists() and unowned.exists()  # running, or not known to be dead here
    store.ensure(None)
    store.close()
    assert not store.root.exists()  # a store removes the root it made when it closes


def test_a_given_root_is_left_in_place(tmp_path):
    store = SessionStore(tmp_path / "kept")
    store.ensure(None)
    store.close()
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
