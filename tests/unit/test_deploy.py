"""deploy/: env.example lists exactly the settings the code reads, and the Dockerfile, the
Compose file, the Kubernetes manifests and the systemd units parse, run real `flowmonkey`
commands with known settings, stop gracefully and run one beat. No Docker engine, cluster or
systemd is needed: the files are checked as the tools would read them."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from flowmonkey_celery.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PACKAGE = REPO / "flowmonkey_celery"
ENV_EXAMPLE = DEPLOY / "env.example"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "Dockerfile"

# A FLOWMONKEY_* name as written in code or docs (a bare prefix such as "FLOWMONKEY_*" is not).
SETTING_NAME = re.compile(r"FLOWMONKEY_[A-Z0-9_]*[A-Z0-9]")
# A name as a whole string literal: a key looked up in the environment.
QUOTED_SETTING_NAME = re.compile(r"""(?<=["'])(FLOWMONKEY_[A-Z0-9_]*[A-Z0-9])(?=["'])""")
# What env.example sets to something else than the default, for a production-like start.
PRODUCTION_VALUES = {"database_url", "broker_url", "home", "max_step_seconds"}
# Variables the manifests may set besides FLOWMONKEY_* settings.
OTHER_VARIABLES = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH"}


# --- The settings the code reads --------------------------------------------------------------


class _RecordingEnviron(Mapping[str, str]):
    """An empty environment that remembers every name it is asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _package_sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def settings_the_code_reads() -> frozenset[str]:
    """What `Settings.from_env` looks up, plus every FLOWMONKEY_* string literal (an
    `os.environ["FLOWMONKEY_X"]` or `getenv("FLOWMONKEY_X")` anywhere in the package)."""
    environ = _RecordingEnviron()
    Settings.from_env(environ)
    read = {name for name in environ.asked if SETTING_NAME.fullmatch(name)}
    for source in _package_sources().values():
        read.update(QUOTED_SETTING_NAME.findall(source))
    return frozenset(read)


def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile and Compose's env_file read them."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert match, f"{path.name}:{number} is not a KEY=VALUE line: {line!r}"
        assert match.group(1) not in values, f"{path.name}:{number} sets {match.group(1)} twice"
        values[match.group(1)] = match.group(2)
    return values


def test_env_example_lists_every_setting_the_code_reads() -> None:
    missing = sorted(settings_the_code_reads() - _read_env_file(ENV_EXAMPLE).keys())
    assert not missing, f"deploy/env.example has no line for {', '.join(missing)}: add each one"


def test_env_example_lists_only_settings_the_code_reads() -> None:
    unknown = sorted(_read_env_file(ENV_EXAMPLE).keys() - settings_the_code_reads())
    assert not unknown, f"deploy/env.example sets {', '.join(unknown)}, which no code reads"


def test_every_setting_the_package_names_is_one_it_reads() -> None:
    """A message or docstring naming a variable that nothing reads sends users astray."""
    named = {
        (name, path.relative_to(REPO).as_posix())
        for path, source in _package_sources().items()
        for name in SETTING_NAME.findall(source)
    }
    unread = sorted(
        f"{name} ({where})" for name, where in named if name not in settings_the_code_reads()
    )
    assert not unread, (
        f"named but never read (a typo, or read out of sight of Settings.from_env): {unread}"
    )


def test_env_example_comments_each_setting_and_states_the_defaults_truly() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.startswith("FLOWMONKEY_"):
            comment = lines[number - 1]
            assert comment.startswith("# ") and "Default:" in comment, (
                f"env.example: {line.split('=')[0]} needs a comment line above it, with its default"
            )
    example = Settings.from_env(_read_env_file(ENV_EXAMPLE))
    defaults = Settings()
    differ = {
        field
        for field in Settings.model_fields
        if getattr(example, field) != getattr(defaults, field)
    }
    assert differ == PRODUCTION_VALUES, (
        "env.example's values are the defaults except for a few production ones; these differ "
        f"unexpectedly: {sorted(differ ^ PRODUCTION_VALUES)}"
    )


# --- Real `flowmonkey` commands -----------------------------------------------------------------


def _celery_command(name: str) -> Any:
    from celery import Celery
    from celery.bin.base import CLIContext
    from celery.bin.beat import beat
    from celery.bin.worker import worker

    app = Celery("deploy-check", set_as_current=False)
    return {"worker": worker, "beat": beat}[name], CLIContext(app, True, None, quiet=True)


def check_cli(argv: list[str]) -> str:
    """The `flowmonkey` command argv runs ("db upgrade"), its options parsed as the CLI would
    (Celery's own for `worker` and `beat`) without running it.

    Raises:
        AssertionError: naming the command or option that does not exist.
    """
    from flowmonkey_celery.cli import main

    if argv in (["--help"], ["--version"]):
        return argv[0]
    command: Any = main
    path: list[str] = []
    args = list(argv)
    while hasattr(command, "commands"):  # a group: the next word names a command of it
        assert args, f"`flowmonkey {' '.join(path)}` needs a command: {sorted(command.commands)}"
        name = args.pop(0)
        assert name in command.commands, (
            f"`flowmonkey {' '.join([*path, name])}` is no command (there are "
            f"{sorted(command.commands)})"
        )
        path.append(name)
        command = command.commands[name]
    try:
        if path in (["worker"], ["beat"]):  # passed to Celery as they are: Celery must take them
            celery_command, obj = _celery_command(path[0])
            celery_command.make_context(path[0], args, obj=obj)
        else:
            command.make_context(path[-1], args)
    except Exception as exc:
        raise AssertionError(f"`flowmonkey {' '.join(argv)}`: {exc}") from None
    return " ".join(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["wrker"],
        ["db"],
        ["db", "upgrad"],
        ["api", "--prot", "8000"],
        ["worker", "--concurency", "4"],
    ],
)
def test_the_command_check_refuses_what_the_cli_would(argv: list[str]) -> None:
    with pytest.raises(AssertionError):
        check_cli(argv)


def _known_environment(where: str, environment: Mapping[str, Any]) -> Settings:
    """The settings an environment gives; every variable in it must be a known one."""
    unknown = sorted(
        name
        for name in environment
        if name not in settings_the_code_reads() and name not in OTHER_VARIABLES
    )
    assert not unknown, f"{where} sets {', '.join(unknown)}: not a setting the code reads"
    values = {name: str(value) for name, value in environment.items()}
    return Settings.from_env(values)


def _longest_step_seconds(where: str, settings: Settings) -> float:
    """The longest a step may take before its process is killed: the deployment's documented
    FLOWMONKEY_MAX_STEP_SECONDS, plus the grace before Celery's hard time limit."""
    assert settings.max_step_seconds, (
        f"{where} sets no FLOWMONKEY_MAX_STEP_SECONDS: the longest step its stop timeout covers"
    )
    return settings.max_step_seconds + settings.hard_limit_grace_seconds


def _seconds(duration: str | int) -> float:
    """`660`, `660s`, `11m`, `1m30s`, `11min`: Compose's and systemd's durations."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", str(duration))
    assert parts and all(unit in units for _, unit in parts), f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _module_and_folder_exist(where: str, settings: Settings) -> None:
    """FLOWMONKEY_HANDLERS modules importable; FLOWMONKEY_FLOWS, a path in the image's
    site-packages, is a folder of this repository (the package installs it)."""
    for module in settings.handlers:
        assert importlib.util.find_spec(module), (
            f"{where}: no module {module} (FLOWMONKEY_HANDLERS)"
        )
    if settings.flows is not None:
        site_packages = "/opt/flowmonkey/lib/python3.11/site-packages/"
        assert str(settings.flows).startswith(site_packages), f"{where}: flows at {settings.flows}"
        folder = REPO / str(settings.flows).removeprefix(site_packages)
        assert folder.is_dir(), f"{where}: FLOWMONKEY_FLOWS {settings.flows} is not in the package"


# --- Docker Compose -----------------------------------------------------------------------------


@cache
def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


def _compose_roles() -> dict[str, tuple[str, dict[str, Any]]]:
    """The flowmonkey services (built from deploy/Dockerfile) by the command they run."""
    roles: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, service in _compose()["services"].items():
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile":
            role = check_cli(service["command"])
            assert role not in roles, f"compose: {roles[role][0]} and {name} both run {role}"
            roles[role] = (name, service)
    return roles


def test_compose_runs_the_whole_stack_from_real_commands() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis"} <= services.keys()
    roles = _compose_roles()
    assert roles.keys() == {"db upgrade", "api", "worker", "beat"}
    for name, service in roles.values():  # built from the repository, with deploy/Dockerfile
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == REPO and context / service["build"]["dockerfile"] == DOCKERFILE, name
    assert roles["db upgrade"][1].get("restart") == "no", "the migration runs once, not forever"
    for role in ("api", "worker", "beat"):
        name, service = roles[role]
        assert service["depends_on"][roles["db upgrade"][0]] == {
            "condition": "service_completed_successfully"
        }, f"compose: {name} must start after the migration succeeded"
    for name, service in roles.values():
        _module_and_folder_exist(
            f"compose {name}", _known_environment(f"compose {name}", service["environment"])
        )


def _host_and_container_port(mapping: str) -> tuple[str, str]:
    """("5432", "5432") for Compose's "127.0.0.1:5432:5432" or "5432:5432"."""
    *_, host, container = str(mapping).split(":")
    return host, container


def test_compose_keeps_the_test_suite_services_on_their_standard_ports() -> None:
    services = _compose()["services"]
    published = {
        name: [_host_and_container_port(port) for port in services[name].get("ports", [])]
        for name in ("postgres", "redis", "rabbitmq")
    }
    assert published == {
        "postgres": [("5432", "5432")],
        "redis": [("6379", "6379")],
        "rabbitmq": [("5672", "5672")],
    }
    assert services["postgres"]["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def test_compose_api_is_healthy_only_when_ready_on_the_port_it_listens_on() -> None:
    _, api = _compose_roles()["api"]
    settings = _known_environment("compose api", api["environment"])
    command = api["command"]
    port = int(command[command.index("--port") + 1]) if "--port" in command else settings.api_port
    check = " ".join(api["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/ready" in check, (
        f"the api healthcheck must GET /ready on {port}: {check}"
    )
    assert [_host_and_container_port(p)[1] for p in api["ports"]] == [str(port)]


def test_compose_worker_outlasts_its_longest_step_and_runs_one_beat() -> None:
    roles = _compose_roles()
    worker_name, worker = roles["worker"]
    _, beat = roles["beat"]
    longest = _longest_step_seconds(
        "compose", _known_environment(worker_name, worker["environment"])
    )
    grace = _seconds(worker["stop_grace_period"])
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM", "SIGTERM is Celery's warm shutdown"
    assert grace > longest, (
        f"compose worker: stop_grace_period {grace} s <= longest step {longest} s"
    )
    assert grace > _seconds(beat.get("stop_grace_period", "10s"))
    assert beat["deploy"]["replicas"] == 1
    assert "scale" not in beat


# --- Kubernetes -------------------------------------------------------------------------------


@cache
def _manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict) and document.get("kind"), f"{path.name}: {document!r}"
            assert document.get("apiVersion") and document["metadata"].get("name"), path.name
            documents.append(document)
    return documents


def _one(kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in _manifests()
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"kubernetes: expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def _pod(kind: str, component: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one(kind, component)["spec"]["template"]["spec"]
    return spec


def _container(kind: str, component: str) -> dict[str, Any]:
    containers = _pod(kind, component)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _container_settings(kind: str, component: str) -> Settings:
    """The container's settings: what its envFrom sources and env entries set."""
    container = _container(kind, component)
    environment: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = _one("ConfigMap")
            assert source["configMapRef"]["name"] == config["metadata"]["name"]
            environment |= config["data"]
        else:
            secret = _one("Secret")
            assert source["secretRef"]["name"] == secret["metadata"]["name"]
            environment |= secret["stringData"]
    environment |= {item["name"]: item.get("value", "") for item in container.get("env", [])}
    return _known_environment(f"kubernetes {component}", environment)


COMPONENTS = [
    ("Job", "migrate", "db upgrade"),
    *(("Deployment", c, c) for c in ("worker", "beat", "api")),
]


def test_kubernetes_manifests_have_every_piece() -> None:
    kinds = sorted(document["kind"] for document in _manifests())
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "Deployment",
        "Job",
        "Secret",
        "Service",
    ]
    for config in (_one("ConfigMap")["data"], _one("Secret")["stringData"]):
        _known_environment("kubernetes config", config)


@pytest.mark.parametrize(("kind", "component", "command"), COMPONENTS)
def test_kubernetes_containers_run_real_commands_with_known_settings_and_requests(
    kind: str, component: str, command: str
) -> None:
    container = _container(kind, component)
    assert container.get("command") in (None, ["flowmonkey"]), (
        "the image's entrypoint runs flowmonkey"
    )
    assert check_cli(container["args"]) == command
    _module_and_folder_exist(f"kubernetes {component}", _container_settings(kind, component))
    settings = _container_settings(kind, component)
    if settings.metrics_port is not None:  # Prometheus scrapes the port the pod announces
        ports = [port["containerPort"] for port in container.get("ports", [])]
        annotations = _one(kind, component)["spec"]["template"]["metadata"]["annotations"]
        assert settings.metrics_port in ports, f"{component}: metrics port not a containerPort"
        assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    requests = container["resources"]["requests"]
    assert requests.get("cpu") and requests.get("memory"), f"{component}: cpu and memory requests"
    assert _pod(kind, component)["securityContext"]["runAsNonRoot"] is True
    if kind == "Deployment":
        deployment = _one(kind, component)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{component}: selector does not match its pods"
    else:
        assert _pod(kind, component)["restartPolicy"] in ("Never", "OnFailure")


def test_kubernetes_worker_outlasts_its_longest_step_and_beat_is_single() -> None:
    longest = _longest_step_seconds("kubernetes", _container_settings("Deployment", "worker"))
    worker_grace = _pod("Deployment", "worker")["terminationGracePeriodSeconds"]
    beat_grace = _pod("Deployment", "beat").get("terminationGracePeriodSeconds", 30)
    assert worker_grace > longest, f"worker grace {worker_grace} s <= longest step {longest} s"
    assert worker_grace > beat_grace
    beat = _one("Deployment", "beat")["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate", "a rolling update would run two beats"


def test_kubernetes_api_probes_and_service_reach_the_port_it_listens_on() -> None:
    container = _container("Deployment", "api")
    args = container["args"]
    settings = _container_settings("Deployment", "api")
    listens = int(args[args.index("--port") + 1]) if "--port" in args else settings.api_port
    ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container["ports"]}

    def resolved(port: str | int) -> int:
        return port if isinstance(port, int) else ports[port]

    readiness, liveness = (
        container["readinessProbe"]["httpGet"],
        container["livenessProbe"]["httpGet"],
    )
    assert readiness["path"] == "/ready" and liveness["path"] == "/health"
    assert resolved(readiness["port"]) == resolved(liveness["port"]) == listens
    assert listens in ports.values()
    service = _one("Service")["spec"]
    assert [resolved(p["targetPort"]) for p in service["ports"]] == [listens]
    pod_labels = _one("Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()


# --- systemd ----------------------------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"), source=name)
    return parser


UNITS = {
    "flowmonkey-migrate.service": "db upgrade",
    "flowmonkey-worker.service": "worker",
    "flowmonkey-beat.service": "beat",
    "flowmonkey-api.service": "api",
}


def test_systemd_has_a_unit_per_process_and_no_other() -> None:
    assert {p.name for p in SYSTEMD.glob("*.service")} == UNITS.keys()


@pytest.mark.parametrize(("name", "command"), UNITS.items())
def test_systemd_units_run_real_commands_with_the_environment_file(name: str, command: str) -> None:
    service = _unit(name)["Service"]
    binary, *argv = shlex.split(service["ExecStart"])
    assert binary.endswith("/flowmonkey"), f"{name}: ExecStart runs {binary}"
    assert check_cli(argv) == command
    assert service["EnvironmentFile"] == "/etc/flowmonkey/flowmonkey.env"
    variables = dict(item.split("=", 1) for item in shlex.split(service.get("Environment", "")))
    _known_environment(name, variables)
    if command == "db upgrade":
        assert service["Type"] == "oneshot"
        return
    unit = _unit(name)
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert "flowmonkey-migrate.service" in unit["Unit"]["Requires"].split()
    assert "flowmonkey-migrate.service" in unit["Unit"]["After"].split()
    for target in unit["Install"]["WantedBy"].split():
        assert (SYSTEMD / target).exists() or target == "multi-user.target", f"{name}: {target}"


def test_systemd_worker_stop_timeout_outlasts_the_longest_step_of_env_example() -> None:
    longest = _longest_step_seconds("env.example", Settings.from_env(_read_env_file(ENV_EXAMPLE)))
    worker = _seconds(_unit("flowmonkey-worker.service")["Service"]["TimeoutStopSec"])
    beat = _seconds(_unit("flowmonkey-beat.service")["Service"]["TimeoutStopSec"])
    assert worker > longest, f"worker TimeoutStopSec {worker} s <= longest step {longest} s"
    assert worker > beat


# --- Dockerfile -------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching rule wins;
    a rule matching a parent folder applies to what is inside it)."""
    ignored = False
    for rule in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        keep = rule.startswith("!")
        pattern = re.escape(rule.lstrip("!").strip("/"))
        pattern = pattern.replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.strip("/").split("/")
        if any(re.fullmatch(pattern, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not keep
    return ignored


def test_dockerfile_copies_files_that_exist_and_reach_the_build_context() -> None:
    copies = [args.split() for instruction, args in _instructions() if instruction == "COPY"]
    assert copies
    for *sources, _destination in copies:
        if sources[0].startswith("--from="):
            continue
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile: COPY {source}, which is not in the repo"
            assert not _dockerignored(source), (
                f"Dockerfile: COPY {source}, left out by .dockerignore"
            )
    for kept_out in (".venv", ".git", "tests", ".flowmonkey"):
        assert _dockerignored(kept_out), f".dockerignore lets {kept_out} into the build context"


def test_dockerfile_installs_the_lock_then_the_project_and_runs_the_cli_unprivileged() -> None:
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    arguments = {name: args for name, args in instructions}  # the last of each
    image_env = " ".join(a for n, a in instructions[last_from:] if n == "ENV")
    assert arguments["ARG"] == "PYTHON_IMAGE=python:3.11-slim"
    assert all(args.startswith("${PYTHON_IMAGE}") for name, args in instructions if name == "FROM")
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert "pip install --require-hashes --no-deps -r runtime.lock" in runs
    assert 'pip install --no-deps --no-build-isolation ".[api,otel]"' in runs
    extras = re.findall(r"--extra (\S+)", runs)
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert sorted(extras) == ["api", "otel"] and set(extras) <= optional.keys()
    assert arguments["USER"].split(":")[0] not in ("root", "0")
    entrypoint, cmd = json.loads(arguments["ENTRYPOINT"]), json.loads(arguments["CMD"])
    assert entrypoint == ["flowmonkey"]
    check_cli(cmd)
    settings = _known_environment("Dockerfile ENV", dict(re.findall(r"(\w+)=(\S+)", image_env)))
    assert settings.home == Path("/var/lib/flowmonkey")  # the folder it makes for the user
    assert arguments["EXPOSE"] == str(settings.api_port)


def _locked_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "locked_requirements", DEPLOY / "locked_requirements.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("locked_requirements", module)
    spec.loader.exec_module(module)
    return module


def _installed_closure(name: str, extras: frozenset[str]) -> dict[str, str]:
    """Every distribution an install of `name[extras]` needs here, with its installed version."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        if (canonicalize_name(current), wanted) in seen:
            continue
        seen.add((canonicalize_name(current), wanted))
        installed = distribution(current)
        found[canonicalize_name(current)] = installed.version
        for line in installed.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker is None or any(
                requirement.marker.evaluate(e) for e in environments
            ):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return found


def _image_selection() -> dict[str, list[str]]:
    """The --extra, --group and --package arguments the Dockerfile gives locked_requirements.py."""
    runs = " ".join(args for name, args in _instructions() if name == "RUN")
    command = re.search(r"locked_requirements\.py((?:\s+--\w+\s+\S+)*)", runs)
    assert command, "the Dockerfile does not select its packages with locked_requirements.py"
    chosen: dict[str, list[str]] = {"extra": [], "group": [], "package": []}
    for option, value in re.findall(r"--(\w+)\s+(\S+)", command.group(1)):
        chosen[option].append(value)
    return chosen


# The brokers the image serves go through kombu's Redis and SQLAlchemy (embedded) transports,
# which import what kombu's extras of those names declare (amqp is a base dependency).
KOMBU_TRANSPORTS = frozenset({"redis", "sqlalchemy"})


def test_image_takes_from_the_lock_what_the_project_needs_and_no_dev_tool() -> None:
    locked = _locked_requirements()
    lock = locked.parse_lock((REPO / "requirements.lock").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    chosen = _image_selection()
    assert sorted(chosen["extra"]) == ["api", "otel"]
    entries = locked.runtime_entries(
        lock, pyproject, chosen["extra"], chosen["group"], tuple(chosen["package"])
    )
    image = {locked.normalize(entry.name): entry for entry in entries}
    try:
        needed = _installed_closure("flowmonkey-celery", frozenset(chosen["extra"]))
        needed |= _installed_closure("kombu", KOMBU_TRANSPORTS)
    except PackageNotFoundError as exc:
        pytest.fail(f"the project is not installed with its dependencies here: {exc}")
    needed.pop("flowmonkey-celery")
    pins = {name: entry.lines[0].split("==")[1].split()[0] for name, entry in lock.items()}
    if any(pins.get(name) != version for name, version in needed.items()):
        pytest.skip("the installed versions are not the locked ones (./dev test --latest)")
    missing = sorted(needed.keys() - image.keys())
    assert not missing, f"the image would miss {missing}: add them (--package) or declare them"
    extra = {
        name
        for name, entry in image.items()
        if name not in needed and ";" not in entry.lines[0]  # a marker: another platform's
    }
    assert extra == {"setuptools"}, f"the image would install more than it needs: {sorted(extra)}"
    for dev_tool in ("pytest", "mypy", "ruff", "playwright"):
        assert dev_tool in lock and dev_tool not in image
