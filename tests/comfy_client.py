"""Test helper: run a real ComfyUI host over HTTP and talk to it.

``ComfyHost`` builds the host (``scripts/comfy_host.py``), starts ``ComfyUI/main.py`` on a
free port with a per-run base directory whose ``custom_nodes/m3unet_pack`` links the repo,
and offers small wrappers around ``/object_info``, ``/prompt``, ``/history`` and
``/interrupt``. ``ui_to_api`` converts UI-format workflows (what users drag into ComfyUI)
into the API format that ``/prompt`` accepts.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

PACK_LINK_NAME = "m3unet_pack"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Frontend-only node types: never sent to the server.
VIRTUAL_NODE_TYPES = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
# Input options that make the frontend add an extra upload widget (its value is only kept
# in widgets_values, never sent to the server). It is appended after the required inputs.
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
MODE_NEVER = 2  # muted
MODE_BYPASS = 4


class PromptRejected(Exception):
    """``POST /prompt`` answered 400; ``body`` is the decoded JSON (``error``, ``node_errors``)."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.node_errors: dict[str, Any] = body.get("node_errors", {}) if isinstance(body, dict) else {}
        self.error: dict[str, Any] = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"prompt rejected: {body}")


def load_host_builder(repo: Path):
    """Import ``scripts/comfy_host.py`` from ``repo`` by path and return the module."""
    path = Path(repo) / "scripts" / "comfy_host.py"
    spec = importlib.util.spec_from_file_location("m3unet_comfy_host_script", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ComfyHost:
    """A ComfyUI server subprocess plus a tiny HTTP client for it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._base_dir: Path | None = None
        self._log_path: Path | None = None
        self._log_file = None
        self.client_id = uuid.uuid4().hex
        self.session = requests.Session()
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, repo: Path, port: int | None = None, startup_timeout: float = 180.0,
              pack_target: Path | None = None, host_root: Path | None = None,
              web_frontend: bool = False) -> "ComfyHost":
        """Build the host if needed and start the server; wait until ``/object_info`` is 200.

        ``pack_target`` (default: ``repo``) is what ``custom_nodes/m3unet_pack`` links to.
        ``web_frontend``: serve the real web front end (the ``comfyui-frontend-package`` installed
        in the venv, the version ComfyUI's requirements name) instead of an empty folder; raises
        ``RuntimeError`` when that package is not installed.
        Raises ``RuntimeError`` with the log tail if the server does not come up.
        """
        repo = Path(repo).resolve()
        builder = load_host_builder(repo)
        comfy = builder.build(Path(host_root) if host_root else repo / ".host")
        frontend = comfy.parent / "frontend"
        frontend.mkdir(parents=True, exist_ok=True)
        if web_frontend and importlib.util.find_spec("comfyui_frontend_package") is None:
            raise RuntimeError("the web front end needs comfyui-frontend-package in the venv "
                               "(scripts/setup.sh installs it from requirements-dev.txt)")

        base = Path(tempfile.mkdtemp(prefix="m3unet-comfy-")).resolve()
        for sub in ("custom_nodes", "input", "output", "models"):
            (base / sub).mkdir()
        os.symlink(Path(pack_target or repo).resolve(), base / "custom_nodes" / PACK_LINK_NAME,
                   target_is_directory=True)
        self._base_dir = base
        self._log_path = base / "comfyui.log"
        env = dict(os.environ, M3UNET_TEST_HOST="1", PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
        deadline = t0 + startup_timeout
        attempts = 1 if port else 3  # an auto-picked port may be taken meanwhile: retry
        for attempt in range(attempts):
            self.port = port or free_port()
            cmd = [sys.executable, str(comfy / "main.py"), "--cpu", "--listen", "127.0.0.1",
                   "--port", str(self.port), "--disable-auto-launch",
                   "--base-directory", str(base), "--disable-api-nodes",
                   "--database-url", "sqlite:///:memory:"]
            if not web_frontend:  # ComfyUI exits without a front end: serve an empty folder
                cmd += ["--front-end-root", str(frontend)]
            self._log_file = open(self._log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=str(base), env=env, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                ready = self._wait_ready(deadline)
            except BaseException:
                self.stop()
                raise
            if ready:
                break
            code = self.proc.returncode if self.proc is not None else None
            self.stop()
            if code is None:
                raise RuntimeError(f"ComfyUI did not answer /object_info within "
                                   f"{startup_timeout:.0f} s; log tail:\n{self.log_tail()}")
            if attempt + 1 < attempts and "address already in use" in self.log_tail(5):
                continue
            raise RuntimeError(f"ComfyUI exited with code {code} during start-up; "
                               f"log tail:\n{self.log_tail()}")
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> bool:
        """Poll ``/object_info`` until 200 (True) or the process exits / deadline (False)."""
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = self.session.get(self.url + "/object_info", timeout=5)
                if r.status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.5)
        return False

    def stop(self, remove_base_dir: bool = False) -> None:
        """Terminate the server (kill after 10 s); optionally delete the base directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if remove_base_dir and self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)

    # ------------------------------------------------------------------ properties
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8188``."""
        if self.port is None:
            raise RuntimeError("host not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_dir(self) -> Path:
        """Per-run base directory (custom_nodes/, input/, output/, models/, the log)."""
        if self._base_dir is None:
            raise RuntimeError("host not started")
        return self._base_dir

    @property
    def input_dir(self) -> Path:
        """``base_dir/input``: put files for LoadImage here."""
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        """``base_dir/output``: SaveImage writes here."""
        return self.base_dir / "output"

    def log_text(self) -> str:
        """Whole server log so far (stdout and stderr)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        return self._log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        """Last ``lines`` lines of the server log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ------------------------------------------------------------------ HTTP API
    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info`` (or ``/object_info/<node_class>``)."""
        path = "/object_info" + (f"/{node_class}" if node_class else "")
        r = self.session.get(self.url + path, timeout=60)
        r.raise_for_status()
        return r.json()

    def queue(self, prompt_api: dict[str, Any], partial_execution_targets: list[str] | None = None) -> str:
        """``POST /prompt``; return the prompt_id. Raises ``PromptRejected`` on HTTP 400.

        ``partial_execution_targets``: run (and validate) only these output nodes, as the
        frontend's "queue selected output nodes" does.
        """
        body: dict[str, Any] = {"prompt": prompt_api, "client_id": self.client_id}
        if partial_execution_targets is not None:
            body["partial_execution_targets"] = list(partial_execution_targets)
        r = self.session.post(self.url + "/prompt", json=body, timeout=60)
        if r.status_code == 400:
            try:
                body = r.json()
            except ValueError:
                body = {"error": {"message": r.text}, "node_errors": {}}
            raise PromptRejected(body)
        r.raise_for_status()
        return r.json()["prompt_id"]

    def delete_queued(self, prompt_id: str) -> None:
        """``POST /queue {"delete": [id]}``: drop a prompt that has not started yet."""
        self.session.post(self.url + "/queue", json={"delete": [prompt_id]}, timeout=30).raise_for_status()

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """History entry of ``prompt_id`` or None while it has not finished."""
        r = self.session.get(f"{self.url}/history/{prompt_id}", timeout=30)
        r.raise_for_status()
        return r.json().get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 600, poll: float = 0.1) -> dict[str, Any]:
        """Poll ``/history/<id>`` until status_str is success or error; return the entry."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") in ("success", "error") or status.get("completed"):
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}; "
                                   f"log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout} s")
            time.sleep(poll)
            poll = min(poll * 1.5, 1.0)

    def run(self, prompt_api: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """Queue ``prompt_api`` and wait for its history entry."""
        return self.wait(self.queue(prompt_api), timeout=timeout)

    def interrupt(self) -> None:
        """``POST /interrupt``: stop the running prompt."""
        self.session.post(self.url + "/interrupt", timeout=30).raise_for_status()

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """``POST /free``: unload models / drop the execution cache."""
        self.session.post(self.url + "/free", json={"unload_models": unload_models,
                                                    "free_memory": free_memory},
                          timeout=30).raise_for_status()

    # ------------------------------------------------------------------ results
    def output_images(self, history_entry: dict[str, Any], kind: str = "output") -> list[Path]:
        """Paths of images listed under ``outputs.*.images`` with ``type == kind``."""
        root = self.base_dir / kind
        paths: list[Path] = []
        for node_out in (history_entry.get("outputs") or {}).values():
            for img in node_out.get("images", []) or []:
                if not isinstance(img, dict) or img.get("type", "output") != kind:
                    continue
                paths.append(root / (img.get("subfolder") or "") / img["filename"])
        return paths

    @staticmethod
    def status_messages(history_entry: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The ``(event, data)`` pairs recorded in ``status.messages``."""
        msgs = (history_entry.get("status") or {}).get("messages") or []
        return [(m[0], m[1]) for m in msgs if isinstance(m, (list, tuple)) and len(m) == 2]

    @classmethod
    def execution_error(cls, history_entry: dict[str, Any]) -> dict[str, Any] | None:
        """The ``execution_error`` message (node_id, exception_message, traceback...) or None."""
        for event, data in cls.status_messages(history_entry):
            if event == "execution_error":
                return data
        return None

    @classmethod
    def was_interrupted(cls, history_entry: dict[str, Any]) -> bool:
        """True if the prompt ended with ``execution_interrupted``."""
        return any(e == "execution_interrupted" for e, _ in cls.status_messages(history_entry))

    def __enter__(self) -> "ComfyHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- UI -> API
def _input_spec_type(spec: Any) -> Any:
    return spec[0] if isinstance(spec, (list, tuple)) and spec else spec


def _input_spec_options(spec: Any) -> dict[str, Any]:
    if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def is_widget_input(name: str, spec: Any) -> bool:
    """True if the frontend shows input ``spec`` as a widget (choice list or primitive type)."""
    typ = _input_spec_type(spec)
    opts = _input_spec_options(spec)
    if opts.get("forceInput") or opts.get("rawLink"):
        return False
    return isinstance(typ, list) or typ in WIDGET_TYPES


def _extra_values_after(name: str, spec: Any) -> int:
    """How many frontend-only values follow this widget in widgets_values."""
    typ = _input_spec_type(spec)
    opts = _input_spec_options(spec)
    control = opts.get("control_after_generate")
    if control is None and typ == "INT":
        control = name in ("seed", "noise_seed")  # legacy frontend rule
    if not control:
        return 0
    if isinstance(typ, list) or typ == "COMBO":
        return 2  # control_after_generate + control_filter_list
    return 1


def widget_layout(node_def: dict[str, Any]) -> list[str | None]:
    """Names matching the positions of list-form ``widgets_values`` (None = skip the value)."""
    inputs = node_def.get("input") or {}
    order = node_def.get("input_order") or {}
    layout: list[str | None] = []
    upload_extra = 0
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        names = list(order.get(section) or specs.keys())
        names += [n for n in specs if n not in names]
        for name in names:
            spec = specs.get(name)
            if spec is None or not is_widget_input(name, spec):
                continue
            layout.append(name)
            layout.extend([None] * _extra_values_after(name, spec))
            if any(_input_spec_options(spec).get(k) for k in UPLOAD_OPTIONS):
                upload_extra = 1
        if section == "required":
            layout.extend([None] * upload_extra)  # the frontend's "upload" widget
    return layout


def _links_by_id(workflow: dict[str, Any]) -> dict[int, tuple[Any, int, Any, int, Any]]:
    out: dict[int, tuple[Any, int, Any, int, Any]] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            out[int(link["id"])] = (link["origin_id"], int(link["origin_slot"]),
                                    link["target_id"], int(link["target_slot"]), link.get("type"))
        else:
            out[int(link[0])] = (link[1], int(link[2]), link[3], int(link[4]),
                                 link[5] if len(link) > 5 else None)
    return out


def ui_to_api(workflow_ui: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """Convert a UI-format workflow into the API format accepted by ``POST /prompt``.

    Widget values are matched to inputs with ``widget_layout`` (order from /object_info);
    a widget that was converted to a linked input takes the link. Muted nodes (mode 2) and
    frontend-only nodes (Note, Reroute, PrimitiveNode) are dropped; links through Reroute
    and bypassed (mode 4) nodes are followed as the frontend does.
    """
    if (workflow_ui.get("definitions") or {}).get("subgraphs"):
        raise NotImplementedError("workflows with subgraphs are not supported")
    nodes = {n["id"]: n for n in workflow_ui.get("nodes") or []}
    links = _links_by_id(workflow_ui)

    def node_inputs(node: dict[str, Any]) -> list[dict[str, Any]]:
        return node.get("inputs") or []

    def resolve(link_id: int | None, want_type: Any) -> tuple[Any, int] | None:
        """Follow a link to the real producing node (through Reroute / bypassed nodes)."""
        seen = 0
        while link_id is not None and seen < 1000:
            seen += 1
            link = links.get(int(link_id))
            if link is None:
                return None
            origin_id, origin_slot = link[0], link[1]
            origin = nodes.get(origin_id)
            if origin is None:
                return None
            otype = origin.get("type")
            mode = origin.get("mode", 0)
            if otype == "Reroute":
                ins = node_inputs(origin)
                link_id = ins[0].get("link") if ins else None
                continue
            if otype == "PrimitiveNode":
                return None  # its value is already in the target's widgets_values
            if mode == MODE_NEVER or otype in VIRTUAL_NODE_TYPES:
                return None
            if mode == MODE_BYPASS:
                outs = origin.get("outputs") or []
                out_type = outs[origin_slot].get("type") if origin_slot < len(outs) else want_type
                ins = node_inputs(origin)
                pick = None
                if origin_slot < len(ins) and ins[origin_slot].get("type") == out_type \
                        and ins[origin_slot].get("link") is not None:
                    pick = ins[origin_slot]
                else:
                    for inp in ins:
                        if inp.get("type") == out_type and inp.get("link") is not None:
                            pick = inp
                            break
                if pick is None:
                    return None
                link_id = pick.get("link")
                continue
            return origin_id, origin_slot
        return None

    api: dict[str, Any] = {}
    for node_id, node in nodes.items():
        ntype = node.get("type")
        mode = node.get("mode", 0)
        if ntype in VIRTUAL_NODE_TYPES or mode in (MODE_NEVER, MODE_BYPASS):
            continue
        if ntype not in object_info:
            raise KeyError(f"node {node_id}: type {ntype!r} is not in object_info "
                           f"(pack not loaded?)")
        node_def = object_info[ntype]
        inputs: dict[str, Any] = {}

        values = node.get("widgets_values")
        if isinstance(values, dict):
            all_specs = {**(node_def.get("input") or {}).get("optional", {}),
                         **(node_def.get("input") or {}).get("required", {})}
            for name, value in values.items():
                if name in all_specs and is_widget_input(name, all_specs[name]):
                    inputs[name] = value
        elif isinstance(values, list):
            for name, value in zip(widget_layout(node_def), values):
                if name is not None:
                    inputs[name] = value

        for inp in node_inputs(node):
            name = inp.get("name")
            link_id = inp.get("link")
            if link_id is None:
                continue
            src = resolve(link_id, inp.get("type"))
            if src is None:
                continue  # muted / primitive source: keep the widget value, if any
            inputs[name] = [str(src[0]), int(src[1])]

        api[str(node_id)] = {"class_type": ntype, "inputs": inputs}
    return api


# ---------------------------------------------------------------------- the web front end in Chromium
# Hooks installed before any page script runs: console.error, uncaught errors and rejected promises
# are kept in window.__m3unet.errors; the front end's events in window.__m3unet.events. The banner
# that advertises the new node renderer is dismissed (it only moves the layout around).
PAGE_HOOKS = """
window.__m3unet = {errors: [], events: []};
try { localStorage.setItem('vueNodesBannerDismissed', 'true'); } catch (e) {}
(() => {
  const keep = (kind, parts) => {
    try {
      window.__m3unet.errors.push(kind + ': ' + parts.map(p => (p && p.stack) ? String(p.stack)
        : (typeof p === 'object' ? JSON.stringify(p) : String(p))).join(' '));
    } catch (e) { window.__m3unet.errors.push(kind + ': (unprintable)'); }
  };
  const original = console.error.bind(console);
  console.error = (...args) => { keep('console.error', args); original(...args); };
  window.addEventListener('error', e => keep('uncaught', [e.error || e.message]));
  window.addEventListener('unhandledrejection', e => keep('unhandled rejection', [e.reason]));
})();
"""
# Messages of the front end and the offline test host that have nothing to do with the pack (each
# is only ignored when it does not name the pack): the registry look-ups of api.comfy.org that the
# host's content security policy blocks offline, the optional user stylesheet, the favicon, the
# core template index (the comfyui-workflow-templates package is not installed in the test host),
# the user's not yet created workflow and subgraph folders, and a setting the front end stores at
# start without having registered it (TypeError in onChange ... at load).
KNOWN_NOISE = (
    r"https://api\.comfy\.org/",
    r"/api/userdata/user\.css|/user\.css - Failed to load resource",
    r"/favicon\.ico - Failed to load resource",
    r"/templates/index\.json|Error loading core workflow templates",
    r"/api/userdata\?dir=(workflows|subgraphs)",
    r"/api/userdata/comfy\.templates\.json",
    r"TypeError: Cannot read properties of undefined \(reading 'id'\)\s+at onChange",
)
FRONT_END_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}


def find_browser() -> tuple[str, str]:
    """Paths of Chromium and its WebDriver (``M3UNET_CHROMIUM`` / ``M3UNET_CHROMEDRIVER`` or PATH).

    Raises ``RuntimeError`` naming how to install them (Debian: ``apt-get install chromium
    chromium-driver``, done by scripts/setup.sh)."""
    chromium = os.environ.get("M3UNET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("M3UNET_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        raise RuntimeError(f"Chromium ({chromium or 'missing'}) and chromedriver ({driver or 'missing'}) are needed "
                           "for the browser tests: apt-get install chromium chromium-driver (scripts/setup.sh)")
    return chromium, driver


# The front end asks the registry (api.comfy.org) which pack each custom node comes from; the test
# host's content security policy blocks that offline. Those messages name the node, so they are
# ignored whatever they name.
REGISTRY_LOOKUP = r"Connecting to 'https://api\.comfy\.org/[^']*' violates the following Content Security Policy"


def is_noise(message: str, pack_names: tuple[str, ...]) -> bool:
    """True for a known message of the front end or the test host that does not name the pack."""
    import re
    if re.search(REGISTRY_LOOKUP, message):
        return True
    if any(name.lower() in message.lower() for name in pack_names):
        return False
    return any(re.search(pattern, message) for pattern in KNOWN_NOISE)


class ComfyBrowser:
    """ComfyUI's web front end in headless Chromium (Selenium): what a user does, as calls.

    ``window.app`` is the front end's ComfyApp. Files are given to it the way a drop does (a
    ``drop`` event with the file on the document), Run is the Run button, and everything the page
    logs as an error is collected (``errors``)."""

    FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1600,1000", "--force-device-scale-factor=1")

    def __init__(self, host: ComfyHost, pack_names: tuple[str, ...] = ("m3unet",)) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.host = host
        self.pack_names = pack_names
        chromium, driver = find_browser()
        self._profile = tempfile.mkdtemp(prefix="m3unet-chromium-")
        options = webdriver.ChromeOptions()
        for flag in self.FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.binary_location = chromium
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.driver.set_script_timeout(120)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAGE_HOOKS})
        self.startup_errors: list[str] = []

    # ------------------------------------------------------------------ page
    def open(self, timeout: float = 120) -> list[str]:
        """Load the front end and wait until the app is ready; returns what it logged while starting."""
        r = self.host.session.post(self.host.url + "/api/settings", json=FRONT_END_SETTINGS, timeout=30)
        r.raise_for_status()
        self.driver.get(self.host.url)
        self.wait_ready(timeout)
        self.startup_errors = self.take_errors(include_noise=True)
        return self.startup_errors

    def reload(self, timeout: float = 120) -> list[str]:
        """Reload the page (what a user's F5 does) and wait until the app is ready again."""
        self.driver.refresh()
        self.wait_ready(timeout)
        return self.take_errors()

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_for("!!(window.app && window.app.vueAppReady && window.app.graph && window.app.canvas)",
                      timeout, "the front end did not start")
        time.sleep(1.5)  # extensions, templates and the restored workflow settle after vueAppReady

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_for(self, expression: str, timeout: float, what: str, *args: Any) -> Any:
        """Poll a JavaScript expression (``return`` is added) until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(f"return ({expression});", *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} (after {timeout:.0f} s)")
            time.sleep(0.2)

    def take_errors(self, include_noise: bool = False) -> list[str]:
        """Errors logged since the last call: console errors, uncaught errors, failed requests and
        blocked connections (known noise left out unless ``include_noise``)."""
        found = self.js("const e = window.__m3unet ? window.__m3unet.errors.splice(0) : []; return e;") or []
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE" and entry.get("source") != "console-api":
                found.append(f"{entry.get('source')}: {entry.get('message')}")
        return [m for m in found if include_noise or not is_noise(m, self.pack_names)]

    # ------------------------------------------------------------------ what a user does
    def drop_file(self, text: str, name: str, expect_nodes: int | None = None, timeout: float = 60) -> None:
        """Drop a file on the page (the front end's drop handler opens it as a workflow)."""
        before = self.js("return app.graph.nodes.length")
        self.js("""
            const dt = new DataTransfer();
            dt.items.add(new File([arguments[0]], arguments[1], {type: 'application/json'}));
            document.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        """, text, name)
        if expect_nodes is not None:
            self.wait_for("app.graph.nodes.length === arguments[0]", timeout, f"{name} did not load", expect_nodes)
        else:
            time.sleep(1)
        del before
        time.sleep(1.0)  # the missing-model check, the tab and the canvas settle after configure

    def serialize(self) -> dict[str, Any]:
        """``app.graph.serialize()``: the workflow as the front end saves it."""
        import json
        return json.loads(self.js("return JSON.stringify(app.graph.serialize())"))

    def click_run(self) -> None:
        """Press the Run button of the action bar."""
        from selenium.webdriver.common.by import By
        self.driver.find_element(By.CSS_SELECTOR, '[data-testid="queue-button"] button').click()

    def run(self, timeout: float = 900) -> tuple[str, str]:
        """Press Run and wait for the prompt's end; returns ``(prompt_id, "execution_success" | ...)``."""
        self.js("""
            window.__m3unet.events = [];
            if (!window.__m3unet.listening) {
              window.__m3unet.listening = true;
              for (const kind of ['execution_start', 'execution_success', 'execution_error',
                                  'execution_interrupted', 'executed'])
                app.api.addEventListener(kind, e => window.__m3unet.events.push(
                  [kind, (e.detail && e.detail.prompt_id) || null]));
            }""")
        self.click_run()
        prompt_id = self.wait_for("(window.__m3unet.events.find(e => e[0] === 'execution_start') || [])[1]",
                                  60, "Run did not start a prompt")
        end = self.wait_for(
            "(window.__m3unet.events.find(e => e[1] === arguments[0] && ['execution_success', 'execution_error',"
            " 'execution_interrupted'].includes(e[0])) || [])[0]", timeout, f"prompt {prompt_id} did not end",
            prompt_id)
        time.sleep(1.0)  # the images of the last executed nodes load
        return prompt_id, end

    def visible_overlays(self) -> list[str]:
        """Text of every visible dialog and toast message (a user would have to read or close them)."""
        return self.js("""
            const shown = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
            return [...document.querySelectorAll('.p-dialog, .p-toast-message, [role="dialog"], [role="alertdialog"]')]
              .filter(shown).map(el => (el.className + ': ' + el.innerText).slice(0, 500));""")

    def close_overlays(self) -> None:
        """Close visible dialogs with their close button (Escape as the fallback)."""
        from selenium.webdriver.common.keys import Keys
        self.js("""
            for (const b of document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close, '
                                                      + '.p-toast-close-button'))
              b.click();""")
        self.driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)
        time.sleep(0.5)

    def fit_view(self) -> None:
        """Zoom and pan so that the whole workflow is in view (the canvas' "fit view")."""
        self.js("if (app.graph.nodes.length) app.canvas.fitViewToSelectionAnimated({duration: 1});")
        time.sleep(0.5)

    def screenshot(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)
