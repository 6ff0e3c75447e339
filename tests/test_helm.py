"""The Helm chart in helm/migrate-job, rendered by the real Helm engine and checked offline.

helm-python-sdk embeds Helm's Go SDK (render, schema validation, lint); kubernetes-validate checks
each rendered document, in strict mode, against the OpenAPI schemas of Kubernetes 1.29 (the
chart's kubeVersion floor) and of the newest version it bundles. No cluster and no helm binary.
The value sets under helm/migrate-job/ci/ are shared with scripts/helm-checkov.sh.
"""

from __future__ import annotations

import base64
import copy
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import kubernetes_validate
import pytest
import yaml

from migrator.cli import parse
from migrator.errors import ConfigError
from migrator.fleet.sharding import Shard
from migrator.settings import LOG_FORMATS, LOG_LEVELS, ON_ERROR, OPTIONS, load_settings

CHART_DIR = Path(__file__).resolve().parent.parent / "helm" / "migrate-job"
VALUE_SETS: dict[str, dict[str, Any]] = {
    path.name.removesuffix("-values.yaml"): yaml.safe_load(path.read_text())
    for path in sorted((CHART_DIR / "ci").glob("*-values.yaml"))
}
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
RELEASE = "shop"
NAMESPACE = "apps"
EXISTING = {"database": {"existingSecret": "app-database"}}
URL = "postgresql://app:Hunter2-Very-Secret@db.example.internal:5432/app"


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    loaded = helm_python.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge value layers, later ones winning (as helm -f a.yaml -f b.yaml does)."""

    def merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    result: dict[str, Any] = {}
    for layer in layers:
        merge(result, layer)
    return result


def render_files(
    chart: helm_python.Chart, values: dict[str, Any], **options: Any
) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, **options)


ONE_OFF = "templates/one-off.yaml"  # never installed with the release (README: One-off commands)


def render(
    chart: helm_python.Chart, values: dict[str, Any], *, one_off: bool = False, **options: Any
) -> list[dict[str, Any]]:
    """The release's documents; with `one_off`, the one-off Job's too."""
    docs: list[dict[str, Any]] = []
    for path, text in render_files(chart, values, **options).items():
        if not path.endswith("NOTES.txt") and (one_off or not path.endswith(ONE_OFF)):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def one_off_job(chart: helm_python.Chart, values: dict[str, Any]) -> dict[str, Any]:
    """What `helm template --show-only templates/one-off.yaml` prints."""
    files = render_files(chart, values)
    (text,) = [text for path, text in files.items() if path.endswith(ONE_OFF) and text.strip()]
    (job,) = [doc for doc in yaml.safe_load_all(text) if doc]
    return job


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(job: dict[str, Any]) -> dict[str, Any]:
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    return migrate


def env_of(ctr: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in ctr["env"]}


def job_name(chart: helm_python.Chart, values: dict[str, Any]) -> str:
    return only(render(chart, values), "Job")["metadata"]["name"]


# ---------------------------------------------------------------- every document is valid


def test_the_shared_value_sets_are_there() -> None:
    assert set(VALUE_SETS) >= {
        "default",
        "url-secret",
        "plain",
        "everything",
        "fleet",
        "fleet-query",
    }


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_document_validates_strictly(chart, value_set, kube_version) -> None:
    docs = render(chart, VALUE_SETS[value_set], one_off=True)
    assert any(doc["kind"] == "Job" for doc in docs)
    for doc in docs:
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_strict_validation_catches_a_misspelt_field(chart) -> None:
    job = only(render(chart, EXISTING), "Job")
    job["spec"]["backofLimit"] = job["spec"].pop("backoffLimit")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("kube_version", ["v1.29.0", f"v{KUBE_VERSIONS[-1]}"])
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict_reports_nothing(value_set, kube_version) -> None:
    report = helm_python.lint(
        CHART_DIR, VALUE_SETS[value_set], strict=True, kube_version=kube_version
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_metadata(chart) -> None:
    metadata = chart.metadata
    assert (metadata["apiVersion"], metadata["name"]) == ("v2", "migrate-job")
    assert (metadata["version"], metadata["appVersion"]) == ("0.1.0", "0.1.0")
    # helm install refuses older clusters (helm lint does not check this).
    assert metadata["kubeVersion"] == ">=1.29.0-0"


# ---------------------------------------------------------------- hook mode


def test_hook_mode_is_the_default_with_the_hook_annotations(chart) -> None:
    job = only(render(chart, EXISTING), "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-weight"] == "0"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["metadata"]["name"] == f"{RELEASE}-migrate-job"
    assert job["metadata"]["namespace"] == NAMESPACE
    # A finished hook Job is removed by Helm's delete policy; a failed one stays for debugging.
    assert "ttlSecondsAfterFinished" not in job["spec"]


def test_existing_secret_is_referenced_and_no_secret_is_made(chart) -> None:
    docs = render(chart, EXISTING)
    assert [doc["kind"] for doc in docs] == ["Job"]
    env = env_of(container(only(docs, "Job")))
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "app-database", "key": "url"}}


@pytest.mark.parametrize("weight", [0, 5, -3])
def test_chart_made_secret_is_a_hook_with_a_lower_weight(chart, weight) -> None:
    docs = render(chart, {"database": {"url": URL}, "hook": {"weight": weight}})
    job, secret = only(docs, "Job"), only(docs, "Secret")
    on_job, on_secret = job["metadata"]["annotations"], secret["metadata"]["annotations"]
    assert on_secret["helm.sh/hook"] == on_job["helm.sh/hook"]
    assert int(on_secret["helm.sh/hook-weight"]) < int(on_job["helm.sh/hook-weight"])
    assert int(on_job["helm.sh/hook-weight"]) == weight
    assert on_secret["helm.sh/hook-delete-policy"] == on_job["helm.sh/hook-delete-policy"]
    assert base64.b64decode(secret["data"]["url"]).decode() == URL
    ref = env_of(container(job))["DATABASE_URL"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "url"}


def test_argo_cd_hook_annotations_are_mirrored_onto_the_secret(chart) -> None:
    """Argo CD ignores all Helm hooks once any Argo CD hook is present: the Secret needs its own."""
    docs = render(
        chart,
        {
            "database": {"url": URL},
            "jobAnnotations": {
                "argocd.argoproj.io/hook": "PreSync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            },
        },
    )
    job, secret = only(docs, "Job"), only(docs, "Secret")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    annotations = secret["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert annotations["argocd.argoproj.io/sync-wave"] == "-1"


# ---------------------------------------------------------------- plain mode


def test_plain_mode_is_an_ordinary_job_with_a_hashed_name_and_a_ttl(chart) -> None:
    docs = render(chart, merged(EXISTING, {"useHelmHooks": False}))
    job = only(docs, "Job")
    assert re.fullmatch(rf"{RELEASE}-migrate-job-[0-9a-f]{{10}}", job["metadata"]["name"])
    assert not any(key.startswith("helm.sh/hook") for key in job["metadata"].get("annotations", {}))
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_plain_mode_secret_is_an_ordinary_resource_ordered_before_the_job_for_argo_cd(
    chart,
) -> None:
    docs = render(chart, VALUE_SETS["plain"])
    job, secret = only(docs, "Job"), only(docs, "Secret")
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert not any(key.startswith("helm.sh/") for key in secret["metadata"]["annotations"])
    job_wave = int(job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    assert int(secret["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < job_wave


PLAIN = merged(EXISTING, {"useHelmHooks": False})


def first_leaf(values: dict[str, Any]) -> str:
    key, value = next(iter(values.items()))
    return f"{key}.{first_leaf(value)}" if isinstance(value, dict) else key


@pytest.mark.parametrize(
    "change",
    [
        {"image": {"tag": "0.2.0"}},
        {"image": {"digest": "sha256:" + "ab" * 32}},
        {"args": ["upgrade", "+1"]},
        {"command": ["python", "entrypoint.py"]},
        {"runner": {"lockTimeout": 301}},
        {"runner": {"lockName": "other"}},
        {"extraEnv": [{"name": "TZ", "value": "UTC"}]},
        {"envFrom": [{"configMapRef": {"name": "settings"}}]},
        {"database": {"existingSecretKey": "uri"}},
        {"resources": {"limits": {"memory": "512Mi"}}},
    ],
    ids=first_leaf,
)
def test_plain_mode_name_changes_when_the_spec_changes(chart, change) -> None:
    assert job_name(chart, merged(PLAIN, change)) != job_name(chart, PLAIN)


def test_plain_mode_name_is_stable_when_the_spec_is_not_changed(chart) -> None:
    first = job_name(chart, PLAIN)
    assert job_name(chart, copy.deepcopy(PLAIN)) == first
    # Another revision of the same release, or values that only reach other objects, keep it.
    later = only(render(chart, PLAIN, revision=7, is_upgrade=True), "Job")
    assert later["metadata"]["name"] == first
    assert job_name(chart, merged(PLAIN, {"jobAnnotations": {"note": "x"}})) == first
    with_url = {"useHelmHooks": False, "database": {"url": URL}}
    assert job_name(chart, with_url) == job_name(
        chart, merged(with_url, {"database": {"url": URL + "2"}})
    )


def test_plain_mode_name_fits_a_label_value_for_a_long_release_name(chart) -> None:
    files = chart.render(PLAIN, name="r" * 53, namespace=NAMESPACE)
    job = only(
        [doc for doc in yaml.safe_load_all(files["migrate-job/templates/job.yaml"]) if doc], "Job"
    )
    assert len(job["metadata"]["name"]) <= 63
    assert re.fullmatch(r"r+-[0-9a-f]{10}", job["metadata"]["name"])


# ---------------------------------------------------------------- secrets stay secret


def password_in(values: dict[str, Any]) -> str:
    password = urlsplit(values["database"]["url"]).password
    assert password, "these value sets must carry a password"
    return password


@pytest.mark.parametrize(
    "values",
    [VALUE_SETS["url-secret"], VALUE_SETS["plain"], {"database": {"url": URL, "urlAsFile": True}}],
    ids=["url-secret", "plain", "url-as-file"],
)
def test_no_password_outside_the_secret(chart, values) -> None:
    password = password_in(values)
    files = render_files(chart, values)
    for path, text in files.items():
        docs = [doc for doc in yaml.safe_load_all(text) if doc] if path.endswith(".yaml") else []
        if docs and all(doc["kind"] == "Secret" for doc in docs):
            assert password not in text, "the Secret must carry the URL base64-encoded only"
            continue
        assert password not in text, f"{path} leaks the password"
        assert base64.b64encode(password.encode()).decode() not in text


# ---------------------------------------------------------------- pod defaults


def test_pod_defaults_are_safe(chart) -> None:
    job = only(render(chart, EXISTING), "Job")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    migrate = container(job)
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = migrate["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert migrate["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(migrate)
    assert set(migrate["resources"]) == {"requests", "limits"}
    assert migrate["image"] == "ghcr.io/example/migrate-job:0.1.0"
    assert migrate["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in migrate
    assert migrate["args"] == ["upgrade", "head"]
    assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert 0 < spec["backoffLimit"] <= 3
    assert spec["activeDeadlineSeconds"] > 60 + 300


def test_pod_failure_policy_fails_at_once_on_non_retryable_codes(chart) -> None:
    rules = only(render(chart, EXISTING), "Job")["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "migrate", "operator": "In", "values": [2, 5]},
    }
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    # Retryable codes (3, 4, 6, 130, 143) match no rule, so they count against backoffLimit.
    everything = only(render(chart, VALUE_SETS["everything"]), "Job")
    assert everything["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [1, 2, 5]


def test_sidecar_injection_can_be_left_to_the_mesh(chart) -> None:
    job = only(render(chart, merged(EXISTING, {"disableSidecarInjection": False})), "Job")
    metadata = job["spec"]["template"]["metadata"]
    assert "sidecar.istio.io/inject" not in metadata["labels"]
    assert "annotations" not in metadata


def test_user_labels_replace_chart_labels_instead_of_repeating_the_key(chart) -> None:
    values = merged(EXISTING, {"podLabels": {"app.kubernetes.io/component": "db-migration"}})
    text = render_files(chart, values)["migrate-job/templates/job.yaml"]
    assert text.count("app.kubernetes.io/component:") == 2  # once on the Job, once on the pod
    job = only(render(chart, values), "Job")
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == (
        "db-migration"
    )


def test_active_deadline_defaults_to_the_timeouts_plus_a_margin(chart) -> None:
    job = only(
        render(chart, merged(EXISTING, {"runner": {"waitTimeout": 100, "lockTimeout": 1000}})),
        "Job",
    )
    assert job["spec"]["activeDeadlineSeconds"] == 100 + 1000 + 600


def test_active_deadline_below_the_timeouts_is_refused(chart) -> None:
    with pytest.raises(
        helm_python.HelmRenderError, match=r"activeDeadlineSeconds \(300\) must be larger"
    ):
        render(chart, merged(EXISTING, {"activeDeadlineSeconds": 300}))


def test_runner_settings_become_environment_variables(chart) -> None:
    env = env_of(container(only(render(chart, EXISTING), "Job")))
    assert {name: value for name, value in env.items() if name != "DATABASE_URL"} == {
        "MIGRATE_WAIT_TIMEOUT": "60",
        "MIGRATE_CONNECT_TIMEOUT": "5",
        "MIGRATE_LOCK_TIMEOUT": "300",
        "MIGRATE_LOG_FORMAT": "json",
        "MIGRATE_LOG_LEVEL": "info",
    }
    env = env_of(container(only(render(chart, VALUE_SETS["everything"]), "Job")))
    assert env["MIGRATE_LOCK_NAME"] == "app:alembic"
    assert env["ALEMBIC_CONFIG"] == "/app/alembic.ini"
    assert env["MIGRATE_DDL_LOCK_TIMEOUT"] == "5"
    assert env["MIGRATE_STATEMENT_TIMEOUT"] == "600"
    assert env["MIGRATE_DDL_RETRIES"] == "3"
    assert env["MIGRATE_TERMINATION_LOG"] == "/dev/termination-log"
    assert env["TZ"] == "UTC"


def test_large_numbers_are_not_printed_in_exponent_form(chart) -> None:
    values = merged(
        EXISTING, {"runner": {"lockTimeout": 1000000}, "activeDeadlineSeconds": 2000000}
    )
    job = only(render(chart, values), "Job")
    assert env_of(container(job))["MIGRATE_LOCK_TIMEOUT"] == "1000000"
    assert job["spec"]["activeDeadlineSeconds"] == 2000000


def test_url_as_file_mounts_the_secret_and_passes_its_path(chart) -> None:
    job = only(render(chart, VALUE_SETS["everything"]), "Job")
    migrate, pod = container(job), job["spec"]["template"]["spec"]
    env = env_of(migrate)
    assert "DATABASE_URL" not in env
    mounts = {mount["name"]: mount for mount in migrate["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for variable, volume_name, file_name in [
        ("DATABASE_URL_FILE", "database-url", "url"),
        ("DATABASE_PASSWORD_FILE", "database-password", "password"),
    ]:
        assert env[variable] == f"{mounts[volume_name]['mountPath']}/{file_name}"
        assert mounts[volume_name]["readOnly"] is True
        secret = volumes[volume_name]["secret"]
        assert secret["items"][0]["path"] == file_name
        assert secret["defaultMode"] == 0o440
    assert volumes["database-password"]["secret"]["secretName"] == "app-database-password"
    assert pod["securityContext"]["fsGroup"] == 10001


# ---------------------------------------------------------------- values that cannot work


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backoffLimit": "two"}, "/backoffLimit"),
        ({"runner": {"lockTimeout": "300s"}}, "/runner/lockTimeout"),
        ({"runner": {"logFormat": "xml"}}, "/runner/logFormat"),
        ({"useHelmHooks": "false"}, "/useHelmHooks"),
        ({"replicaCount": 2}, "'replicaCount' not allowed"),
        ({"runner": {"lockTimeot": 5}}, "'lockTimeot' not allowed"),
        ({"jobAnnotations": {"argocd.argoproj.io/sync-wave": -1}}, "/jobAnnotations"),
        ({"extraEnv": [{"name": "TZ", "value": 1}]}, "/extraEnv/0/value"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"podFailurePolicy": {"failJobExitCodes": [0]}}, "/podFailurePolicy/failJobExitCodes/0"),
    ],
)
def test_schema_rejects_wrong_values_naming_the_key(chart, values, message) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        render(chart, merged(EXISTING, values))


@pytest.mark.parametrize(
    "values", [{}, {"database": {"existingSecret": "", "url": ""}}], ids=["defaults", "blank"]
)
def test_missing_credentials_are_refused_naming_both_choices(chart, values) -> None:
    """The template's message, not a schema error that fires first and says neither."""
    with pytest.raises(
        helm_python.HelmRenderError,
        match=re.escape(
            "no database credentials: set database.existingSecret (recommended) or database.url"
        ),
    ):
        render(chart, values)


def test_both_kinds_of_credentials_are_refused(chart) -> None:
    with pytest.raises(
        helm_python.HelmRenderError,
        match=re.escape("either database.existingSecret or database.url, not both"),
    ):
        render(chart, {"database": {"existingSecret": "app-database", "url": URL}})


def test_extra_env_may_not_shadow_what_the_chart_sets(chart) -> None:
    values = merged(EXISTING, {"extraEnv": [{"name": "MIGRATE_LOCK_TIMEOUT", "value": "5"}]})
    with pytest.raises(helm_python.HelmRenderError, match="extraEnv sets MIGRATE_LOCK_TIMEOUT"):
        render(chart, values)


# ---------------------------------------------------------------- NOTES.txt


@pytest.mark.parametrize("value_set", ["default", "plain"])
def test_notes_tell_how_to_read_the_logs_and_the_exit_codes(chart, value_set) -> None:
    files = render_files(chart, VALUE_SETS[value_set])
    notes = files["migrate-job/templates/NOTES.txt"]
    name = only(render(chart, VALUE_SETS[value_set]), "Job")["metadata"]["name"]
    assert f"kubectl -n {NAMESPACE} logs job/{name}" in notes
    for code in ["0", "1", "2", "3", "4", "5", "6", "7", "130/143"]:
        assert re.search(rf"^  {re.escape(code)} ", notes, re.MULTILINE), code


# ---------------------------------------------------------------- the init-container gate


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-app
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
        {{- include "migrate-job.awaitHeadInitContainer" INCLUDE_ARG | nindent 8 }}
      containers:
        - name: web
          image: example/web:1
"""


def umbrella(tmp_path: Path, alias: str | None = None, include_arg: str = ".") -> helm_python.Chart:
    """An application chart that depends on migrate-job and gates its pods on await-head."""
    root = tmp_path / "app"
    (root / "templates").mkdir(parents=True)
    shutil.copytree(CHART_DIR, root / "charts" / "migrate-job", ignore=shutil.ignore_patterns("ci"))
    dependency = {"name": "migrate-job", "version": "0.1.0"} | ({"alias": alias} if alias else {})
    (root / "Chart.yaml").write_text(
        yaml.safe_dump(
            {"apiVersion": "v2", "name": "app", "version": "1.0.0", "dependencies": [dependency]}
        )
    )
    (root / "templates" / "deployment.yaml").write_text(
        DEPLOYMENT.replace("INCLUDE_ARG", include_arg)
    )
    return helm_python.Chart.load(root)


def init_container_and_job(
    app: helm_python.Chart, values: dict[str, Any]
) -> tuple[dict, dict, dict]:
    docs = render(app, values)
    deployment, job = only(docs, "Deployment"), only(docs, "Job")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return deployment, init, job


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_init_container_template_renders_a_valid_container(tmp_path, kube_version) -> None:
    app = umbrella(tmp_path)
    deployment, init, job = init_container_and_job(app, {"migrate-job": EXISTING})
    kubernetes_validate.validate(deployment, kube_version, strict=True)
    assert init["name"] == "await-migrations"
    assert init["image"] == container(job)["image"]
    assert init["args"] == ["await-head", "--timeout", "600"]
    assert env_of(init)["DATABASE_URL"] == {"secretKeyRef": {"name": "app-database", "key": "url"}}
    assert init["securityContext"] == container(job)["securityContext"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_init_container_under_an_alias_takes_that_scope(tmp_path) -> None:
    app = umbrella(tmp_path, alias="migrations", include_arg='(index .Subcharts "migrations")')
    values = {
        "migrations": merged(EXISTING, {"image": {"tag": "9.9.9"}, "awaitHead": {"timeout": 30}})
    }
    deployment, init, _ = init_container_and_job(app, values)
    kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)
    assert init["image"] == "ghcr.io/example/migrate-job:9.9.9"
    assert init["args"][-1] == "30"


def test_init_container_refuses_a_secret_that_helm_deletes_after_the_hook(tmp_path) -> None:
    app = umbrella(tmp_path)
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("use database.existingSecret")):
        render(app, {"migrate-job": {"database": {"url": URL}}})
    # In plain mode the chart-made Secret is an ordinary, lasting resource.
    _, init, _ = init_container_and_job(
        app, {"migrate-job": {"database": {"url": URL}, "useHelmHooks": False}}
    )
    assert env_of(init)["DATABASE_URL"]["secretKeyRef"]["name"] == f"{RELEASE}-migrate-job-database"


# ---------------------------------------------------------------- the chart README


def documented_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every value path; objects the chart defines (additionalProperties: false) are walked into."""
    paths = []
    for key, sub in schema["properties"].items():
        if key == "global":
            continue
        path = f"{prefix}{key}"
        if sub.get("additionalProperties") is False and "properties" in sub:
            paths.extend(documented_paths(sub, f"{path}."))
        else:
            paths.append(path)
    return paths


def test_readme_documents_every_value(chart) -> None:
    readme = (CHART_DIR / "README.md").read_text()
    paths = documented_paths(chart.schema)
    assert len(paths) > 40
    missing = [path for path in paths if f"| `{path}` |" not in readme]
    assert missing == []


def test_readme_init_container_snippet_is_what_the_template_renders(tmp_path) -> None:
    readme = (CHART_DIR / "README.md").read_text()
    after_marker = readme.split("<!-- init-container-snippet:", 1)[1]
    snippet = after_marker.split("```yaml\n", 1)[1].split("```", 1)[0]
    _, init, _ = init_container_and_job(umbrella(tmp_path), {"migrate-job": EXISTING})
    assert yaml.safe_load(snippet) == {"initContainers": [init]}


def test_every_default_value_is_in_the_schema(chart) -> None:
    chart.validate_schema(merged(chart.values, EXISTING))
    leaves = documented_paths(chart.schema)

    def walk(values: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in values.items():
            path = f"{prefix}{key}"
            if path in leaves or not isinstance(value, dict):
                out.append(path)
            else:
                out.extend(walk(value, f"{path}."))
        return out

    assert sorted(walk(chart.values)) == sorted(leaves)


# ---------------------------------------------------------------- the chart and the runner agree

ALEMBIC_INI = str(CHART_DIR.parent.parent / "alembic.ini")  # must exist for the runner to accept it

# Every option of the runner (migrator/settings.py OPTIONS) and the chart value that sets it, with
# a value the runner accepts and the Settings field it lands in: one list, so that an option added
# to the runner or a value added to the chart without the other fails here.
CHART_OPTIONS: dict[str, tuple[str, Any, str | None]] = {
    "DATABASE_URL": ("database.existingSecret", "app-database", None),
    "DATABASE_URL_FILE": ("database.urlAsFile", True, None),
    "DATABASE_PASSWORD_FILE": ("database.passwordSecret.name", "app-password", None),
    "ALEMBIC_CONFIG": ("runner.alembicConfig", ALEMBIC_INI, "alembic_config"),
    "MIGRATE_WAIT_TIMEOUT": ("runner.waitTimeout", 2.5, "wait_timeout"),
    "MIGRATE_CONNECT_TIMEOUT": ("runner.connectTimeout", 0.5, "connect_timeout"),
    "MIGRATE_LOCK_TIMEOUT": ("runner.lockTimeout", 1000000, "lock_timeout"),
    "MIGRATE_LOCK_NAME": ("runner.lockName", "app:alembic", "lock_name"),
    # Not an environment variable of the chart: await-head's --timeout in the init container.
    "MIGRATE_AWAIT_TIMEOUT": ("awaitHead.timeout", 12.5, "await_timeout"),
    "MIGRATE_DDL_LOCK_TIMEOUT": ("runner.ddlLockTimeout", 0.25, "ddl_lock_timeout"),
    "MIGRATE_STATEMENT_TIMEOUT": ("runner.statementTimeout", 1234567.5, "statement_timeout"),
    "MIGRATE_DDL_RETRIES": ("runner.ddlRetries", 100, "ddl_retries"),
    "MIGRATE_TERMINATION_LOG": ("runner.terminationLog", "/dev/termination-log", "termination_log"),
    "MIGRATE_LOG_FORMAT": ("runner.logFormat", "console", "log_format"),
    "MIGRATE_LOG_LEVEL": ("runner.logLevel", "debug", "log_level"),
    "MIGRATE_HISTORY": ("runner.history", "off", "history"),
    "MIGRATE_VERIFY": ("runner.verify", "strict", "verify"),
    "MIGRATE_DATABASE_AHEAD": ("runner.databaseAhead", "error", "database_ahead"),
    # Fleet mode (fleet.enabled): the targets file is a mounted Secret, as DATABASE_URL_FILE is.
    "MIGRATE_TARGETS_FILE": ("fleet.targetsSecret.name", "tenant-databases", None),
    "MIGRATE_PARALLEL": ("fleet.parallel", 7, "parallel"),
    "MIGRATE_ON_ERROR": ("fleet.onError", "stop", "on_error"),
    "MIGRATE_CANARY": ("fleet.canary", 3, "canary"),
    "MIGRATE_SHARD_COUNT": ("fleet.shards", 5, None),  # settings.shard, checked below
}
# Fleet mode with the targets from a query instead of a file (they exclude each other): the
# catalog's URL from an existing Secret, as DATABASE_URL is.
QUERY_OPTIONS: dict[str, tuple[str, Any, str | None]] = {
    "MIGRATE_TARGETS_QUERY": ("fleet.targetsQuery", "SELECT slug AS name, url FROM t", None),
    "MIGRATE_TARGETS_URL_FILE": ("fleet.catalogSecret.name", "tenant-registry", None),
}


def values_at(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    values: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        values = {parent: values}
    return values


# Kubernetes sets JOB_COMPLETION_INDEX in each pod of an Indexed Job, MIGRATE_SHARD_INDEX's
# default: the chart must not set the variable itself (one value for every pod). The catalog's
# URL reaches the pod as a mounted Secret file (MIGRATE_TARGETS_URL_FILE), never in the env.
NOT_SET_BY_THE_CHART = {"MIGRATE_SHARD_INDEX", "MIGRATE_TARGETS_URL"}


def test_the_chart_sets_every_runner_option_and_nothing_else() -> None:
    assert {*CHART_OPTIONS, *QUERY_OPTIONS} == {
        option.env for option in OPTIONS
    } - NOT_SET_BY_THE_CHART
    schema = helm_python.Chart.load(CHART_DIR).schema
    runner_values = {f"runner.{key}" for key in schema["properties"]["runner"]["properties"]}
    paths = {path for path, _, _ in CHART_OPTIONS.values()}
    assert runner_values <= paths, "a runner.* value that sets no runner option"
    assert {f"database.{k}" for k in ("existingSecret", "urlAsFile")} <= paths


@pytest.mark.parametrize(
    "env",
    sorted({*CHART_OPTIONS, *QUERY_OPTIONS, *NOT_SET_BY_THE_CHART} - {"MIGRATE_AWAIT_TIMEOUT"}),
)
def test_extra_env_may_shadow_no_option_the_chart_sets(chart, env) -> None:
    values = merged(EXISTING, {"extraEnv": [{"name": env, "value": "x"}]})
    with pytest.raises(helm_python.HelmRenderError, match=f"extraEnv sets {env}"):
        render(chart, values)


def test_every_value_reaches_the_runner_as_the_runner_reads_it(chart, tmp_path) -> None:
    values = merged(
        *(values_at(path, sample) for path, sample, _ in CHART_OPTIONS.values()),
        {"useHelmHooks": False, "activeDeadlineSeconds": None, "fleet": {"enabled": True}},
    )
    chart.validate_schema(values)
    env = env_of(container(only(render(chart, values), "Job")))
    assert env.pop("DATABASE_URL_FILE").endswith("/url")
    assert env.pop("DATABASE_PASSWORD_FILE").endswith("/password")
    assert env.pop("MIGRATE_TARGETS_FILE").endswith("/targets.json")
    assert not NOT_SET_BY_THE_CHART & set(env)
    url = tmp_path / "url"
    url.write_text(f"sqlite:///{tmp_path / 'x.db'}")
    env["DATABASE_URL_FILE"] = str(url)  # the file the Secret would be mounted as
    targets = tmp_path / "targets.json"
    targets.write_text('[{"name": "a", "url": "postgresql://u@h/a"}]')
    env["MIGRATE_TARGETS_FILE"] = str(targets)
    env["JOB_COMPLETION_INDEX"] = "4"  # what Kubernetes sets in the last of the 5 pods
    _, settings = parse(["fleet-upgrade"], env)
    assert settings.shard == Shard(4, 5)
    # The init container takes no mounted files (see its own test): the URL from the Secret.
    gate = merged(EXISTING, values_at(*CHART_OPTIONS["MIGRATE_AWAIT_TIMEOUT"][:2]))
    _, init, _ = init_container_and_job(umbrella(tmp_path), {"migrate-job": gate})
    _, awaiting = parse(init["args"], env)
    for name, (path, sample, field) in CHART_OPTIONS.items():
        if field is not None:
            got = getattr(awaiting if name == "MIGRATE_AWAIT_TIMEOUT" else settings, field)
            assert got == sample, (path, got)


NUMBERS = [-1, 0, 0.001, 2.5, 100, 101, 1000000, 1234567.5]


@pytest.mark.parametrize(
    ("env", "probes"),
    [
        ("MIGRATE_WAIT_TIMEOUT", NUMBERS),
        ("MIGRATE_CONNECT_TIMEOUT", NUMBERS),
        ("MIGRATE_LOCK_TIMEOUT", NUMBERS),
        ("MIGRATE_AWAIT_TIMEOUT", NUMBERS),
        ("MIGRATE_DDL_LOCK_TIMEOUT", NUMBERS),
        ("MIGRATE_STATEMENT_TIMEOUT", NUMBERS),
        ("MIGRATE_DDL_RETRIES", NUMBERS),
        ("MIGRATE_PARALLEL", NUMBERS),
        ("MIGRATE_CANARY", [*NUMBERS, "early", "wave-1", "two words", "3rd"]),
        ("MIGRATE_ON_ERROR", [*ON_ERROR, "halt"]),
        ("MIGRATE_LOG_FORMAT", [*LOG_FORMATS, "xml"]),
        ("MIGRATE_LOG_LEVEL", [*LOG_LEVELS, "loud"]),
    ],
)
def test_the_schema_accepts_exactly_what_the_runner_accepts(chart, env, probes) -> None:
    path = CHART_OPTIONS[env][0]
    for probe in probes:
        try:
            chart.validate_schema(merged(EXISTING, values_at(path, probe)))
            schema_accepts = True
        except helm_python.HelmValuesError:
            schema_accepts = False
        try:
            load_settings({"ALEMBIC_CONFIG": ALEMBIC_INI, env: str(probe)})
            runner_accepts = True
        except ConfigError:
            runner_accepts = False
        assert schema_accepts == runner_accepts, (path, probe, schema_accepts)


def test_the_root_readme_init_container_asks_for_the_chart_resources(chart) -> None:
    readme = (CHART_DIR.parent.parent / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    (deployment,) = [yaml.safe_load(b) for b in blocks if "initContainers:" in b]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    chart_resources = chart.values["resources"]
    assert init["resources"]["requests"] == chart_resources["requests"]
    assert init["resources"]["limits"]["memory"] == chart_resources["limits"]["memory"]


# ---------------------------------------------------------------- fleet mode

FLEET = {"fleet": {"enabled": True, "targetsSecret": {"name": "tenant-databases"}, "shards": 4}}


def test_fleet_mode_is_an_indexed_job_with_one_shard_per_index(chart) -> None:
    job = only(render(chart, FLEET), "Job")
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 1)
    assert spec["backoffLimitPerIndex"] == 2
    assert "backoffLimit" not in spec and "maxFailedIndexes" not in spec
    assert "activeDeadlineSeconds" not in spec  # a fleet's duration grows with its targets
    assert spec["podFailurePolicy"]["rules"][0] == {
        "action": "FailIndex",
        "onExitCodes": {"containerName": "migrate", "operator": "In", "values": [2, 5]},
    }
    migrate = container(job)
    assert migrate["args"] == ["fleet-upgrade", "head"]
    env = env_of(migrate)
    assert env["MIGRATE_SHARD_COUNT"] == "4"
    assert "DATABASE_URL" not in env and "MIGRATE_SHARD_INDEX" not in env
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == "tenant-databases"
    assert volume["secret"]["items"] == [{"key": "targets.json", "path": "targets.json"}]
    (mount,) = migrate["volumeMounts"]
    assert env["MIGRATE_TARGETS_FILE"] == f"{mount['mountPath']}/targets.json"
    notes = render_files(chart, FLEET)["migrate-job/templates/NOTES.txt"]
    assert re.search(r"^  9 ", notes, re.MULTILINE)
    assert "(fleet-upgrade head)" in notes


def test_fleet_mode_passes_the_database_on_for_schema_targets(chart) -> None:
    env = env_of(container(only(render(chart, merged(FLEET, EXISTING)), "Job")))
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "app-database", "key": "url"}}


def test_fleet_mode_runs_fleet_upgrade_or_refuses(chart) -> None:
    upgrade = merged(FLEET, {"args": ["upgrade", "4d5e6f7a8b93"]})
    assert container(only(render(chart, upgrade), "Job"))["args"] == [
        "fleet-upgrade",
        "4d5e6f7a8b93",
    ]
    with pytest.raises(helm_python.HelmRenderError, match="fleet mode runs fleet-upgrade"):
        render(chart, merged(FLEET, {"args": ["downgrade", "-1"]}))
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("fleet.targetsSecret.name")):
        render(chart, {"fleet": {"enabled": True}})


def test_the_await_head_gate_refuses_fleet_mode(tmp_path) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="fleet mode has many"):
        render(umbrella(tmp_path), {"migrate-job": FLEET})


def test_fleet_mode_takes_the_targets_from_a_query_on_the_catalog(chart, tmp_path) -> None:
    values = merged(
        *(values_at(path, sample) for path, sample, _ in QUERY_OPTIONS.values()),
        {"fleet": {"enabled": True, "canary": "early"}},
    )
    chart.validate_schema(values)
    job = only(render(chart, values), "Job")
    migrate = container(job)
    env = env_of(migrate)
    assert "MIGRATE_TARGETS_FILE" not in env and "DATABASE_URL" not in env
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == "tenant-registry"
    assert volume["secret"]["items"] == [{"key": "url", "path": "url"}]
    (mount,) = migrate["volumeMounts"]
    assert env["MIGRATE_TARGETS_URL_FILE"] == f"{mount['mountPath']}/url"
    assert mount["readOnly"] is True
    # What the pod gets, the runner reads as the chart meant it.
    url = tmp_path / "url"
    url.write_text("postgresql://u:catalog-Secret@h/registry")
    env["MIGRATE_TARGETS_URL_FILE"] = str(url)  # the file the Secret would be mounted as
    env.update(JOB_COMPLETION_INDEX="0", ALEMBIC_CONFIG=ALEMBIC_INI)
    _, settings = parse(["fleet-upgrade"], env)
    assert settings.targets_query == QUERY_OPTIONS["MIGRATE_TARGETS_QUERY"][1]
    assert settings.catalog is not None and "catalog-Secret" in settings.secrets
    assert settings.canary == "early" and settings.shard == Shard(0, 1)
    # No catalog Secret: the query runs on database.*'s database.
    on_database = merged(EXISTING, {"fleet": {"enabled": True, "targetsQuery": "SELECT 1"}})
    env = env_of(container(only(render(chart, on_database), "Job")))
    assert "MIGRATE_TARGETS_URL_FILE" not in env and "DATABASE_URL" in env


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            merged(FLEET, {"fleet": {"targetsQuery": "SELECT 1"}}),
            "either fleet.targetsSecret.name (a targets file) or fleet.targetsQuery",
        ),
        (
            {"fleet": {"enabled": True, "targetsQuery": "SELECT 1"}},
            "fleet.targetsQuery needs the database it runs on",
        ),
        (
            merged(FLEET, {"fleet": {"catalogSecret": {"name": "registry"}}}),
            "fleet.targetsQuery is not set",
        ),
    ],
    ids=["file-and-query", "query-without-catalog", "catalog-without-query"],
)
def test_fleet_mode_refuses_an_ambiguous_targets_source(chart, values, says) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(says)):
        render(chart, values)


def test_a_yaml_targets_key_keeps_its_suffix_and_the_canary_may_be_a_group(chart) -> None:
    values = merged(FLEET, {"fleet": {"targetsSecret": {"key": "tenants.YML"}, "canary": "wave-1"}})
    chart.validate_schema(values)
    job = only(render(chart, values), "Job")
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["items"] == [{"key": "tenants.YML", "path": "targets.yaml"}]
    env = env_of(container(job))
    assert env["MIGRATE_TARGETS_FILE"].endswith("/targets/targets.yaml")
    assert env["MIGRATE_CANARY"] == "wave-1"
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(merged(FLEET, {"fleet": {"canary": "two words"}}))
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(merged(FLEET, {"fleet": {"catalogSecret": {"nam": "x"}}}))


# ---------------------------------------------------------------- one-off commands


def test_a_one_off_job_runs_its_command_with_the_release_settings_and_no_retries(chart) -> None:
    values = merged(EXISTING, {"runner": {"history": "on"}, "oneOff": {"args": ["status"]}})
    job = one_off_job(chart, values)
    release = only(render(chart, values), "Job")
    assert container(release)["args"] == ["upgrade", "head"]  # the release's Job is unchanged
    name = job["metadata"]["name"]
    assert re.fullmatch(rf"{RELEASE}-migrate-job-status-[a-z0-9]{{6}}", name), name
    assert one_off_job(chart, values)["metadata"]["name"] != name  # each rendering a new Job
    assert "annotations" not in job["metadata"]  # not a hook: Helm never runs or deletes it
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["ttlSecondsAfterFinished"]) == (0, 3600)
    assert "podFailurePolicy" not in spec
    one_off, migrate = container(job), container(release)
    assert one_off["args"] == ["status"]
    assert one_off["env"] == migrate["env"] and one_off["image"] == migrate["image"]
    assert one_off["securityContext"] == migrate["securityContext"]
    assert job["spec"]["template"]["spec"] == {
        **release["spec"]["template"]["spec"],
        "containers": [{**migrate, "args": ["status"]}],
    }
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


def test_no_one_off_job_without_its_args(chart) -> None:
    files = render_files(chart, EXISTING)
    assert not any(text.strip() for path, text in files.items() if path.endswith(ONE_OFF))


def test_a_one_off_job_in_fleet_mode_runs_on_the_one_database(chart) -> None:
    values = merged(FLEET, EXISTING, {"oneOff": {"args": ["current"]}})
    migrate = container(one_off_job(chart, values))
    env = env_of(migrate)
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "app-database", "key": "url"}}
    assert "MIGRATE_TARGETS_FILE" not in env and "volumeMounts" not in migrate
    assert migrate["args"] == ["current"]
    with pytest.raises(helm_python.HelmRenderError, match="no database credentials"):
        render_files(chart, merged(FLEET, {"oneOff": {"args": ["current"]}}))


def test_a_one_off_job_refuses_the_secret_helm_deletes_after_the_hook(chart) -> None:
    values = {"database": {"url": URL}, "oneOff": {"args": ["status"]}}
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("use database.existingSecret")):
        render_files(chart, values)
    plain = one_off_job(chart, {**values, "useHelmHooks": False})  # the Secret is a release's
    assert URL not in yaml.safe_dump(plain)


@pytest.mark.parametrize("command", ["downgrade", "stamp"])
def test_notes_warn_when_every_upgrade_would_run_a_downgrade_or_stamp(chart, command) -> None:
    values = merged(EXISTING, {"args": [command, "-1" if command == "downgrade" else "head"]})
    notes = render_files(chart, values)["migrate-job/templates/NOTES.txt"]
    assert notes.lstrip().startswith(f"WARNING: args runs `{command}`")
    assert "oneOff.args" in notes
    assert "WARNING" not in render_files(chart, EXISTING)["migrate-job/templates/NOTES.txt"]
