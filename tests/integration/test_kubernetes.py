"""deploy/k8s, checked without a cluster.

There is no Kubernetes (nor `kustomize`, `kubectl` or `helm`) where the suite runs, so these tests
build each kustomization the way `kubectl apply -k` would for what the files use (a `resources:`
list, `namespace:` and `images:`; the build refuses any other field, so nothing goes unchecked),
then hold the result to:

- the Kubernetes OpenAPI schemas in the kubernetes-validate wheel, strict (an unknown field is an
  error, as `kubectl apply --validate=strict` makes it), at the versions in KUBERNETES_VERSIONS;
- the CRD schemas of KEDA's ScaledObject and CloudNativePG's Cluster and the nats chart's
  values.yaml, copied from their repositories into tests/data/kubernetes (README there);
- the code: the settings classes must read every variable a Deployment sets and start with it
  (the secret files written where the Deployment mounts them), probes ask the ports the services
  listen on, Services and budgets select the pods, autoscalers name Deployments, and KEDA watches
  the consumers the publisher creates;
- the README, whose table of sizes must give what the manifests ask for.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kairos_api.bootstrap import load_cipher
from kairos_api.settings import ApiSettings
from kairos_common.platforms import Platform
from kairos_common.settings import CommonSettings, SettingsError
from kairos_common.streams import DUE_STREAM, EVENTS_STREAM
from kairos_console.settings import ConsoleSettings
from kairos_publisher.consumer import durable_name
from kairos_publisher.settings import PublisherSettings
from kairos_publisher.webhooks import DURABLE as WEBHOOKS_DURABLE
from kairos_scheduler.settings import SchedulerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DATA = ROOT / "tests" / "data" / "kubernetes"
#: The kustomizations people apply; each includes ../base.
OVERLAYS = ("cloudnative-pg", "external-postgres")
#: The oldest Kubernetes the manifests are meant for, and the newest the wheel knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
#: Custom resources, each with the schema of its CRD (tests/data/kubernetes/README.md).
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): DATA / "keda-scaledobject-v1alpha1.schema.json",
    ("postgresql.cnpg.io/v1", "Cluster"): DATA / "cnpg-cluster-v1.schema.json",
}
#: Kinds that live outside any namespace (the namespace transformer leaves them alone).
CLUSTER_SCOPED = frozenset({"Namespace"})
#: What a kustomization here may use: the fields `build` below carries out.
KUSTOMIZATION_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "images"})
SETTINGS: dict[str, Callable[[Mapping[str, str]], Any]] = {
    "api": ApiSettings.from_env,
    "scheduler": SchedulerSettings.from_env,
    "publisher": PublisherSettings.from_env,
}
#: Every image built here: the services and the console.
IMAGES = (*SETTINGS, "console")
#: The listen-address variable of each service (its settings module's `server_settings`).
LISTEN_VARIABLES = {
    "api": "KAIROS_API_ADDR",
    "scheduler": "KAIROS_SCHEDULER_ADDR",
    "publisher": "KAIROS_PUBLISHER_ADDR",
}
NATS_VALUES = K8S / "nats" / "values.yaml"
NATS_CHART_VALUES = DATA / "nats-chart-values.yaml"
#: The Helm release name the nats values file tells people to install under.
NATS_RELEASE = "nats"
SECRETS_EXAMPLE = K8S / "secrets.example.yaml"

Document = dict[str, Any]


# --- building a kustomization ------------------------------------------------------------------


def load_documents(path: Path) -> list[Document]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in documents), f"{path}: a document is not a mapping"
    return documents


def pod_containers(document: Document) -> list[Document]:
    if document.get("kind") != "Deployment":
        return []
    spec = document["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def build(folder: Path) -> list[Document]:
    """What `kustomize build folder` makes of the fields used here: each resource (a file, or a
    folder built the same way) in order, then the `images:` and `namespace:` transformers."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{folder}: this build does not carry out {sorted(unknown)}"
    assert kustomization["kind"] == "Kustomization"
    documents: list[Document] = []
    for entry in kustomization["resources"]:
        target = (folder / entry).resolve()
        assert target.is_relative_to(K8S), f"{folder}: {entry} is outside deploy/k8s"
        documents += build(target) if target.is_dir() else load_documents(target)
    documents = copy.deepcopy(documents)
    for image in kustomization.get("images", []):
        replaced = 0
        for document in documents:
            for container in pod_containers(document):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
                    replaced += 1
        assert replaced, f"{folder}: images names {image['name']}, which no container runs"
    namespace = kustomization.get("namespace")
    if namespace:
        for document in documents:
            if document["kind"] in CLUSTER_SCOPED:
                continue
            document.setdefault("metadata", {})["namespace"] = namespace
    return documents


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def built(overlay: str) -> list[Document]:
    return build(K8S / overlay)


def only(documents: list[Document], kind: str, name: str | None = None) -> list[Document]:
    return [
        d
        for d in documents
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def deployment_of(documents: list[Document], service: str) -> Document:
    (found,) = only(documents, "Deployment", f"kairos-{service}")
    return found


def container_of(documents: list[Document], service: str) -> Document:
    (container,) = deployment_of(documents, service)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def env_of(container: Document) -> dict[str, str]:
    env = {}
    for item in container.get("env", []):
        assert set(item) == {"name", "value"}, f"{item}: only literal values are used here"
        assert isinstance(item["value"], str), f"{item['name']}: quote it (env values are text)"
        env[item["name"]] = item["value"]
    return env


def port_named(container: Document, name: str | int) -> int:
    """A container port by name or number, as a Service's targetPort names it."""
    for port in container.get("ports", []):
        if name in (port.get("name"), port["containerPort"]):
            return int(port["containerPort"])
    raise AssertionError(f"container {container['name']} has no port {name!r}")


def test_the_build_carries_out_namespace_and_images_and_refuses_other_fields(
    tmp_path: Path,
) -> None:
    """The stand-in for kustomize: what it does, and that it refuses what it does not do."""
    for overlay in OVERLAYS:
        documents = build(K8S / overlay)
        namespaced = [d for d in documents if d["kind"] not in CLUSTER_SCOPED]
        assert {d["metadata"].get("namespace") for d in namespaced} == {"kairos"}
        images = {c["image"] for d in documents for c in pod_containers(d)}
        wanted = {f"registry.example.com/kairos/{service}:0.1.0" for service in IMAGES}
        assert images == wanted
    patched = tmp_path / "patched"
    patched.mkdir()
    (patched / "kustomization.yaml").write_text(
        f"kind: Kustomization\nresources: [{K8S / 'base'}]\npatches: [{{path: p.yaml}}]\n"
    )
    with pytest.raises(AssertionError, match="patches"):
        build(patched)


# --- schemas -----------------------------------------------------------------------------------


def kubernetes_errors(document: Document, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        # A jsonschema.ValidationError: path and message of the first mistake.
        return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"]
    return []


def strict(schema: Any) -> Any:
    """A CRD schema as kubectl's strict field validation applies it: an object that lists its
    properties takes no others, unless it says it keeps unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def crd_errors(document: Document) -> list[str]:
    path = CRD_SCHEMAS[(document["apiVersion"], document["kind"])]
    schema = strict(json.loads(path.read_text()))
    # The API server checks metadata itself; the CRD schema says only that it is an object.
    schema["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_every_built_in_resource_follows_the_kubernetes_schema(built: list[Document]) -> None:
    kinds = set()
    for document in built:
        if (document["apiVersion"], document["kind"]) in CRD_SCHEMAS:
            continue
        kinds.add(document["kind"])
        for version in KUBERNETES_VERSIONS:
            errors = kubernetes_errors(document, version)
            assert not errors, f"{document['kind']} {document['metadata']['name']}: {errors}"
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } <= kinds


def test_the_kubernetes_schema_check_finds_a_misplaced_field(built: list[Document]) -> None:
    deployment = copy.deepcopy(deployment_of(built, "api"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["service_name"] = ""  # `service` in Kubernetes
    errors = kubernetes_errors(deployment, KUBERNETES_VERSIONS[0])
    assert errors
    assert "service_name" in errors[0], errors


def test_custom_resources_follow_their_crd_schemas(built: list[Document]) -> None:
    found = {(d["apiVersion"], d["kind"]) for d in built}
    for document in built:
        if (document["apiVersion"], document["kind"]) in CRD_SCHEMAS:
            assert crd_errors(document) == [], document["metadata"]["name"]
    assert ("keda.sh/v1alpha1", "ScaledObject") in found


def test_the_crd_schema_check_finds_mistakes() -> None:
    documents = build(K8S / "cloudnative-pg")
    (scaled,) = copy.deepcopy(only(documents, "ScaledObject"))
    scaled["spec"]["minReplicas"] = 2  # minReplicaCount in KEDA
    scaled["spec"]["triggers"][0]["metadata"] = ["not", "a", "map"]
    (cluster,) = copy.deepcopy(only(documents, "Cluster"))
    cluster["spec"]["instances"] = "three"
    cluster["spec"]["storage"]["sizes"] = "1Gi"

    scaled_errors = crd_errors(scaled)
    cluster_errors = crd_errors(cluster)

    assert any("minReplicas" in e for e in scaled_errors), scaled_errors
    assert any(e.startswith("spec/triggers/0/metadata") for e in scaled_errors), scaled_errors
    assert any(e.startswith("spec/instances") for e in cluster_errors), cluster_errors
    assert any("sizes" in e for e in cluster_errors), cluster_errors


def test_postgresql_comes_from_cloudnative_pg_or_from_outside() -> None:
    with_cluster = build(K8S / "cloudnative-pg")
    external = build(K8S / "external-postgres")
    (cluster,) = only(with_cluster, "Cluster")
    assert cluster["spec"]["instances"] >= 3  # a primary and two replicas to fail over to
    assert not only(external, "Cluster")
    # The two differ only by the Cluster: the services are the same.
    assert [d for d in with_cluster if d["kind"] != "Cluster"] == external


# --- the nats chart ----------------------------------------------------------------------------


def leaf_paths(values: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaf_paths(value, (*prefix, str(key)))
    else:
        yield prefix


def chart_has(chart: Any, path: tuple[str, ...]) -> bool:
    """Whether the chart's values.yaml has `path`; under a key it leaves empty ({}: resources,
    merge) anything goes, as the chart passes it through."""
    node = chart
    for key in path:
        if node == {}:
            return True
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_nats_values_use_keys_the_chart_has() -> None:
    chart = yaml.safe_load(NATS_CHART_VALUES.read_text())
    values = yaml.safe_load(NATS_VALUES.read_text())
    unknown = [".".join(p) for p in leaf_paths(values) if not chart_has(chart, p)]
    assert not unknown, f"not in the nats chart's values.yaml: {unknown}"
    assert not chart_has(chart, ("config", "jetstream", "filestore"))  # the check can fail


def test_nats_runs_three_jetstream_servers_on_volumes_and_the_services_use_them(
    built: list[Document],
) -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    chart = yaml.safe_load(NATS_CHART_VALUES.read_text())
    cluster, jetstream = values["config"]["cluster"], values["config"]["jetstream"]
    assert cluster["enabled"] is True
    assert cluster["replicas"] == 3
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert not jetstream.get("memoryStore", {}).get("enabled", False)
    header = NATS_VALUES.read_text()
    assert f"helm install {NATS_RELEASE} nats/nats --namespace kairos" in header
    client_port = chart["config"]["nats"]["port"]
    for service in SETTINGS:
        env = env_of(container_of(built, service))
        for url in env["KAIROS_NATS_URL"].split(","):
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) == (NATS_RELEASE, client_port), url
        assert int(env["KAIROS_NATS_REPLICAS"]) == cluster["replicas"], service


# --- the services' configuration ---------------------------------------------------------------


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers which names the settings asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def secret_files(documents: list[Document], service: str) -> dict[str, tuple[str, str]]:
    """Each file the service's pod gets from a Secret: path -> (Secret name, key)."""
    spec = deployment_of(documents, service)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    files = {}
    for mount in container_of(documents, service).get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        assert secret, f"{service}: volume {mount['name']} is not a Secret"
        assert mount.get("readOnly") is True, f"{service}: {mount['mountPath']} is writable"
        items = secret.get("items")
        assert items, f"{service}: {secret['secretName']} mounts every key; list the ones used"
        for item in items:
            path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
            files[path] = (secret["secretName"], item["key"])
    return files


#: What each Secret's key holds, for the settings to read: values the services accept outside
#: development, in the shape the real ones have.
SECRET_VALUES = {
    ("kairos-secrets", "service-token"): secrets.token_urlsafe(32),
    ("kairos-secrets", "secret-key"): secrets.token_urlsafe(32),
    ("kairos-secrets", "console-secret"): secrets.token_urlsafe(32),
    # What CloudNativePG writes under `uri` in <cluster>-app.
    ("kairos-db-app", "uri"): "postgresql://kairos:pw@kairos-db-rw.kairos:5432/kairos",
    ("kairos-media-s3", "access-key-id"): "AKIA" + secrets.token_hex(8).upper(),
    ("kairos-media-s3", "secret-access-key"): secrets.token_urlsafe(30),
}


def pod_environ(documents: list[Document], service: str, root: Path) -> dict[str, str]:
    """The service's environment with its Secret files written under `root` where the pod
    would see them: a `*_FILE` variable that names a path no Secret is mounted at names a file
    that does not exist, and the settings refuse it."""
    for path, key in secret_files(documents, service).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(SECRET_VALUES[key] + "\n")
    return {
        name: str(root / value.lstrip("/")) if name.endswith("_FILE") else value
        for name, value in env_of(container_of(documents, service)).items()
    }


@pytest.mark.parametrize("service", SETTINGS)
def test_each_service_starts_with_its_environment_and_reads_every_variable(
    built: list[Document], service: str, tmp_path: Path
) -> None:
    environ = RecordingEnviron(pod_environ(built, service, tmp_path))

    settings = SETTINGS[service](environ)

    unread = set(environ) - environ.asked
    assert not unread, f"{service} is given variables its settings never read: {sorted(unread)}"
    common: CommonSettings = settings.common
    assert common.environment == "production"
    assert common.require_service_token() == SECRET_VALUES[("kairos-secrets", "service-token")]
    if service == "api":
        assert common.database_url == SECRET_VALUES[("kairos-db-app", "uri")]
        assert load_cipher(common.secret_key).key_ids


def test_the_variable_check_sees_a_variable_nothing_reads() -> None:
    environ = RecordingEnviron({"KAIROS_ENV": "development", "KAIROS_SCHEDULER_TICKS": "1"})
    SchedulerSettings.from_env(environ)
    assert set(environ) - environ.asked == {"KAIROS_SCHEDULER_TICKS"}


def test_a_file_variable_pointing_past_its_mount_stops_the_service(
    built: list[Document], tmp_path: Path
) -> None:
    documents = copy.deepcopy(built)
    container = container_of(documents, "scheduler")
    for item in container["env"]:
        if item["name"] == "KAIROS_SERVICE_TOKEN_FILE":
            item["value"] = "/run/secrets/kairos/token"  # the key is service-token
    with pytest.raises(SettingsError, match="KAIROS_SERVICE_TOKEN_FILE"):
        SchedulerSettings.from_env(pod_environ(documents, "scheduler", tmp_path))


@pytest.mark.parametrize("service", SETTINGS)
def test_every_secret_file_is_read_and_only_the_api_sees_the_database_and_key(
    built: list[Document], service: str
) -> None:
    files = secret_files(built, service)
    env = env_of(container_of(built, service))
    named = {value for name, value in env.items() if name.endswith("_FILE")}
    assert set(files) == named, f"{service}: mounted {sorted(files)}, read {sorted(named)}"
    keys = set(files.values())
    assert ("kairos-secrets", "service-token") in keys
    sees_api_secrets = {("kairos-secrets", "secret-key"), ("kairos-db-app", "uri")} & keys
    assert bool(sees_api_secrets) == (service == "api"), f"{service}: {sees_api_secrets}"
    # Secrets go in files, never in the environment, where `kubectl describe` shows them.
    for name, value in env.items():
        assert not re.search(r"SECRET|TOKEN|PASSWORD|DATABASE_URL", name) or name.endswith(
            "_FILE"
        ), f"{service}: {name}={value!r}"


def test_the_secrets_named_are_the_ones_documented_or_made_by_cloudnative_pg() -> None:
    documents = build(K8S / "cloudnative-pg")
    example = {d["metadata"]["name"]: d for d in load_documents(SECRETS_EXAMPLE)}
    (cluster,) = only(documents, "Cluster")
    made_by_operator = {(f"{cluster['metadata']['name']}-app", "uri")}
    for service in IMAGES:
        for secret, key in secret_files(documents, service).values():
            documented = secret in example and key in example[secret]["stringData"]
            assert documented or (secret, key) in made_by_operator, f"{service}: {secret}/{key}"
    assert (f"{cluster['metadata']['name']}-app", "uri") in {
        k for s in SETTINGS for k in secret_files(documents, s).values()
    }
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "kairos", "owner": "kairos"}
    for document in example.values():
        assert kubernetes_errors(document, KUBERNETES_VERSIONS[0]) == []
    # Nothing applies the example's placeholders by accident: no kustomization lists the file.
    for overlay in (*OVERLAYS, "base"):
        listed = yaml.safe_load((K8S / overlay / "kustomization.yaml").read_text())["resources"]
        assert SECRETS_EXAMPLE.name not in listed


def test_the_example_secrets_are_placeholders_the_services_refuse() -> None:
    example = {d["metadata"]["name"]: d for d in load_documents(SECRETS_EXAMPLE)}
    values = example["kairos-secrets"]["stringData"]
    common = CommonSettings.from_env({"KAIROS_SERVICE_TOKEN": values["service-token"]})
    with pytest.raises(SettingsError, match="publicly known"):
        common.require_service_token()
    with pytest.raises(SettingsError):
        load_cipher(values["secret-key"])
    with pytest.raises(SettingsError, match="public placeholder"):
        ConsoleSettings.from_env({"KAIROS_CONSOLE_SECRET": values["console-secret"]})


# --- ports, probes, selectors ------------------------------------------------------------------


@pytest.mark.parametrize("service", SETTINGS)
def test_probes_ask_the_port_the_service_listens_on_and_its_service_forwards(
    built: list[Document], service: str
) -> None:
    container = container_of(built, service)
    env = env_of(container)
    host, _, port = env[LISTEN_VARIABLES[service]].rpartition(":")
    assert host == "0.0.0.0", f"{service} listens on {host} only: probes could not reach it"
    assert env["KAIROS_METRICS_HOST"] == "0.0.0.0", f"{service}: metrics unreachable"
    for probe in ("startupProbe", "readinessProbe"):
        grpc = container[probe]["grpc"]
        assert grpc["port"] == int(port), f"{service} {probe} asks {grpc['port']}, not {port}"
        assert grpc.get("service", "") == "", "the whole server's health"
    # Liveness only asks that the server accepts connections (why: the manifests' comment).
    assert container["livenessProbe"]["tcpSocket"]["port"] == int(port), service
    assert port_named(container, "grpc") == int(port)
    assert port_named(container, "metrics") == int(env["KAIROS_METRICS_PORT"])
    (kube_service,) = only(built, "Service", f"kairos-{service}")
    targets = {
        p["name"]: port_named(container, p["targetPort"]) for p in kube_service["spec"]["ports"]
    }
    assert targets == {"grpc": int(port), "metrics": int(env["KAIROS_METRICS_PORT"])}


def pod_labels(deployment: Document) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def selected(documents: list[Document], selector: Mapping[str, str]) -> list[str]:
    """The Deployments whose pods carry every label of `selector`."""
    return [
        d["metadata"]["name"]
        for d in only(documents, "Deployment")
        if selector.items() <= pod_labels(d).items()
    ]


def test_services_and_disruption_budgets_select_one_deployments_pods(
    built: list[Document],
) -> None:
    for deployment in only(built, "Deployment"):
        name = deployment["metadata"]["name"]
        matched = deployment["spec"]["selector"]["matchLabels"]
        assert matched.items() <= pod_labels(deployment).items(), name
        (budget,) = [
            b
            for b in only(built, "PodDisruptionBudget")
            if selected(built, b["spec"]["selector"]["matchLabels"]) == [name]
        ]
        services = [
            s["metadata"]["name"]
            for s in only(built, "Service")
            if selected(built, s["spec"]["selector"]) == [name]
        ]
        assert budget["spec"]["minAvailable"] == 1
        # The api has a headless Service beside its own, for its callers' round robin.
        assert services == ([name, f"{name}-pods"] if name == "kairos-api" else [name])


def test_each_deployment_has_one_autoscaler_that_owns_its_count_and_leaves_a_pod_to_drain(
    built: list[Document],
) -> None:
    """The api and scheduler scale on CPU (HorizontalPodAutoscaler), the publisher on
    JetStream lag (KEDA, which makes its own autoscaler: a second one would fight it)."""
    deployments = {d["metadata"]["name"]: d for d in only(built, "Deployment")}
    scalers: dict[str, list[tuple[str, int]]] = {name: [] for name in deployments}
    for hpa in only(built, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] in deployments, f"HPA {hpa['metadata']['name']}: {target}"
        scalers[target["name"]].append(("HorizontalPodAutoscaler", hpa["spec"]["minReplicas"]))
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    for scaled in only(built, "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target["name"] in deployments, f"ScaledObject: {target}"
        scalers[target["name"]].append(("ScaledObject", scaled["spec"]["minReplicaCount"]))
    assert {name: [kind for kind, _ in found] for name, found in scalers.items()} == {
        "kairos-api": ["HorizontalPodAutoscaler"],
        "kairos-scheduler": ["HorizontalPodAutoscaler"],
        "kairos-publisher": ["ScaledObject"],
        "kairos-console": ["HorizontalPodAutoscaler"],
    }
    for name, [(_, minimum)] in scalers.items():
        assert "replicas" not in deployments[name]["spec"], f"{name}: apply would reset it"
        (budget,) = [
            b
            for b in only(built, "PodDisruptionBudget")
            if selected(built, b["spec"]["selector"]["matchLabels"]) == [name]
        ]
        assert budget["spec"]["minAvailable"] < minimum, f"{name}: a node could never drain"


def test_keda_watches_every_consumer_the_publisher_creates(built: list[Document]) -> None:
    (scaled,) = only(built, "ScaledObject")
    chart = yaml.safe_load(NATS_CHART_VALUES.read_text())
    values = yaml.safe_load(NATS_VALUES.read_text())
    monitor_port = values["config"]["monitor"].get("port", chart["config"]["monitor"]["port"])
    namespace = scaled["metadata"]["namespace"]
    watched = set()
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "nats-jetstream"
        metadata = trigger["metadata"]
        # The chart's headless Service (`<release>-headless`): KEDA reaches each server there.
        endpoint = f"{NATS_RELEASE}-headless.{namespace}.svc.cluster.local:{monitor_port}"
        assert metadata["natsServerMonitoringEndpoint"] == endpoint
        assert metadata["account"] == "$G"  # NATS without accounts
        assert int(metadata["lagThreshold"]) > 0
        watched.add((metadata["stream"], metadata["consumer"]))
    consumers = {(DUE_STREAM, durable_name(platform)) for platform in Platform}
    consumers.add((EVENTS_STREAM, WEBHOOKS_DURABLE))
    assert watched == consumers


@pytest.mark.parametrize("service", ["scheduler", "publisher"])
def test_the_scheduler_and_publisher_reach_every_api_pod_through_the_headless_service(
    built: list[Document], service: str
) -> None:
    (pods,) = only(built, "Service", "kairos-api-pods")
    assert pods["spec"]["clusterIP"] == "None"  # the name resolves to every pod: round robin
    (deployment,) = only(built, "Deployment", "kairos-api")
    assert pods["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (grpc,) = [p for p in pods["spec"]["ports"] if p["name"] == "grpc"]
    target = env_of(container_of(built, service))["KAIROS_API_TARGET"]
    assert target == f"dns:///kairos-api-pods:{grpc['port']}"


# --- pods --------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SETTINGS)
def test_pods_run_unprivileged_with_sized_resources_and_time_to_finish(
    built: list[Document], service: str
) -> None:
    spec = deployment_of(built, service)["spec"]["template"]["spec"]
    container = container_of(built, service)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfiles' user
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}, service
    assert set(resources["limits"]) == {"memory"}, f"{service}: no CPU limit (README)"
    grace = float(env_of(container)["KAIROS_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > grace
    assert not container["image"].endswith(":latest")


def readme_sizes() -> dict[str, tuple[str, str, str]]:
    """The README's sizes table: process -> (CPU request, memory request, memory limit)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Running past one machine\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"\d+m", cells[3]):
            memory_request, _, memory_limit = cells[5].partition(" / ")
            rows[cells[0]] = (cells[3], memory_request, memory_limit)
    return rows


def sizes(resources: Document) -> tuple[str, str, str]:
    requests, limits = resources["requests"], resources["limits"]
    return (requests["cpu"], requests["memory"], limits["memory"])


def test_the_console_reaches_only_the_api_with_its_cookie_secret_from_a_file(
    built: list[Document], tmp_path: Path
) -> None:
    container = container_of(built, "console")
    env = env_of(container)
    assert env["KAIROS_API_TARGET"] == "dns:///kairos-api-pods:50051"
    assert secret_files(built, "console") == {
        "/run/secrets/kairos/console-secret": ("kairos-secrets", "console-secret")
    }
    assert not {"KAIROS_DATABASE_URL_FILE", "KAIROS_SERVICE_TOKEN_FILE", "KAIROS_NATS_URL"} & set(
        env
    )
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert port_named(container, "http") == int(env["KAIROS_CONSOLE_ADDR"].rpartition(":")[2])
    environ = RecordingEnviron(pod_environ(built, "console", tmp_path))
    settings = ConsoleSettings.from_env(environ)
    assert not set(environ) - environ.asked
    assert settings.secure_cookies
    assert settings.cookie_key


def test_the_readme_gives_the_sizes_the_manifests_ask_for() -> None:
    documents = build(K8S / "cloudnative-pg")
    (cluster,) = only(documents, "Cluster")
    nats = yaml.safe_load(NATS_VALUES.read_text())
    expected = {
        service: sizes(container_of(documents, service)["resources"]) for service in SETTINGS
    }
    expected["console"] = sizes(container_of(documents, "console")["resources"])
    expected["nats-server, each"] = sizes(nats["container"]["resources"])
    expected["PostgreSQL, primary"] = sizes(cluster["spec"]["resources"])
    assert readme_sizes() == expected
