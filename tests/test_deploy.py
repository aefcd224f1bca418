"""The deployment files: docker-compose.yml, deploy/{docker,config,k8s,hpc}.

There is no container engine or Kubernetes here, so the files are checked by
parsing them and by holding every command they run against the installed CLIs:
each `dask scheduler` / `dask worker` / `cgflow run` flag must be one the
command accepts. One test starts the compose file's scheduler and worker
commands (and the Kubernetes worker command) for real, on 127.0.0.1.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest
import yaml
from dask.utils import parse_bytes, parse_timedelta

from .conftest import _wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
DASK_CONFIG_DIR = DEPLOY / "config"
K8S = DEPLOY / "k8s"
HPC = DEPLOY / "hpc"
SLURM_SCRIPT = HPC / "slurm_cluster.py"

#: Where the image keeps the repository's workflows (the client's working directory).
IMAGE_SRC = "/src"
#: Where every container mounts the shared volume holding the stores.
DATA = "/data"

#: jobqueue.slurm keys of dask-jobqueue 0.9 (used when dask-jobqueue is not installed).
SLURM_KEYS = {
    "name", "cores", "memory", "processes", "python", "interface", "death-timeout",
    "local-directory", "shared-temp-directory", "extra", "worker-command", "worker-extra-args",
    "shebang", "queue", "account", "walltime", "env-extra", "job-script-prologue", "job-cpu",
    "job-mem", "job-extra", "job-extra-directives", "job-directives-skip", "log-directory",
    "scheduler-options",
}


# --------------------------------------------------------------------------- helpers

_COMPOSE_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default}, applied to every string in ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, str):
        return _COMPOSE_VAR.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)
    return value


@functools.cache
def compose() -> dict:
    """docker-compose.yml with every variable at its default (the environment is ignored)."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env={})


def argv(command) -> list[str]:
    return [str(a) for a in command] if isinstance(command, list) else shlex.split(command)


def long_flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--") and a != "--"]


def option(args: list[str], flag: str) -> str | None:
    """The value given to ``flag`` in ``args`` (``--flag value`` or ``--flag=value``)."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def with_options(args: list[str], **overrides: str) -> list[str]:
    """``args`` with each ``--flag value`` replaced (or appended); keys use _ for -."""
    args = list(args)
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        for i, a in enumerate(args):
            if a == flag:
                args[i + 1] = value
                break
            if a.startswith(flag + "="):
                args[i] = f"{flag}={value}"
                break
        else:
            args += [flag, value]
    return args


def flag_in_help(flag: str, help_text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


@functools.cache
def yaml_documents(path: Path) -> tuple:
    return tuple(d for d in yaml.safe_load_all(path.read_text()) if d is not None)


def k8s_manifests() -> dict[str, list[dict]]:
    return {p.name: list(yaml_documents(p)) for p in sorted(K8S.glob("*.yaml"))}


def k8s_doc(filename: str) -> dict:
    docs = yaml_documents(K8S / filename)
    assert len(docs) == 1, f"{filename}: expected one document"
    return docs[0]


def pod_specs(node, path: str = ""):
    """Every pod spec (a mapping with a list of containers) in a manifest, with its location."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from pod_specs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from pod_specs(value, f"{path}[{i}]")


def containers(pod_spec: dict) -> list[dict]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])


def container_argv(container: dict) -> list[str]:
    return argv(list(container.get("command", [])) + list(container.get("args", [])))


def all_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command run by docker-compose.yml and deploy/k8s."""
    found = [(f"docker-compose.yml: services.{name}", argv(svc["command"]))
             for name, svc in compose()["services"].items()]
    for filename, docs in k8s_manifests().items():
        for doc in docs:
            for where, spec in pod_specs(doc):
                for c in containers(spec):
                    found.append((f"deploy/k8s/{filename}: {where} container {c['name']}", container_argv(c)))
    return found


def commands_of(executable: str, subcommand: str | None = None) -> list[tuple[str, list[str]]]:
    return [(w, a) for w, a in all_commands()
            if a[0] == executable and (subcommand is None or a[1] == subcommand)]


@functools.cache
def dask_help(subcommand: str) -> str:
    proc = subprocess.run([str(BIN / "dask"), subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cgflow_cli() -> list[str]:
    """The `cgflow` console script of this environment; fails (not skips) if the CLI is missing."""
    try:
        spec = importlib.util.find_spec("cgflow.cli")
    except ImportError:
        spec = None
    if spec is None:
        pytest.fail(
            "the cgflow CLI (module cgflow.cli) cannot be imported in this environment, so the "
            "cgflow commands of docker-compose.yml and deploy/k8s cannot be checked: install "
            "cgflow (pip install -e .) once its CLI exists"
        )
    exe = shutil.which("cgflow", path=str(BIN))
    return [exe] if exe else [sys.executable, "-m", "cgflow.cli"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        instruction, _, rest = full.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return out


def dockerfile_copies() -> list[tuple[list[str], str]]:
    copies = []
    for instruction, rest in dockerfile_instructions():
        if instruction in ("COPY", "ADD"):
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            copies.append((parts[:-1], parts[-1]))
    return copies


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- every file parses

def deploy_yaml_files() -> list[Path]:
    return [COMPOSE_FILE] + sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.mark.parametrize("path", deploy_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    docs = yaml_documents(path)
    assert docs, f"{path}: no YAML document"
    assert all(isinstance(d, dict) for d in docs)


def test_expected_files_exist():
    for rel in ["docker-compose.yml", "deploy/docker/Dockerfile", "deploy/docker/Dockerfile.dockerignore",
                "deploy/config/distributed.yaml", "deploy/k8s/daskcluster.yaml", "deploy/k8s/daskjob.yaml",
                "deploy/k8s/pvc.yaml", "deploy/k8s/run-job.yaml", "deploy/k8s/README.md", "deploy/hpc/jobqueue.yaml",
                "deploy/hpc/slurm_cluster.py", "deploy/hpc/README.md"]:
        assert (ROOT / rel).is_file(), rel


# --------------------------------------------------------------------------- docker-compose.yml

def test_compose_services_image_and_volume():
    c = compose()
    services = c["services"]
    assert {"scheduler", "worker", "client"} <= set(services)
    # One image for all, built once from deploy/docker/Dockerfile with the repository as context.
    images = {svc["image"] for svc in services.values()}
    assert len(images) == 1, images
    builders = [name for name, svc in services.items() if "build" in svc]
    assert len(builders) == 1, builders
    build = services[builders[0]]["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]) == DOCKERFILE
    # The store is written from every container: all mount the shared named volume at /data.
    assert "cgflow-data" in c["volumes"]
    for name, svc in services.items():
        assert f"cgflow-data:{DATA}" in svc["volumes"], name


def test_compose_scheduler_ports_and_healthcheck():
    sched = compose()["services"]["scheduler"]
    args = argv(sched["command"])
    assert args[:2] == ["dask", "scheduler"]
    assert option(args, "--port") == "8786"
    assert option(args, "--dashboard-address").rsplit(":", 1)[1] == "8787"
    published = {}
    for mapping in sched["ports"]:
        *host, container = str(mapping).split(":")
        published[int(container)] = host
    assert {8786, 8787} <= set(published)
    for port, host in published.items():
        # Published to the host's loopback only: a scheduler runs whatever clients send it.
        assert host and host[0] == "127.0.0.1", (port, host)
    test = sched["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python" and test[2] == "-c"
    compile(test[3], "healthcheck", "exec")
    assert "8787/health" in test[3]


def test_compose_worker_and_client():
    services = compose()["services"]
    worker = argv(services["worker"]["command"])
    assert worker[:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert option(worker, "--nthreads") == "1"
    assert option(worker, "--nworkers") == "1"
    assert parse_bytes(option(worker, "--memory-limit")) >= 2**30
    assert int(services["worker"]["deploy"]["replicas"]) >= 1
    assert services["worker"]["depends_on"]["scheduler"]["condition"] == "service_healthy"

    client = services["client"]
    args = argv(client["command"])
    assert args[:2] == ["cgflow", "run"]
    assert option(args, "--scheduler") == "tcp://scheduler:8786"
    assert option(args, "--store").startswith(DATA + "/")
    assert client["working_dir"] == IMAGE_SRC
    assert (ROOT / args[2]).is_file(), f"{args[2]}: the client's workflow is not in the repository"
    assert set(client["depends_on"]) >= {"scheduler", "worker"}
    assert client["depends_on"]["scheduler"]["condition"] == "service_healthy"


# --------------------------------------------------------------------------- commands and their flags

def test_commands_use_known_executables():
    for where, args in all_commands():
        assert args[0] in ("dask", "cgflow", "python"), f"{where}: {args}"
        if args[0] == "dask":
            assert args[1] in ("scheduler", "worker"), f"{where}: {args}"
            assert (BIN / "dask").is_file(), "dask is not installed next to this Python"
        elif args[0] == "python":
            assert args[1] == "-c", f"{where}: {args}"
            compile(args[2], where, "exec")
    assert commands_of("dask", "scheduler") and commands_of("dask", "worker") and commands_of("cgflow")


@pytest.mark.parametrize("subcommand", ["scheduler", "worker"])
def test_dask_flags_accepted(subcommand):
    help_text = dask_help(subcommand)
    commands = commands_of("dask", subcommand)
    assert commands
    for where, args in commands:
        for flag in long_flags(args):
            assert flag_in_help(flag, help_text), f"{where}: `dask {subcommand}` has no option {flag}"


def test_cgflow_flags_accepted():
    cli = cgflow_cli()
    proc = subprocess.run([*cli, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"`cgflow run --help` failed:\n{proc.stderr}"
    commands = commands_of("cgflow")
    assert commands
    for where, args in commands:
        assert args[1] == "run", f"{where}: {args}"
        for flag in long_flags(args):
            assert flag_in_help(flag, proc.stdout), f"{where}: `cgflow run` has no option {flag}"
    # And the whole command line parses (without running anything), where the CLI is click.
    import click

    from cgflow.cli import main

    if isinstance(main, click.Group) and "run" in main.commands:
        for where, args in commands:
            try:
                main.commands["run"].make_context("run", args[2:])
            except click.UsageError as exc:
                pytest.fail(f"{where}: {exc.format_message()}")


# --------------------------------------------------------------------------- Dockerfile

def test_dockerfile():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    by_kind: dict[str, list[str]] = {}
    for instruction, rest in instructions:
        by_kind.setdefault(instruction, []).append(rest)

    copies = dockerfile_copies()
    sources = {src.rstrip("/") for srcs, _ in copies for src in srcs}
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    assert {"pyproject.toml", "README.md", "cgflow", "workflows", "deploy/config/distributed.yaml"} <= sources
    assert any(dest.startswith("/etc/dask/") for srcs, dest in copies if "deploy/config/distributed.yaml" in srcs)
    assert any("pip install --no-cache-dir /src" in run for run in by_kind["RUN"])

    env = {}
    for rest in by_kind["ENV"]:
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    cache = env.get("NUMBA_CACHE_DIR")
    assert cache, "NUMBA_CACHE_DIR is not set"
    assert any(cache in run and "chown" in run for run in by_kind["RUN"]), "NUMBA_CACHE_DIR is not made writable"
    warmups = [run for run in by_kind["RUN"] if "cgflow.micro.zrp" in run]
    assert all("||" in run for run in warmups), "the numba warm-up must not be able to fail the build"

    assert by_kind["USER"][-1] not in ("root", "0")
    assert by_kind["WORKDIR"][-1] == DATA
    exposed = {p.split("/")[0] for rest in by_kind["EXPOSE"] for p in rest.split()}
    assert {"8786", "8787"} <= exposed


def test_dockerignore_keeps_what_the_dockerfile_copies():
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    kept = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for srcs, _ in dockerfile_copies():
        for src in srcs:
            assert src.rstrip("/") in kept, f"{src} is copied by the Dockerfile but excluded from the build context"


# --------------------------------------------------------------------------- Kubernetes

def test_k8s_kinds_and_images():
    manifests = k8s_manifests()
    kinds = {name: [(d["apiVersion"], d["kind"]) for d in docs] for name, docs in manifests.items()}
    assert kinds["daskcluster.yaml"] == [("kubernetes.dask.org/v1", "DaskCluster")]
    assert kinds["daskjob.yaml"] == [("kubernetes.dask.org/v1", "DaskJob")]
    assert kinds["pvc.yaml"] == [("v1", "PersistentVolumeClaim")]
    image = compose()["services"]["scheduler"]["image"]
    n = 0
    for name, docs in manifests.items():
        for doc in docs:
            for where, spec in pod_specs(doc):
                for c in containers(spec):
                    assert c["image"] == image, f"{name}: {where} {c['name']}: {c['image']} != compose's {image}"
                    n += 1
    assert n >= 6


def test_k8s_volume_and_workers():
    pvc = k8s_doc("pvc.yaml")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    claim = pvc["metadata"]["name"]
    for name, docs in k8s_manifests().items():
        for doc in docs:
            for where, spec in pod_specs(doc):
                args_by_container = {c["name"]: container_argv(c) for c in containers(spec)}
                is_worker = any(a[:2] == ["dask", "worker"] for a in args_by_container.values())
                is_client = any(a[:1] == ["cgflow"] for a in args_by_container.values())
                if not (is_worker or is_client):
                    continue
                # Workers and the client write the store: the shared claim, at /data.
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["mountPath"] == DATA]
                assert mounts, f"{name}: {where}: nothing mounted at {DATA}"
                for m in mounts:
                    assert volumes[m["name"]]["persistentVolumeClaim"]["claimName"] == claim, f"{name}: {where}"
                if is_worker:
                    args = args_by_container["worker"]
                    assert option(args, "--name") == "$(DASK_WORKER_NAME)"
                    assert option(args, "--nthreads") == "1"
                    # No scheduler address: the operator provides DASK_SCHEDULER_ADDRESS.
                    assert not [a for a in args[2:] if a.startswith("tcp://")]


def test_k8s_daskjob():
    job = k8s_doc("daskjob.yaml")
    name = job["metadata"]["name"]
    pod = job["spec"]["job"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (runner,) = pod["containers"]
    args = container_argv(runner)
    assert args[:2] == ["cgflow", "run"]
    # The operator's DASK_SCHEDULER_ADDRESS already reads tcp://<name>-scheduler...:8786.
    assert option(args, "--scheduler") == "$(DASK_SCHEDULER_ADDRESS)"
    assert option(args, "--store").startswith(DATA + "/")
    assert runner["workingDir"] == IMAGE_SRC and (ROOT / args[2]).is_file()
    (wait,) = pod["initContainers"]
    assert f'"tcp://{name}-scheduler:8786"' in container_argv(wait)[2]
    # The operator names the job's cluster after the job.
    service = job["spec"]["cluster"]["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == name
    assert {p["port"] for p in service["ports"]} == {8786, 8787}


def test_k8s_daskcluster_and_run_job():
    cluster = k8s_doc("daskcluster.yaml")
    name = cluster["metadata"]["name"]
    service = cluster["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == name
    assert service["type"] == "ClusterIP"
    assert {p["port"] for p in service["ports"]} == {8786, 8787}
    (sched,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert container_argv(sched)[:2] == ["dask", "scheduler"]

    job = k8s_doc("run-job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy
    (runner,) = pod["containers"]
    args = container_argv(runner)
    assert option(args, "--scheduler") == f"tcp://{name}-scheduler:8786"
    assert runner["workingDir"] == IMAGE_SRC and (ROOT / args[2]).is_file()
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["onExitCodes"]["containerName"] == runner["name"]


# --------------------------------------------------------------------------- Dask configuration

def _leaves(d: dict, prefix: str = ""):
    for key, value in d.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _leaves(value, path)
        else:
            yield path, value


def test_distributed_config_keys_exist():
    import distributed  # noqa: F401  (registers distributed's defaults)

    defaults = dask.config.merge(*dask.config.defaults)
    ours = dask.config.collect(paths=[str(DASK_CONFIG_DIR)], env={})
    assert ours.get("distributed")
    for path, value in _leaves(ours):
        parent = path.rsplit(".", 1)[0]
        if parent in ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"):
            continue  # free-form environment variables
        assert dask.config.get(path, default=KeyError, config=defaults) is not KeyError, f"unknown dask setting {path}"
    get = functools.partial(dask.config.get, config=ours)
    assert get("distributed.scheduler.allowed-failures") >= 1
    for key in ("distributed.scheduler.worker-ttl", "distributed.comm.timeouts.connect", "distributed.comm.timeouts.tcp"):
        assert parse_timedelta(get(key)) > 0
    assert 0 < get("distributed.worker.memory.pause") < get("distributed.worker.memory.terminate") <= 1


def test_jobqueue_config():
    collected = dask.config.collect(paths=[str(HPC / "jobqueue.yaml")], env={})
    config = dask.config.update(copy.deepcopy(dask.config.config), collected, priority="new")
    slurm = dask.config.get("jobqueue.slurm", config=config)
    assert {"cores", "memory", "processes", "walltime", "job-extra-directives", "local-directory", "interface"} <= set(slurm)
    try:
        import dask_jobqueue  # noqa: F401

        known = set(dask.config.get("jobqueue.slurm"))  # its defaults, registered on import
    except ImportError:
        known = SLURM_KEYS
    assert set(collected["jobqueue"]["slurm"]) <= known, set(collected["jobqueue"]["slurm"]) - known
    # One thread per worker process, and a sane amount of memory for each.
    assert slurm["cores"] == slurm["processes"] >= 1
    assert parse_bytes(slurm["memory"]) / slurm["processes"] >= 2**30
    # Workers retire (lifetime + stagger) before SLURM kills them at walltime.
    h, m, s = (int(x) for x in slurm["walltime"].split(":"))
    extra = slurm["worker-extra-args"]
    lifetime = parse_timedelta(option(extra, "--lifetime")) + parse_timedelta(option(extra, "--lifetime-stagger"))
    assert lifetime < 3600 * h + 60 * m + s
    for flag in long_flags(extra):
        assert flag_in_help(flag, dask_help("worker")), f"`dask worker` has no option {flag}"


# --------------------------------------------------------------------------- deploy/hpc/slurm_cluster.py

def test_slurm_script_cli():
    proc = subprocess.run([sys.executable, str(SLURM_SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--jobs" in proc.stdout and "--scheduler-file" in proc.stdout
    module = load_module(SLURM_SCRIPT, "slurm_cluster")
    f = Path("/shared/s.json")
    assert module.cgflow_command(["cgflow", "run", "w.yaml", "--store", "/x.zarr"], f) == [
        "cgflow", "run", "w.yaml", "--store", "/x.zarr", "--scheduler-file", str(f)]
    for chosen in (["--scheduler", "tcp://h:8786"], ["--scheduler-file=other.json"], ["--workers", "2"]):
        assert module.cgflow_command(["cgflow", "run", "w.yaml", *chosen], f) == ["cgflow", "run", "w.yaml", *chosen]
    assert module.cgflow_command(["python", "analyse.py"], f) == ["python", "analyse.py"]


def test_slurm_script_without_dask_jobqueue_explains():
    # Hide dask-jobqueue (a test dependency) as if it were not installed.
    hide = (
        "import runpy, sys; sys.modules['dask_jobqueue'] = None; "
        f"sys.argv = [{str(SLURM_SCRIPT)!r}, '--jobs', '1']; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "pip install dask-jobqueue" in proc.stderr


def test_slurm_job_script(tmp_path):
    import dask_jobqueue  # noqa: F401  (a test dependency: fail, don't skip, if it is missing)
    env = dict(
        os.environ,
        # Keep the scheduler that SLURMCluster starts on the loopback interface.
        DASK_JOBQUEUE__SLURM__INTERFACE="lo",
        DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS='{"dashboard_address": "127.0.0.1:0"}',
        DASK_JOBQUEUE__SLURM__LOG_DIRECTORY=str(tmp_path / "logs"),
    )
    proc = subprocess.run([sys.executable, str(SLURM_SCRIPT), "--print-job-script", "--queue", "short"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert "#SBATCH -p short" in script
    assert f"export DASK_CONFIG={DASK_CONFIG_DIR}" in script
    assert "--nthreads 1" in script and "--lifetime" in script


# --------------------------------------------------------------------------- the commands, for real

def _expand_k8s(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion in command/args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), a) for a in args]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: the nanny and its worker
        proc.wait()


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_compose_cluster_commands_run_on_loopback(tmp_path):
    """docker-compose.yml's scheduler and worker commands, and the k8s worker's, moved to 127.0.0.1."""
    services = compose()["services"]
    sched_file = tmp_path / "scheduler.json"
    # The flags of the compose file, with every listening address moved to loopback.
    scheduler_cmd = with_options(argv(services["scheduler"]["command"]), host="127.0.0.1", port="0",
                                 dashboard_address="127.0.0.1:0", scheduler_file=str(sched_file))
    assert not [a for a in scheduler_cmd if "0.0.0.0" in a]
    # The processes read deploy/config as the image's /etc/dask.
    env = dict(os.environ, DASK_CONFIG=str(DASK_CONFIG_DIR))
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []

    def start(args, name, extra_env=None):
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("w") as fh:
            procs.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=fh, stderr=subprocess.STDOUT,
                                          env={**env, **(extra_env or {})}, start_new_session=True))
        return procs[-1]

    try:
        start(scheduler_cmd, "scheduler")
        _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 60, "the scheduler file", procs)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")

        worker_cmd = argv(services["worker"]["command"])
        assert worker_cmd[2] == "tcp://scheduler:8786"
        worker_cmd = with_options([*worker_cmd[:2], address, *worker_cmd[3:]], host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", local_directory=str(tmp_path / "compose-worker"),
                                  name="compose-worker")
        start(worker_cmd, "compose-worker")

        # The operator's worker: no address on the command line, DASK_SCHEDULER_ADDRESS in the environment.
        (k8s_worker,) = k8s_doc("daskcluster.yaml")["spec"]["worker"]["spec"]["containers"]
        k8s_env = {"DASK_SCHEDULER_ADDRESS": address, "DASK_WORKER_NAME": "cgflow-default-worker-test"}
        k8s_cmd = with_options(_expand_k8s(container_argv(k8s_worker), k8s_env), host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", local_directory=str(tmp_path / "k8s-worker"))
        start(k8s_cmd, "k8s-worker", k8s_env)

        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            info = client.scheduler_info()["workers"]
            by_name = {w["name"]: w for w in info.values()}
            assert set(by_name) == {"compose-worker", "cgflow-default-worker-test"}, by_name.keys()
            assert all(w["nthreads"] == 1 for w in info.values())
            assert all(addr.startswith("tcp://127.0.0.1:") for addr in info)
            assert by_name["compose-worker"]["memory_limit"] == parse_bytes(option(worker_cmd, "--memory-limit"))
            assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
            # deploy/config/distributed.yaml took effect on both sides.
            ours = dask.config.collect(paths=[str(DASK_CONFIG_DIR)], env={})["distributed"]
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == \
                ours["scheduler"]["allowed-failures"]
            assert set(client.run(lambda: os.environ.get("NUMBA_NUM_THREADS")).values()) == {"1"}
            assert set(client.run(lambda: dask.config.get("distributed.worker.memory.spill")).values()) == {False}
    finally:
        for p in reversed(procs):
            _stop(p)
        for log in logs:  # shown by pytest if the test failed
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")
