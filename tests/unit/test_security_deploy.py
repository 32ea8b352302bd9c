"""The manifests fail closed: every Secret a service reads is required, and what a service refuses to start
without (its `missing_credentials`) comes from a Secret in every overlay; nothing turns dev mode on."""

from __future__ import annotations

from typing import Any

from test_deploy import DOCKERFILE, K8S, _build, _container, _workloads, objs, overlay  # noqa: F401 (fixtures)

from services.console.config import ConsoleSettings
from services.ingest.config import IngestSettings


def _secret_refs(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})}


def test_no_secret_reference_is_optional(objs: tuple[dict[str, Any], ...]) -> None:  # noqa: F811
    for name, wl in _workloads(objs).items():
        for var, ref in _secret_refs(_container(wl)).items():
            assert not ref.get("optional", False), f"{name}: {var} must not be optional (fail closed)"


def test_what_a_service_refuses_to_start_without_comes_from_a_secret(objs: tuple[dict[str, Any], ...]) -> None:  # noqa: F811
    workloads = _workloads(objs)
    needed = {"ingest": IngestSettings(insecure_dev=False).missing_credentials(),
              "console": ConsoleSettings(insecure_dev=False).missing_credentials()}
    for service, missing in needed.items():
        refs = _secret_refs(_container(workloads[service]))
        for setting in missing:
            var = setting.split()[0]
            assert var in refs, f"{service}: {var} must come from a (required) Secret"


def test_nothing_deployed_runs_in_insecure_dev_mode() -> None:
    for path in [*K8S.rglob("*.yaml"), DOCKERFILE]:
        assert "TRIAGE_INSECURE_DEV" not in path.read_text(), f"{path} turns the insecure dev mode on"


def test_ingest_rate_limits_are_on(objs: tuple[dict[str, Any], ...]) -> None:  # noqa: F811
    env = {e["name"]: e.get("value") for e in _container(_workloads(objs)["ingest"]).get("env", [])}
    assert float(env["TRIAGE_RATE_LIMIT_PER_SECOND"]) > 0 and int(env["TRIAGE_RATE_LIMIT_BURST"]) >= 1


def test_prod_admits_ingest_and_console_only_from_the_ingress_controller_and_prometheus() -> None:
    policies = {o["metadata"]["name"]: o for o in _build("prod") if o["kind"] == "NetworkPolicy"}
    for name in ("ingest-ingress-api", "console-ingress-web"):
        sources = [src for rule in policies[name]["spec"]["ingress"] for src in rule.get("from", [None])]
        assert None not in sources, f"{name} admits every pod of every namespace"
        namespaces = {s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in sources}
        assert namespaces == {"ingress-nginx", "monitoring"}, name
    env = {e["name"]: e.get("value") for e in _container(_workloads(_build("prod"))["ingest"]).get("env", [])}
    assert env.get("TRIAGE_INGEST_TRUSTED_PROXIES"), "behind the ingress every client would be one address"
