"""A local, offline Hugging Face Hub for the tests: olah serving git repositories from loopback.

olah (https://github.com/vtuber-plan/olah) is a Hub mirror server. With ``offline = true`` it never
contacts huggingface.co, and with ``mirrors-path`` it serves *git repositories* laid out as
``<mirrors-path>/<repo_type>/<org>/<name>`` (``models/zoo-denoise/wiener``) through the ordinary Hub
HTTP API: ``/api/models/ORG/NAME/revision/REV`` (branches, tags and commit shas), file listings and
``/ORG/NAME/resolve/REV/FILE``. Pointing ``HF_ENDPOINT`` at it makes huggingface_hub download from
it exactly as it would from the real Hub. It has no upload endpoints (``POST /api/repos/create``
answers 405), so publishing is observed with a recording ``HfApi`` instead.

Nothing here touches the network beyond 127.0.0.1 or downloads anything.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OLAH = Path(__file__).resolve().parent.parent / ".venv-olah" / "bin" / "olah-cli"


def olah_executable() -> Path:
    """The olah CLI: ``$ZOO_OLAH`` (set by ``make test``) or the project's ``.venv-olah``."""
    return Path(os.environ.get("ZOO_OLAH") or DEFAULT_OLAH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_endpoint() -> str:
    """An http endpoint on loopback where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=zoo tests", "-c", "user.email=tests@zoo.invalid",
               "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main",
               "-C", str(repo), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def make_git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return path


def commit_all(repo: Path, message: str) -> str:
    """Commit every file in ``repo`` and return the full commit sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def copy_card(card: Path, destination: Path) -> None:
    """Copy the non-hidden files of a model card folder (config, weights, card, figures)."""
    destination.mkdir(parents=True, exist_ok=True)
    for item in sorted(card.iterdir()):
        if item.is_file() and not item.name.startswith("."):
            shutil.copyfile(item, destination / item.name)


@dataclass
class OlahServer:
    """One olah process serving ``mirrors`` on 127.0.0.1, offline (never contacts huggingface.co)."""

    executable: Path
    workdir: Path
    mirrors: Path
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    config_path: Path | None = None
    _log_handle: object = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        # Keys as olah.configs.OlahConfig.read_toml reads them ([basic] and [accessibility]).
        # mirror-netloc must be our port: olah writes it into the URLs it hands out.
        text = "\n".join([
            "[basic]",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            f'repos-path = "{self.workdir / "repos"}"',
            'mirror-scheme = "http"',
            f'mirror-netloc = "127.0.0.1:{self.port}"',
            f'mirror-lfs-netloc = "127.0.0.1:{self.port}"',
            f'mirrors-path = ["{self.mirrors}"]',
            "metadata-cache-ttl = 0",
            "",
            "[accessibility]",
            "offline = true",
            "",
        ])
        self.config_path = self.workdir / "olah.toml"
        self.config_path.write_text(text)
        return self.config_path

    def start(self, probe_path: str, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start olah and wait until ``probe_path`` answers 200 (the mirrored repo is served)."""
        last_error = ""
        for _ in range(attempts):
            self.port = free_port()
            self.write_config()
            self.log_path = self.workdir / f"olah-{self.port}.log"
            self._log_handle = open(self.log_path, "wb")
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
            self.process = subprocess.Popen(
                [str(self.executable), "--config", str(self.config_path),
                 "--log-path", str(self.workdir / "logs")],
                cwd=self.workdir, stdout=self._log_handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env)
            try:
                self._wait_ready(probe_path, timeout)
                return
            except RuntimeError as error:
                last_error = str(error)
                self.stop()
        raise RuntimeError(f"olah did not start after {attempts} attempts: {last_error}")

    def _wait_ready(self, probe_path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = self.endpoint + probe_path
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        status = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"olah exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
                    status = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                status = f"HTTP {error.code}"
            except OSError as error:
                status = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise RuntimeError(f"olah at {url} not ready after {timeout:.0f} s (last: {status}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_text(self) -> str:
        return "" if self.log_path is None or not self.log_path.exists() else self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # hand redirects back to the client unchanged
        return None


class FlakyProxy:
    """A loopback HTTP proxy in front of a Hub endpoint whose downloads of one file break off.

    Metadata (``/api/...``) and ``HEAD`` requests are forwarded untouched, so the client sees a healthy
    Hub; a ``GET`` whose path ends with ``broken_suffix`` announces the full length, sends a few bytes
    and closes the connection, as a dropped network connection does. Runs in a daemon thread.
    """

    def __init__(self, upstream: str, broken_suffix: str = "/model.safetensors"):
        import http.server
        import threading

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._forward("HEAD")

            def do_GET(self):
                if self.path.split("?")[0].endswith(broken_suffix):
                    proxy.broken_requests += 1
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"\x00" * 8)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._forward("GET")

            def _forward(self, method):
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                request = urllib.request.Request(upstream + self.path, method=method, headers=headers)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
                try:
                    response = opener.open(request, timeout=30)
                except urllib.error.HTTPError as error:
                    response = error
                body = response.read()
                self.send_response(response.status)
                for key, value in response.headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value.replace(upstream, proxy.endpoint))
                length = response.headers.get("Content-Length", "0") if method == "HEAD" else str(len(body))
                self.send_header("Content-Length", length)
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)

        self.broken_requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
