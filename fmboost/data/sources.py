"""Where models come from, for every command alike: an embedded model's name, a model folder, the hub's cache, or
the hub. No torch here, so a command can find out what it will load before paying for the import.

- `resolve_model`: `default` / `real` → the embedded model's folder (unless a local folder has that name).
- `resolve_autoencoder`: the same names, or any model folder → its autoencoder; other names pass unchanged.
- `hub_kwargs`: what to pass to a diffusers / huggingface_hub `from_pretrained` so that, offline, the cache answers
  at once instead of thirty seconds of retries; `HubUnreachable` is the one-line failure when it cannot.
"""
from __future__ import annotations

import functools
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from fmboost.data.model_config import CONFIG_FILE, ModelConfig, is_model_folder
from fmboost.errors import MissingError

# Models shipped inside the package, selectable by name (`--model real`). Both are ×2 on one small
# AutoencoderKL: `default` trained on clean bicubic downsamples (recipes/default), `real` fine-tuned from it on
# Real-ESRGAN degradations (recipes/real).
EMBEDDED_MODELS = {name: Path(__file__).parents[1] / "weights" / name for name in ("default", "real")}
DEFAULT_MODEL = EMBEDDED_MODELS["default"]
MODEL_CONFIG = CONFIG_FILE  # marks a model folder (FMBoostPipeline.save_pretrained)
HUB_TIMEOUT_S = 1.5  # how long the hub gets to accept a connection before it counts as unreachable


class HubUnreachable(MissingError):
    """`name` is not a local folder nor in the hub's cache, and the hub cannot give it. The message names no
    command-line flag; `for_flag` words it for the command that took the name."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = str(name), reason
        super().__init__(f"{self.name}: {self.reason}; {self.hint('its folder')}")

    def hint(self, where: str) -> str:
        """The download command of huggingface-hub's `hf` (it replaced `huggingface-cli`), for the repository: a
        subfolder id (owner/name/vae) is then DIR/vae."""
        sub = "/".join(self.name.split("/")[2:])
        repo = "/".join(self.name.split("/")[:2])
        return (f"download it where there is a connection (`hf download {repo} --local-dir DIR`) "
                f"and pass {where}{'/' + sub if sub else ''}")

    def for_flag(self, flag: str) -> str:
        return f"{flag} {self.name}: {self.reason}; {self.hint(f'{flag} DIR')}"


def resolve_model(name: str | os.PathLike) -> str:
    """An embedded model's name (`default`, `real`) means its folder, unless a local folder has that name."""
    name = str(name)
    return str(EMBEDDED_MODELS[name]) if name in EMBEDDED_MODELS and not Path(name).exists() else name


def read_model_config(name: str | os.PathLike) -> ModelConfig | None:
    """A local model folder's settings (data/model_config.py); None for anything else (an autoencoder folder, a
    hub id). Callers that already hold the folder read `ModelConfig.read(folder)` instead."""
    folder = resolve_model(name)
    return ModelConfig.read(folder) if is_model_folder(folder) else None


def resolve_autoencoder(name: str | os.PathLike) -> str:
    """`default` / `real` or any model folder → the autoencoder it upscales with (its `autoencoder/`, or the hub id
    its fmboost.json names); an AutoencoderKL folder or a hub id (with an optional subfolder) passes unchanged."""
    config = read_model_config(name)
    if config is None:
        return str(name)
    local = Path(resolve_model(name)) / config.autoencoder
    return str(local) if local.is_dir() else config.autoencoder


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` (optionally `/subfolder...`), not a path written as one."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)+", name) is not None and not name.startswith((".", "/"))


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the hub (or the HTTPS proxy in front of it) does not accept a connection
    within HUB_TIMEOUT_S: then only the cache can answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("HF_ENDPOINT") \
        or "https://huggingface.co"
    url = urlparse(url if "://" in url else f"http://{url}")
    return not reachable(url.hostname or "", url.port or (443 if url.scheme == "https" else 80))


@functools.lru_cache(maxsize=None)
def reachable(host: str, port: int, timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether host:port accepts a TCP connection within `timeout` seconds, name lookup included (which has no
    timeout of its own, hence the thread). Asked once per process."""
    answer = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="fmboost-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer)


def hub_kwargs() -> dict:
    """Keyword arguments for `from_pretrained` / `snapshot_download` of a hub id: offline, read the cache only."""
    return {"local_files_only": True} if hub_offline() else {}


def check_fetchable(name: str | os.PathLike) -> None:
    """Raises HubUnreachable at once for a hub id that is neither in the cache nor fetchable now (offline), so a
    command fails before it imports torch and diffusers (seconds); local paths and embedded names pass, and so does
    any id while the hub can be reached (the download itself says what is wrong)."""
    name = str(name)  # `default`, `real` are not hub ids: they pass as local names do
    if Path(name).exists() or not looks_like_hub_id(name) or not hub_offline():
        return
    from huggingface_hub import snapshot_download

    try:
        snapshot_download("/".join(name.split("/")[:2]), local_files_only=True)  # owner/name: a subfolder's repo
    except Exception as e:  # LocalEntryNotFoundError: not cached
        raise not_fetched(name, e) from None


def not_fetched(name: str | os.PathLike, error: Exception) -> HubUnreachable:
    """The one-line failure for a hub id that could not be loaded (offline, unknown, gated)."""
    if hub_offline():
        reason = "not a local folder nor in the hub cache, and the hub cannot be reached (offline)"
    else:
        reason = f"not a local folder, and the hub would not give it ({type(error).__name__}: unknown or gated?)"
    return HubUnreachable(name, reason)
