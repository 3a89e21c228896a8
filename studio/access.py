# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""Who may reach the studio, and which models it may load.

A studio reachable by others (a Space, a share link, a host other than loopback) registers no event that loads
models or, unless its operator opts in with a password, trains: what the page does not show, the API does not offer
either. Locally, "Load model" takes "tiny" and what the operator allows (`ModelSources`); its refusals say the same
whatever the path is, so that they tell nothing about the machine's files.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from . import StudioError

TINY = "tiny"
# owner/name, as the Hugging Face hub spells a model id.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# What `ModelSources.found` looks through: run folders (RUN/final, RUN/lora) sit two or three levels down.
FIND_DEPTH = 4
FIND_LIMIT = 100
# The file of a LoRA folder (as higen_core.lora writes it; the UI imports no torch, so it is not imported from there).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
REFUSED = ('The studio cannot load that. Give "tiny", or a pipeline folder (or VGen checkpoint file, or LoRA) inside '
           "the folders this studio allows (python app.py --allow-models).")


def is_loopback(host: str | None) -> bool:
    """Whether `host` (what the server listens on; None: Gradio's default, 127.0.0.1) is reachable from this machine
    only. "0.0.0.0", "::", a LAN address or a host name are not."""
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ModelSources:
    """What "Load model" may read: files and folders inside `folders` (symlinks followed), and the hub ids in
    `hub_ids` exactly as written."""

    folders: tuple[Path, ...] = ()
    hub_ids: frozenset[str] = frozenset()

    @classmethod
    def from_entries(cls, entries) -> ModelSources:
        """`app.py --allow-models` entries: an existing folder allows what is inside it; an owner/name that is not a
        folder here allows that hub model."""
        folders, hub_ids = [], set()
        for entry in entries:
            path = Path(entry).expanduser()
            if path.is_dir():
                folders.append(path.resolve())
            elif HUB_ID.fullmatch(entry):
                hub_ids.add(entry)
            else:
                raise StudioError(f"--allow-models {entry}: neither a folder nor a hub id (owner/name).")
        return cls(tuple(folders), frozenset(hub_ids))

    @classmethod
    def default(cls, model_source: str, cache_dir: Path) -> ModelSources:
        """The folder of the model the studio started with (when it is a folder) and the cache of converted
        checkpoints."""
        folders = []
        if model_source != TINY and Path(model_source).expanduser().is_dir():
            folders.append(Path(model_source).expanduser().resolve())
        # The cache may not exist yet: the first conversion makes it.
        folders.append(Path(cache_dir).expanduser().resolve())
        return cls(tuple(dict.fromkeys(folders)))

    def with_folders(self, *folders) -> ModelSources:
        """These sources and `folders` (e.g. the Train tab's workspace, whose runs the studio may then load)."""
        added = (Path(folder).expanduser().resolve() for folder in folders)
        return ModelSources(tuple(dict.fromkeys((*self.folders, *added))), self.hub_ids)

    def found(self, max_depth: int = FIND_DEPTH, limit: int = FIND_LIMIT) -> tuple[list[str], list[str]]:
        """(pipeline folders, LoRA folders) inside the allowed folders, each at most `max_depth` levels down and at
        most `limit` of each, sorted: what "Load model" and "Apply LoRA" offer to pick. Hidden folders are skipped, and
        so are links (one may lead outside, where loading would be refused)."""
        pipelines, loras = [], []

        def visit(folder: Path, depth: int) -> None:
            if (folder / "model_index.json").is_file():
                pipelines.append(str(folder))
                return  # a pipeline's own subfolders hold its parts, not other models
            if (folder / LORA_WEIGHT_NAME).is_file():
                loras.append(str(folder))
            if depth < max_depth:
                try:
                    children = sorted(p for p in folder.iterdir()
                                      if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
                except OSError:  # unreadable: nothing to offer from it
                    return
                for child in children:
                    visit(child, depth + 1)

        for folder in self.folders:
            if folder.is_dir():
                visit(folder, 0)
        return sorted(dict.fromkeys(pipelines))[:limit], sorted(dict.fromkeys(loras))[:limit]

    def pipeline(self, text: str) -> str:
        """A "Load model" source as the loader takes it: "tiny", an allowed hub id, or the resolved path of an
        existing folder inside the allowed ones."""
        if text == TINY or text in self.hub_ids:
            return text
        return str(self._inside(text, Path.is_dir))

    def checkpoint(self, text: str) -> Path:
        """A VGen checkpoint file inside the allowed folders. Only its path is checked here: nothing is read."""
        return self._inside(text, Path.is_file)

    def base(self, text: str) -> str:
        """The SD 2.x base of a conversion: an allowed hub id or an allowed folder."""
        return text if text in self.hub_ids else str(self._inside(text, Path.is_dir))

    def lora(self, text: str) -> str:
        """A LoRA: an allowed hub id, or a folder (DIR/lora) or file inside the allowed folders."""
        return text if text in self.hub_ids else str(self._inside(text, lambda p: p.is_dir() or p.is_file()))

    def _inside(self, text: str, kind) -> Path:
        # The same refusal for a path that does not exist, one of the wrong kind and one outside the allowed
        # folders: which of the three it was would tell what the machine holds.
        if not text or "\0" in text:
            raise StudioError(REFUSED)
        try:
            path = Path(text).expanduser().resolve()
            allowed = any(path.is_relative_to(folder) for folder in self.folders) and kind(path)
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long, ...
            allowed = False
        if not allowed:
            raise StudioError(REFUSED)
        return path


def parse_auth(pair: str | None, auth_file: str | None) -> list[tuple[str, str]] | None:
    """`--auth USER:PASSWORD` and the lines of `--auth-file` (USER:PASSWORD each; blank lines and # comments
    skipped) as Gradio's launch(auth=...) takes them; None when neither is given."""
    lines = [pair] if pair else []
    if auth_file:
        try:
            lines += Path(auth_file).read_text().splitlines()
        except OSError as e:
            raise StudioError(f"--auth-file {auth_file}: {e.strerror}.") from None
    credentials = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.strip().partition(":")
        if not sep or not user or not password:
            raise StudioError("Write credentials as USER:PASSWORD, both non-empty.")
        credentials.append((user, password))
    if (pair or auth_file) and not credentials:
        raise StudioError(f"--auth-file {auth_file} holds no USER:PASSWORD line.")
    return credentials or None
