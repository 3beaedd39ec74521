"""Issue 18, the Hub side: what a user sees when the network misbehaves, and how fast zoo starts.

- A Hub that accepts connections and never answers (a real socket server on loopback) costs at
  most ``ZOO_HUB_TIMEOUT`` seconds; then the cached snapshot or the bundled copy is used, and one
  line on stderr says so.
- ``zoo publish`` without a Hub, against a Hub that refuses uploads (HTTP 405) or one that never
  answers: one sentence saying what to do, no traceback, nothing uploaded.
- Offline, the card's own example ``zoo.load("zoo-denoise/...")`` works (it is the registered
  model); when nothing can be had, the message says what was tried and what to do, complete.
- ``--model /nonexistent/folder`` is "no such folder"; an unknown architecture offers only
  architectures that can be built.
- ``zoo list``, ``zoo --help`` and ``zoo info`` import neither torch nor lightning (start-up time is
  measured by benchmarks/startup.py, not here).

Every subprocess gets an explicit environment: huggingface_hub reads HF_* once, at import.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
WIENER_CARD = PROJECT / "hub_cards" / "wiener"
ZOO = [sys.executable, "-m", "zoo.cli"]  # the installed `zoo` script runs zoo.cli:main, as this does


# ---- real servers on loopback --------------------------------------------------------------------


class SilentServer:
    """Accepts every connection and never sends a byte: a Hub behind a dead proxy or a hung mirror."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                continue
            self.connections.append(connection)  # kept open, never answered

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self.connections:
            connection.close()
        self.sock.close()


class RefusingHub:
    """An HTTP server that answers every request with 405 Method Not Allowed (a read-only mirror)."""

    def __init__(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self):
                server.requests.append(f"{self.command} {self.path}")
                body = b'{"error": "Method Not Allowed"}'
                self.send_response(405)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _refuse

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.http.server_address[1]}"
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


def closed_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture
def refusing():
    server = RefusingHub()
    yield server
    server.stop()


def env_for(tmp_path: Path, endpoint: str, *, offline: bool = False, timeout: float | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("HF_", "HUGGINGFACE_", "ZOO_HUB")) or k.lower().endswith("_proxy"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(tmp_path / "hub_cache"),
               HF_HUB_OFFLINE="1" if offline else "0", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               # what the user tried; they must not matter either way
               HF_HUB_ETAG_TIMEOUT="1", HF_HUB_DOWNLOAD_TIMEOUT="1", PYTHONPATH=str(PROJECT))
    if timeout is not None:
        env["ZOO_HUB_TIMEOUT"] = str(timeout)
    return env


def run(args: list[str], env: dict, cwd: Path, limit: float = 90) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    try:
        done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=limit,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{' '.join(map(str, args))} still waiting after {limit:.0f} s "
                    f"(stderr so far: {(expired.stderr or b'')[-2000:]!r})")
    return done, time.monotonic() - start


def fake_cached_snapshot(cache: Path, smoothing: float) -> str:
    """A Hugging Face cache entry for zoo-denoise/wiener laid out as huggingface_hub writes it
    (refs/main -> snapshots/SHA/ with links into blobs/), holding hub_cards/wiener with another smoothing."""
    commit = "c0ffee" + "0" * 34
    repo = cache / "models--zoo-denoise--wiener"
    snapshot, blobs = repo / "snapshots" / commit, repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    config = json.loads((WIENER_CARD / "config.json").read_text())
    config["init_args"]["smoothing"] = smoothing
    files = {"config.json": (json.dumps(config, indent=2) + "\n").encode(),
             "model.safetensors": (WIENER_CARD / "model.safetensors").read_bytes()}
    for index, (name, data) in enumerate(files.items()):
        (blobs / f"blob{index}").write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / f"blob{index}")
    return commit


LOAD = ("import sys, zoo\n"
        "model = zoo.load(sys.argv[1])\n"
        "print('SOURCE', model.zoo_source)\n"
        "print('SMOOTHING', model.hparams['smoothing'])\n")


# ---- item 2: no command waits on the network longer than ZOO_HUB_TIMEOUT ------------------------


def test_silent_hub_costs_at_most_the_timeout_then_the_bundled_copy(silent, tmp_path):
    """Old code: `zoo info wiener` printed nothing for minutes (huggingface_hub waits forever)."""
    done, elapsed = run([*ZOO, "info", "wiener"], env_for(tmp_path, silent.endpoint, timeout=2), tmp_path)
    assert done.returncode == 0, done.stderr
    assert silent.connections, "the client never connected to the silent Hub: the test proves nothing"
    assert elapsed < 2 + 15, f"waited {elapsed:.1f} s for a Hub that never answers (ZOO_HUB_TIMEOUT=2)"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert lines[0].startswith("model wiener: bundled copy hub_cards/wiener"), lines[0]
    assert f"the Hub at {silent.endpoint} did not answer within 2 s (ZOO_HUB_TIMEOUT)" in lines[0]
    assert "# wiener" in done.stdout  # the card itself is shown


def test_silent_hub_uses_the_cached_snapshot_first(silent, tmp_path):
    env = env_for(tmp_path, silent.endpoint, timeout=1.5)
    commit = fake_cached_snapshot(Path(env["HF_HUB_CACHE"]), smoothing=0.9)
    done, elapsed = run([sys.executable, "-c", LOAD, "wiener"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"SOURCE Hugging Face Hub zoo-denoise/wiener@{commit[:12]} from the cache" in done.stdout
    assert "did not answer within 1.5 s" in done.stdout
    assert "SMOOTHING 0.9" in done.stdout  # the cached revision, not the bundled 0.98


def test_hub_timeout_must_be_a_positive_number(monkeypatch):
    from zoo.hub import DEFAULT_HUB_TIMEOUT, ModelLoadError, hub_timeout

    monkeypatch.delenv("ZOO_HUB_TIMEOUT", raising=False)
    assert hub_timeout() == DEFAULT_HUB_TIMEOUT == 10.0
    monkeypatch.setenv("ZOO_HUB_TIMEOUT", "2.5")
    assert hub_timeout() == 2.5
    for bad in ("ten", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("ZOO_HUB_TIMEOUT", bad)
        with pytest.raises(ModelLoadError, match="ZOO_HUB_TIMEOUT=.* is not a positive number of seconds"):
            hub_timeout()


# ---- item 3: zoo publish, one line --------------------------------------------------------------


def _publishable(tmp_path: Path) -> Path:
    folder = tmp_path / "wiener-card"
    folder.mkdir()
    for item in WIENER_CARD.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copyfile(item, folder / item.name)
    if not (folder / "README.md").exists():
        (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# wiener\n")
    return folder


def test_publish_to_a_hub_that_refuses_uploads_is_one_line(refusing, tmp_path):
    """Old code: a raw HfHubHTTPError 405 traceback."""
    folder = _publishable(tmp_path)
    env = {**env_for(tmp_path, refusing.endpoint, timeout=5), "HF_TOKEN": "hf_not_a_real_token"}
    done, _ = run([*ZOO, "publish", str(folder), "--repo-id", "someone/wiener"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"zoo: error: the Hub at {refusing.endpoint} refused to publish someone/wiener "
                               "(HTTP 405 Method Not Allowed)"), lines[0]
    assert "does not accept uploads" in lines[0] and "HF_ENDPOINT" in lines[0] and "nothing was uploaded" in lines[0]
    assert any(request.startswith("POST ") for request in refusing.requests), refusing.requests


def test_publish_without_a_hub_says_what_to_do(tmp_path):
    """Old code: a 72-line traceback ending in httpx2.ConnectError."""
    from huggingface_hub import HfApi

    import zoo
    from zoo.hub import PublishError

    endpoint = closed_endpoint()
    with pytest.raises(PublishError) as caught:
        zoo.publish(_publishable(tmp_path), "someone/wiener", api=HfApi(endpoint=endpoint, token="hf_x"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot publish someone/wiener: the Hub at {endpoint} could not be reached"), message
    assert "check the network and HF_ENDPOINT (nothing was uploaded)" in message


def test_publish_to_a_silent_hub_gives_up_after_the_timeout(silent, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    import zoo
    from zoo.hub import PublishError

    folder = _publishable(tmp_path)
    zoo.hub.load_folder(folder)  # torch imported before the clock starts
    monkeypatch.setenv("ZOO_HUB_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(PublishError, match=r"did not answer within 1 s \(ZOO_HUB_TIMEOUT\).*nothing was uploaded"):
        zoo.publish(folder, "someone/wiener", api=HfApi(endpoint=silent.endpoint, token="hf_x"))
    assert time.monotonic() - start < 10
    assert silent.connections


# ---- item 5: offline messages, folders, architectures ------------------------------------------


def test_the_cards_own_repo_id_example_works_offline(tmp_path):
    """`zoo.load("zoo-denoise/NAME")` (every card's example) is the registered model: offline it is
    the bundled copy, not "neither a registered model ... unknown model" (old code)."""
    env = env_for(tmp_path, closed_endpoint(), offline=True)
    done, _ = run([sys.executable, "-c", LOAD, "zoo-denoise/wiener"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("SOURCE bundled copy hub_cards/wiener (Hub not used: HF_HUB_OFFLINE is set, and the Hugging Face "
            "cache holds no copy)") in done.stdout


def test_offline_without_a_bundled_copy_says_what_was_tried_and_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants

    import zoo
    from zoo import registry
    from zoo.hub import ModelNotAvailableError
    from zoo.models.wiener import WienerFilter

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    card = tmp_path / "card"  # a card folder whose weights are not there (converted weights, never committed)
    card.mkdir()
    config = json.loads((WIENER_CARD / "config.json").read_text())
    config["converted_from"] = {"release": "someone's release"}
    (card / "config.json").write_text(json.dumps(config))
    registry.register("test-no-weights", card=str(card), hub_repo="test-org/no-weights")(WienerFilter)
    try:
        for asked in ("test-no-weights", "test-org/no-weights"):
            with pytest.raises(ModelNotAvailableError) as caught:
                zoo.load(asked)
            message = str(caught.value)
            assert message.startswith(f"model '{asked}' is not available here: the Hub gave nothing (HF_HUB_OFFLINE "
                                      "is set, and the Hugging Face cache holds no copy)"), message
            assert f"its bundled copy {card} has no model.safetensors" in message
            assert "Tried: the Hub repository test-org/no-weights, the Hugging Face cache" in message
            assert "unset HF_HUB_OFFLINE" in message and "zoo convert" in message
            assert "unknown model" not in message and "neither" not in message  # no self-contradiction
            assert message.endswith("`make weights`"), message  # complete, not cut at 200 characters
    finally:
        registry._REGISTRY.pop("test-no-weights", None)


def test_unregistered_repo_id_offline_is_one_coherent_message(monkeypatch, tmp_path):
    import huggingface_hub.constants

    import zoo
    from zoo.hub import ModelNotAvailableError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotAvailableError) as caught:
        zoo.load("someone/elsewhere")
    message = str(caught.value)
    assert message.startswith("'someone/elsewhere' is not a folder here, and as a Hub repository id it could not "
                              "be fetched: HF_HUB_OFFLINE is set, and the Hugging Face cache holds no copy."), message
    assert "To use it, unset HF_HUB_OFFLINE to download it" in message
    assert "unknown model" not in message


@pytest.mark.parametrize("spec", ["/nonexistent/folder", "./no/such/card", "~/no-such-zoo-card/x"])
def test_missing_folder_is_no_such_folder(spec):
    import zoo
    from zoo.hub import ModelLoadError

    with pytest.raises(ModelLoadError) as caught:
        zoo.load(spec)
    assert "no such folder" in str(caught.value)
    assert "unknown model" not in str(caught.value)


def test_unknown_architecture_offers_only_buildable_ones(tmp_path):
    import zoo
    from zoo.hub import ModelLoadError

    folder = tmp_path / "odd"
    shutil.copytree(WIENER_CARD, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "TransformerDenoiserXL"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as caught:
        zoo.load(str(folder))
    offered = re.search(r"it builds: ([^)]*)\)", str(caught.value))
    assert offered, str(caught.value)
    names = offered.group(1).split(", ")
    assert {"WienerFilter", "ContextAggregationDenoiser", "FeatureLossCAN"} <= set(names)
    assert "CANDenoiserBase" not in names and "DenoiserModule" not in names
    from zoo.hub import buildable_architectures

    for name in names:  # every one offered really can be built from init arguments
        assert "__init__" in vars(buildable_architectures()[name]), name


# ---- item 7: list, help and info start without torch -------------------------------------------

IMPORTS = ("import runpy, sys\n"
           "sys.argv = ['zoo', *sys.argv[1:]]\n"
           "from zoo.cli import main\n"
           "try:\n"
           "    code = main(sys.argv[1:])\n"
           "except SystemExit as exit:\n"
           "    code = exit.code\n"
           "heavy = sorted(m for m in ('torch', 'lightning', 'torchaudio', 'numpy', 'scipy', 'matplotlib')"
           " if m in sys.modules)\n"
           "print('HEAVY', ','.join(heavy) or '-', file=sys.stderr)\n"
           "sys.exit(code)\n")


@pytest.mark.parametrize("argv", [["list"], ["--help"], ["info", "wiener"], ["info", "feature-loss-can"]])
def test_light_commands_import_no_torch(argv, tmp_path):
    """Old code: every command imported torch + lightning first (9-15 s, 930 MB)."""
    env = env_for(tmp_path, closed_endpoint(), offline=True)
    done, _ = run([sys.executable, "-c", IMPORTS, *argv], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "HEAVY -" in done.stderr.splitlines(), done.stderr
    if argv == ["list"]:
        assert "feature-loss-can" in done.stdout and "wiener" in done.stdout


def test_models_listed_without_import_are_the_registered_ones():
    """`zoo list` reads the @register decorators from the source; importing the models must agree."""
    code = ("import sys\n"
            "from zoo.registry import entries\n"
            "static = [(e.name, e.target, e.card, e.hub_repo, e.summary, e.paper, e.trained_on) for e in entries()]\n"
            "assert 'torch' not in sys.modules\n"
            "import zoo.models\n"
            "real = [(e.name, f'{e.target.__module__}:{e.target.__qualname__}', e.card, e.hub_repo, e.summary, "
            "e.paper, e.trained_on) for e in entries()]\n"
            "assert static == real, (static, real)\n"
            "print(len(real))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) >= 5


def test_published_width_claims_match_the_card_config():
    """`zoo list`, `zoo info` and the card say the width of the weights they ship ("W=64" for
    feature-loss-can, which was once listed as "published at W=32")."""
    from zoo.registry import entries

    checked = []
    for entry in entries():
        config_path = entry.card_path / "config.json"
        if not config_path.is_file():
            continue
        width = json.loads(config_path.read_text())["init_args"].get("width")
        claims = [int(w) for w in re.findall(r"published at W=(\d+)", entry.summary)]
        claims += [int(w) for w in re.findall(r"\(W=(\d+),", entry.summary)]
        claims += [int(w) for w in re.findall(r"widened to W=(\d+)", entry.summary)]
        if width is None:
            assert not claims, entry.name
            continue
        assert all(claim == width for claim in claims), f"{entry.name}: summary {claims} vs config width {width}"
        checked += [entry.name] if claims else []
        card = entry.card_path / "README.md"
        if claims and card.is_file():  # the card repeats the summary, width included
            assert entry.summary.rstrip(".") in card.read_text(), f"{entry.name}: card and registry disagree"
    assert {"feature-loss-can", "can-l1", "can-l2"} <= set(checked), checked
