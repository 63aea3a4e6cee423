"""Every values variant rendered by the real Helm engine: lint, strict Kubernetes validation, safety."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import (
    CHART,
    K8S_VERSION,
    NAMESPACE,
    VARIANT_IDS,
    VARIANTS,
    assert_pod_secure,
    by_kind,
    controller_config,
    helm,
    named,
    pod_specs,
    render_files,
    rendered_variant,
    variant_values,
)

SYNTHTUNE_COMPONENTS = {"controller", "dataprep", "generator", "trainer", "evaluator"}
HEALTH_SERVICES = {
    "controller": "synthtune.v1.PipelineService",
    "dataprep": "synthtune.v1.DataPrepService",
    "generator": "synthtune.v1.GeneratorService",
    "trainer": "synthtune.v1.TrainerService",
    "evaluator": "synthtune.v1.EvaluatorService",
}
# The Role's whole scope: (apiGroup, resource) -> verbs. Nothing else, nowhere else.
ROLE_SCOPE = {
    ("batch", "jobs"): ["create", "delete", "get", "list", "watch"],
    ("", "pods"): ["get", "list", "watch"],
    ("", "pods/log"): ["get"],
    ("", "events"): ["list"],  # why a Job got no pod (quota, admission)
    ("coordination.k8s.io", "leases"): ["create"],
    ("coordination.k8s.io", "leases/{lease}"): ["get", "patch", "update"],  # only the controller's own Lease
}
RAYJOBS = {("ray.io", "rayjobs"): ["create", "delete", "get", "list", "watch"]}


def component(obj: dict) -> str:
    return obj["metadata"]["labels"].get("app.kubernetes.io/component", "")


def role_rules(role: dict) -> dict[tuple[str, str], list[str]]:
    rules: dict[tuple[str, str], list[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule  # no nonResourceURLs tricks
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for name in rule.get("resourceNames") or [None]:
                    rules[(group, f"{resource}/{name}" if name else resource)] = sorted(rule["verbs"])
    return rules


@pytest.mark.parametrize("path", VARIANTS, ids=VARIANT_IDS)
def test_every_variant_lints_strictly(path):
    report = helm.lint(str(CHART), variant_values(path.stem), strict=True, namespace=NAMESPACE, kube_version=f"v{K8S_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_every_rendered_object_is_valid_kubernetes(name):
    objects = rendered_variant(name)
    assert len(objects) >= 10
    for obj in objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD kubernetes-validate has no schema for: test_service_monitor_scrapes_every_service checks it
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_security_defaults_on_every_pod(name):
    specs = pod_specs(rendered_variant(name))
    assert len(specs) >= 3
    for where, spec in specs:
        assert_pod_secure(where, spec)


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_grpc_probes_on_every_synthtune_deployment(name):
    deployments = by_kind(rendered_variant(name), "Deployment")
    assert {component(d) for d in deployments} >= {"controller"}
    for d in deployments:
        c = d["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in c, (d["metadata"]["name"], probe)
        if component(d) in SYNTHTUNE_COMPONENTS:
            tls = variant_values(name).get("tls", {}).get("enabled", False)
            probe_port = 50052 if tls else 50051  # with TLS: the plaintext health-only port (kubelet probes cannot do TLS)
            assert c["startupProbe"]["grpc"]["port"] == probe_port
            assert c["readinessProbe"]["grpc"] == {"port": probe_port, "service": HEALTH_SERVICES[component(d)]}
            assert c["livenessProbe"]["grpc"]["port"] == probe_port
            assert c["command"] == ["synthtune"] and c["args"][:2] == ["serve", component(d)]
            assert c["args"][c["args"].index("--metrics-port") + 1] == "9090"
            assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 50051, "metrics": 9090, **({"health": 50052} if tls else {})}
            if tls:
                assert c["args"][c["args"].index("--health-port") + 1] == "50052" and "--tls-cert" in c["args"]


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_every_service_selects_a_deployment(name):
    objects = rendered_variant(name)
    for svc in by_kind(objects, "Service"):
        selector = svc["spec"]["selector"]
        matches = [d for d in by_kind(objects, "Deployment")
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, svc["metadata"]["name"]
        ports = {p["name"] for p in matches[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_role_is_namespaced_and_exactly_scoped(name):
    objects = rendered_variant(name)
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    (role,) = by_kind(objects, "Role")
    lease = controller_config(objects)["leader"]["name"]
    expected = {(group, resource.format(lease=lease)): verbs for (group, resource), verbs in ROLE_SCOPE.items()}
    if variant_values(name).get("gpuJobs", {}).get("rayJobs", {}).get("enabled"):
        expected.update(RAYJOBS)
    assert role_rules(role) == expected
    assert "namespace" not in role["metadata"] or role["metadata"]["namespace"] == NAMESPACE
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE
    # Only the controller runs under the bound account and mounts a token.
    for where, spec in pod_specs(objects):
        if where.endswith("-controller") and where.startswith("Deployment/"):
            assert spec["serviceAccountName"] == subject["name"] and spec["automountServiceAccountToken"] is True
        else:
            assert spec.get("serviceAccountName") in (None, "default") and spec["automountServiceAccountToken"] is False, where


def test_ray_jobs_only_when_enabled():
    assert RAYJOBS.keys() <= role_rules(by_kind(rendered_variant("gpu-teacher-values"), "Role")[0]).keys()
    assert not RAYJOBS.keys() & role_rules(by_kind(rendered_variant("default-values"), "Role")[0]).keys()
    assert controller_config(rendered_variant("gpu-teacher-values"))["kubernetes"]["ray"]["enabled"] == "auto"
    assert controller_config(rendered_variant("default-values"))["kubernetes"]["ray"]["enabled"] == "never"


def test_gpu_job_config_targets_a100_nodes_by_default():
    objects = rendered_variant("default-values")
    kube = controller_config(objects)["kubernetes"]
    assert kube["gpus"] == {"generate": 1, "train": 1, "evaluate": 1}
    assert kube["gpu_resource"] == "nvidia.com/gpu"
    assert kube["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert kube["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (kube["backoff_limit"], kube["active_deadline_s"], kube["ttl_after_finished_s"]) == (3, 86400, 86400)
    assert kube["namespace"] == NAMESPACE and kube["service_account"] == "synthtune-job"
    assert kube["images"]["train"] == "ghcr.io/synthtune/synthtune-trainer:0.1.0"
    assert kube["images"]["evaluate"] == "ghcr.io/synthtune/synthtune-evaluator:0.1.0"
    assert kube["env"]["SYNTHTUNE_S3_ENDPOINT"] == "https://s3.eu-central-1.amazonaws.com"
    assert kube["env_from_secrets"] == ["synthtune-s3"]
    job_sa = named(objects, "ServiceAccount", "-job")
    assert job_sa["automountServiceAccountToken"] is False


def test_gpu_job_config_follows_values():
    kube = controller_config(rendered_variant("gpu-teacher-values"))["kubernetes"]
    assert kube["gpus"]["train"] == 2
    assert kube["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in kube["tolerations"]
    assert kube["images"]["train"] == "registry.example.internal/ml/synthtune-trainer:0.1.0"
    assert kube["image_pull_secrets"] == ["registry-creds"]
    assert kube["env_from_secrets"] == ["synthtune-s3", "synthtune-teacher"]


def test_vllm_teacher_requests_gpus_on_gpu_nodes():
    objects = rendered_variant("gpu-teacher-values")
    teacher = named(objects, "Deployment", "-teacher")
    spec = teacher["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["image"].startswith("vllm/vllm-openai:v")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 4 and c["resources"]["requests"]["nvidia.com/gpu"] == 4
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    args = c["args"]
    assert args[0] == "/models/llama-3.1-70b-instruct" and "--enable-lora" in args
    assert args[args.index("--tensor-parallel-size") + 1] == "4" and args[-2:] == ["--max-model-len", "8192"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True and "/dev/shm" in mounts
    assert teacher["spec"]["strategy"] == {"type": "Recreate"}
    # Pipelines in this cluster talk to it by default.
    defaults = yaml.safe_load(named(objects, "ConfigMap", "-config")["data"]["pipeline-defaults.yaml"])
    assert defaults["generate"]["teacher"]["base_url"] == "http://synthtune-teacher:8000/v1"
    assert defaults["generate"]["teacher"]["model"] == "llama-70b"


def test_no_teacher_or_minio_unless_enabled():
    objects = rendered_variant("default-values")
    assert {component(d) for d in by_kind(objects, "Deployment")} == {"controller", "dataprep", "generator"}


def test_dev_minio_is_wired_to_the_store():
    objects = rendered_variant("dev-minio-values")
    minio = named(objects, "Deployment", "-minio")
    env = {e["name"]: e for e in minio["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"] == {"name": "synthtune-s3", "key": "AWS_ACCESS_KEY_ID"}
    controller = named(objects, "Deployment", "-controller")
    cenv = {e["name"]: e for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert cenv["SYNTHTUNE_S3_ENDPOINT"]["value"] == "http://synthtune-minio:9000"
    assert controller_config(objects)["kubernetes"]["env"]["SYNTHTUNE_S3_ENDPOINT"] == "http://synthtune-minio:9000"


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_services_get_store_and_secrets_by_reference(name):
    values = variant_values(name)
    for d in by_kind(rendered_variant(name), "Deployment"):
        if component(d) not in SYNTHTUNE_COMPONENTS:
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        assert env["SYNTHTUNE_STORE"]["value"] == values["store"]["uri"]
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == values["store"]["s3"]["existingSecret"]
        assert env["SYNTHTUNE_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": values["auth"]["existingSecret"], "key": "SYNTHTUNE_AUTH_TOKEN"}
        teacher_secret = values.get("teacher", {}).get("existingSecret")
        assert c.get("envFrom", []) == ([{"secretRef": {"name": teacher_secret}}] if teacher_secret else [])


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_controller_config_is_what_the_controller_reads(name):
    config_module = pytest.importorskip("synthtune.controller.config")
    data = controller_config(rendered_variant(name))
    config = config_module.ControllerConfig.model_validate(data)
    values = variant_values(name)
    for kind, runner in values.get("runners", {}).items():
        assert config.runners[kind] == runner
    for kind, target in config.services.items():
        assert target.endswith(":50051") and config.runners[kind] == "grpc"


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_every_synthtune_container_command_is_one_the_cli_accepts(name):
    """The chart's args parse with the real CLI (no pod would crash-loop on an unknown option)."""
    import typer

    from synthtune.cli.main import app

    cli = typer.main.get_command(app)
    checked = 0
    for d in by_kind(rendered_variant(name), "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c.get("command") != ["synthtune"]:
                continue
            ctx = cli.make_context("synthtune", list(c["args"]), resilient_parsing=False)
            sub = cli.get_command(ctx, c["args"][0])
            assert sub is not None, c["args"]
            sub.make_context(c["args"][0], list(c["args"][1:]), parent=ctx)  # raises on an unknown option or bad value
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_controller_config_builds_valid_jobs_for_every_stage(name):
    """What the rendered controller.yaml makes the controller submit is valid, and its entry modules exist."""
    import importlib

    config_module = pytest.importorskip("synthtune.controller.config")
    from synthtune.controller.manifests import job_manifest

    config = config_module.ControllerConfig.model_validate(controller_config(rendered_variant(name)))
    for stage in ("prepare", "generate:record_qa", "train:record_qa", "evaluate"):
        job = job_manifest(config.kubernetes, name="synthtune-x-1", run_id="r-1", stage=stage, request_uri="s3://b/p/requests/x.json")
        container = job["spec"]["template"]["spec"]["containers"][0]
        importlib.import_module(container["command"][2])
        assert container["image"] == config.kubernetes.images[stage.split(":")[0]]
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == config.kubernetes.service_account


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_example_pipeline_is_a_valid_spec(name):
    from synthtune.spec import load_spec_text

    cm = named(rendered_variant(name), "ConfigMap", "-config")
    spec = load_spec_text(cm["data"]["pipeline-example.yaml"], "pipeline-example.yaml")
    defaults = yaml.safe_load(cm["data"]["pipeline-defaults.yaml"])
    assert spec.train.method == defaults["train"]["method"]
    assert spec.generate.teacher.backend == defaults.get("generate", {}).get("teacher", {}).get("backend", "transformers")


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_records_stay_in_the_cluster_by_default(name):
    """No variant's example pipeline sends records outside: the teacher is in-cluster vLLM or in process."""
    from synthtune.spec import load_spec_text
    from synthtune.spec.dataflow import data_destinations

    objects = rendered_variant(name)
    spec = load_spec_text(named(objects, "ConfigMap", "-config")["data"]["pipeline-example.yaml"], "pipeline-example.yaml")
    assert [d for d in data_destinations(spec) if d["external"]] == []
    assert controller_config(objects)["allow_external_endpoints"] is False
    if variant_values(name).get("vllmTeacher", {}).get("enabled"):
        assert spec.generate.teacher.base_url.endswith("-teacher:8000/v1")


def test_an_external_teacher_needs_an_explicit_value():
    from deploy_helpers import render

    values = variant_values("default-values")
    values["pipelineDefaults"] = {"generate": {"teacher": {"backend": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}}}
    with pytest.raises(helm.HelmRenderError, match=r"pipelineDefaults.generate.teacher sends the records to https://api.openai.com/v1, "
                                                   r"outside the cluster: set teacher.allowExternal=true"):
        render(values)
    values["teacher"] = {"allowExternal": True}
    objects = render(values)
    assert controller_config(objects)["allow_external_endpoints"] is True
    in_cluster = variant_values("default-values")
    in_cluster["pipelineDefaults"] = {"generate": {"teacher": {"backend": "openai", "base_url": "http://llm.models.svc:8000/v1"}}}
    assert render(in_cluster)


def test_notes_say_where_the_records_go():
    notes = render_files(variant_values("default-values"))["templates/NOTES.txt"]
    assert "Teacher:    none configured" in notes and "nothing leaves the cluster" in notes
    notes = render_files(variant_values("gpu-teacher-values"))["templates/NOTES.txt"]
    assert "Teacher:    in-cluster vLLM" in notes


def test_service_monitor_scrapes_every_service():
    objects = rendered_variant("platform-values")
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]
    components = set(selector["matchExpressions"][0]["values"])
    assert {"key": "synthtune.io/headless", "operator": "DoesNotExist"} in selector["matchExpressions"]
    scraped = [s for s in by_kind(objects, "Service")
               if all(s["metadata"]["labels"].get(k) == v for k, v in selector["matchLabels"].items())
               and s["metadata"]["labels"]["app.kubernetes.io/component"] in components
               and "synthtune.io/headless" not in s["metadata"]["labels"]]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped} == {"controller", "dataprep", "generator"}
    assert all("metrics" in {p["name"] for p in s["spec"]["ports"]} for s in scraped)
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not by_kind(rendered_variant("default-values"), "ServiceMonitor")


def test_a_budget_for_every_deployment_with_replicas():
    objects = rendered_variant("platform-values")
    budgets = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]: b for b in by_kind(objects, "PodDisruptionBudget")}
    replicated = {component(d) for d in by_kind(objects, "Deployment") if d["spec"]["replicas"] > 1}
    assert set(budgets) == replicated == {"controller", "dataprep", "generator"}
    assert all(b["spec"]["maxUnavailable"] == 1 for b in budgets.values())
    assert not by_kind(rendered_variant("default-values"), "PodDisruptionBudget")


def test_platform_values_reach_every_pod():
    """Each component's placement, priority, labels, annotations, env and volumes land in its pod spec."""
    values = variant_values("platform-values")
    objects = rendered_variant("platform-values")
    sections = {"controller": values["controller"], "dataprep": values["stages"]["dataprep"],
                "generator": values["stages"]["generator"], "teacher": values["vllmTeacher"], "minio": values["minio"]}
    for comp, v in sections.items():
        (deploy,) = [d for d in by_kind(objects, "Deployment") if component(d) == comp]
        tmpl = deploy["spec"]["template"]
        spec, container = tmpl["spec"], tmpl["spec"]["containers"][0]
        for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName"):
            if key in v:
                assert spec[key] == v[key], (comp, key)
        for key, value in v.get("podLabels", {}).items():
            assert tmpl["metadata"]["labels"][key] == value, comp
        assert tmpl["metadata"]["labels"]["app.kubernetes.io/component"] == comp
        for key, value in v.get("podAnnotations", {}).items():
            assert tmpl["metadata"]["annotations"][key] == value, comp
        for env in v.get("extraEnv", []):
            assert env in container["env"], comp
        for vol in v.get("extraVolumes", []):
            assert vol in spec["volumes"], comp
        for mount in v.get("extraVolumeMounts", []):
            assert mount in container["volumeMounts"], comp


def test_gpu_job_values_reach_the_jobs():
    from synthtune.controller import config as config_module
    from synthtune.controller.manifests import job_manifest

    g = variant_values("platform-values")["gpuJobs"]
    config = config_module.ControllerConfig.model_validate(controller_config(rendered_variant("platform-values")))
    job = job_manifest(config.kubernetes, name="synthtune-x-1", run_id="r-1", stage="train:record_qa", request_uri="s3://b/p/requests/x.json")
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-a100"
    assert job["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-a100"
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "mlops"
    assert job["spec"]["template"]["metadata"]["annotations"]["example.com/cost-center"] == "ml"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"]["requests"]["ephemeral-storage"] == "450Gi"
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if "emptyDir" in v}
    assert sizes == {"tmp": "50Gi", "cache": "400Gi", "shm": "32Gi"}
    assert spec["affinity"] == g["affinity"] and spec["topologySpreadConstraints"] == g["topologySpreadConstraints"]
    assert spec["priorityClassName"] == "gpu-batch"
    assert g["extraEnv"][0] in c["env"] and g["extraVolumeMounts"][0] in c["volumeMounts"] and g["extraVolumes"][0] in spec["volumes"]
    assert {"name": "SYNTHTUNE_MODEL_CACHE", "value": "/cache/models"} in c["env"]  # store models stream into the sized /cache


def test_config_change_rolls_the_controller():
    a = named(rendered_variant("default-values"), "Deployment", "-controller")
    values = variant_values("default-values")
    values["gpuJobs"] = {"gpus": {"train": 2}}
    from deploy_helpers import render

    b = named(render(values), "Deployment", "-controller")
    key = "checksum/config"
    assert a["spec"]["template"]["metadata"]["annotations"][key] != b["spec"]["template"]["metadata"]["annotations"][key]


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_helm_test_hook_checks_the_controller_health(name):
    (pod,) = by_kind(rendered_variant(name), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["args"]
    controller = named(rendered_variant(name), "Service", "-controller")["metadata"]["name"]
    assert args[1:3] == [f"{controller}:50051", "synthtune.v1.PipelineService"]


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_network_policies_admit_the_controller(name):
    objects = rendered_variant(name)
    policies = by_kind(objects, "NetworkPolicy")
    if not variant_values(name).get("networkPolicy", {}).get("enabled", True):
        assert policies == []
        return
    stage_deployments = [d for d in by_kind(objects, "Deployment") if component(d) in SYNTHTUNE_COMPONENTS - {"controller"}]
    guarded = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p for p in policies}
    for d in stage_deployments:
        grpc_rule = guarded[component(d)]["spec"]["ingress"][0]
        assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
        assert grpc_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "controller"
    assert "controller" not in guarded
    for target in ("teacher", "minio"):  # open to synthtune pods only, not to every pod of the namespace
        if target in guarded:
            (source,) = guarded[target]["spec"]["ingress"][0]["from"]
            assert source["podSelector"]["matchExpressions"] == [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["synthtune", "synthtune"]}], source


def test_ray_pods_answer_only_each_other_and_the_operator():
    policy = named(rendered_variant("gpu-teacher-values"), "NetworkPolicy", "-ray")
    ray_pods = {"app.kubernetes.io/name": "synthtune", "app.kubernetes.io/managed-by": "synthtune-controller",
                "app.kubernetes.io/component": "train"}
    assert policy["spec"]["podSelector"]["matchLabels"] == ray_pods
    peers, operator = policy["spec"]["ingress"]
    assert peers == {"from": [{"podSelector": {"matchLabels": ray_pods}}]}
    assert operator["ports"] == [{"port": 8265, "protocol": "TCP"}]
    assert operator["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}}}]
    assert not [p for p in by_kind(rendered_variant("default-values"), "NetworkPolicy") if p["metadata"]["name"].endswith("-ray")]


def test_in_cluster_teacher_demands_the_api_key_that_pipelines_send():
    objects = rendered_variant("gpu-teacher-values")
    (c,) = named(objects, "Deployment", "-teacher")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "synthtune-teacher", "key": "VLLM_API_KEY"}
    defaults = yaml.safe_load(named(objects, "ConfigMap", "-config")["data"]["pipeline-defaults.yaml"])
    assert defaults["generate"]["teacher"]["api_key_env"] == "VLLM_API_KEY"


def test_notes_say_how_to_submit_a_run():
    notes = render_files(variant_values("default-values"))["templates/NOTES.txt"]
    for needle in ("helm test synthtune -n ml", "port-forward svc/synthtune-controller 50051:50051",
                   "synthtune submit pipeline.yaml --controller localhost:50051", "synthtune runs watch RUN_ID",
                   "synthtune report RUN_ID --store s3://synthtune-artifacts/prod"):
        assert needle in notes, needle
