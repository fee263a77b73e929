"""The KubeRay manifests in deploy/kuberay: each `spec` valid against the RayService CRD's
schema (KubeRay's own file, unchanged, in tests/data/kuberay), with unknown fields refused (the
API server would drop them silently: a misspelt `maxReplica` would just not apply), and the
inline serve config one that Ray Serve and `vllama:build_app` accept."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "tests" / "data" / "kuberay" / "ray.io_rayservices.yaml"
RAYSERVICE = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
RAYCLUSTER = ROOT / "deploy" / "kuberay" / "raycluster.yaml"


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others, as the API
    server's pruning makes them in effect (unless marked to keep unknown fields)."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def spec_schemas() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "RayService"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    spec = _closed(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return {"RayService": spec, "RayCluster": spec["properties"]["rayClusterConfig"]}


def _errors(schema: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec)]


@pytest.mark.parametrize("path", [RAYSERVICE, RAYCLUSTER], ids=lambda p: p.name)
def test_the_manifest_matches_the_crd(path: Path, spec_schemas: dict[str, Any]) -> None:
    manifest = yaml.safe_load(path.read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["metadata"]["name"]
    assert _errors(spec_schemas[manifest["kind"]], manifest["spec"]) == []


def test_a_misspelt_or_mistyped_field_is_caught(spec_schemas: dict[str, Any]) -> None:
    spec = yaml.safe_load(RAYSERVICE.read_text())["spec"]
    misspelt = copy.deepcopy(spec)
    misspelt["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 4
    assert any("maxReplica" in e for e in _errors(spec_schemas["RayService"], misspelt))
    mistyped = copy.deepcopy(spec)
    mistyped["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    assert _errors(spec_schemas["RayService"], mistyped)


def test_the_serve_config_is_accepted_by_serve_and_build_app() -> None:
    from ray.serve.deployment import Application
    from ray.serve.schema import ServeDeploySchema

    from vllama.serve.app import build_app

    serve_config = yaml.safe_load(yaml.safe_load(RAYSERVICE.read_text())["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    (application,) = serve_config["applications"]
    assert application["import_path"] == "vllama:build_app"
    # The manifest's engines run on its GPU workers; this machine may have none.
    assert isinstance(build_app({**application["args"], "accelerator": "gpu"}), Application)


def test_both_manifests_describe_the_same_cluster() -> None:
    service = yaml.safe_load(RAYSERVICE.read_text())["spec"]["rayClusterConfig"]
    cluster = yaml.safe_load(RAYCLUSTER.read_text())["spec"]
    assert service == cluster
