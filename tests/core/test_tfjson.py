"""Reading auth policies out of Terraform JSON: references resolved the way the template resolver resolves
intrinsics, so the evaluator and the proof see what Terraform would apply."""

import json

import pytest

from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.policy import minify, service_auth_policy, service_network_auth_policy
from telemetry_shunt.core.routes import Pusher, default_routes
from telemetry_shunt.core.template import Environment
from telemetry_shunt.core.tfjson import TerraformResolver, is_terraform_json, lattice_policies
from telemetry_shunt.errors import ShuntError

PUSHER = Pusher.role("arn:aws-cn:iam::111111111111:role/agent")
SVC = "${aws_vpclattice_service.gateway.arn}"
SN = "${aws_vpclattice_service_network.network.arn}"
PARTITION = "${data.aws_partition.partition.partition}"


def tf_document(service_policy: str | None = None) -> dict:
    """What the Terraform flavour writes: policies as JSON strings holding Terraform interpolations."""
    svc_doc = service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[PUSHER], partition=PARTITION,
                                  service_network_arn=SN)
    sn_doc = service_network_auth_policy(pushers=[PUSHER], partition=PARTITION)
    return {
        "terraform": {"backend": {"local": {"path": "terraform.c.tfstate"}}},
        "data": {"aws_partition": {"partition": {}}},
        "resource": {
            "aws_vpclattice_service": {"gateway": {"name": "telemetry-gateway", "auth_type": "AWS_IAM"}},
            "aws_vpclattice_service_network": {"network": {"name": "telemetry", "auth_type": "AWS_IAM"}},
            "aws_vpclattice_service_network_service_association": {"assoc": {
                "service_identifier": "${aws_vpclattice_service.gateway.id}",
                "service_network_identifier": "${aws_vpclattice_service_network.network.id}"}},
            "aws_vpclattice_auth_policy": {
                "svc": {"resource_identifier": SVC, "policy": service_policy or minify(svc_doc)},
                "sn": {"resource_identifier": SN, "policy": minify(sn_doc)},
            },
        },
    }


def test_policies_resolve_to_what_the_core_builder_gives_for_the_concrete_arns():
    env = Environment(partition="aws-cn", region="cn-north-1", account="222222222222")
    lp = lattice_policies([tf_document()], env=env)
    assert lp.service_arn.startswith("arn:aws-cn:vpc-lattice:cn-north-1:222222222222:service/svc-")
    assert lp.service_network_arn.startswith("arn:aws-cn:vpc-lattice:cn-north-1:222222222222:servicenetwork/sn-")
    # Parity: resolving the Terraform references gives exactly the document core builds for concrete ARNs.
    assert lp.service_policy == service_auth_policy(service_arn=lp.service_arn, routes=default_routes(), pushers=[PUSHER],
                                                    partition="aws-cn", service_network_arn=lp.service_network_arn)
    assert lp.service_network_policy == service_network_auth_policy(pushers=[PUSHER], partition="aws-cn")


@pytest.mark.parametrize("who, method, path, allowed", [
    (PUSHER.value, "POST", "/metrics", True),
    (PUSHER.value, "POST", "/v1/traces", True),
    (PUSHER.value, "GET", "/metrics", False),
    (PUSHER.value, "POST", "/admin", False),
    ("arn:aws-cn:iam::333333333333:role/stranger", "POST", "/metrics", False),
    (None, "POST", "/metrics", False),
])
def test_the_evaluator_decides_on_the_resolved_terraform_policies(who, method, path, allowed):
    lp = lattice_policies([tf_document()], env=Environment(partition="aws-cn", region="cn-north-1"))
    d = evaluate(Request(who, method, path), service_arn=lp.service_arn, service_policy=lp.service_policy,
                 service_network_policy=lp.service_network_policy, service_network_arn=lp.service_network_arn)
    assert d.allowed is allowed, d.explanation


def test_escaped_interpolation_stays_literal_and_metadata_is_ignored():
    r = TerraformResolver({"resource": {}}, Environment())
    assert r.resolve({"//": {"metadata": "x"}, "v": "$${aws:PrincipalTag/team}"}) == {"v": "${aws:PrincipalTag/team}"}


@pytest.mark.parametrize("policy, match", [
    ('{"Resource": "${jsonencode(var.x)}"}', "not a plain reference"),
    ('{"Resource": "${aws_vpclattice_service.missing.arn}"}', "lacks"),
    ('{"Resource": "${aws_vpclattice_service.gateway.dns_entry}"}', "not modelled offline"),
    ('{"Resource": "${data.aws_region.nope.name}"}', "lacks"),
    ("not json", "is not JSON"),
])
def test_unresolvable_or_broken_policies_are_one_clear_error(policy, match):
    with pytest.raises(ShuntError, match=match):
        lattice_policies([tf_document(service_policy=policy)])


def test_recognises_terraform_json_and_requires_a_service():
    assert is_terraform_json(tf_document())
    assert not is_terraform_json({"Resources": {}})
    with pytest.raises(ShuntError, match="no aws_vpclattice_service"):
        lattice_policies([{"resource": {}}])
    doc = tf_document()
    doc["resource"]["aws_vpclattice_service"]["other"] = {"name": "other"}
    with pytest.raises(ShuntError, match="several Lattice services"):
        lattice_policies([doc])
    assert lattice_policies([doc], service="telemetry-gateway").service_logical_id == "aws_vpclattice_service.gateway"
    json.dumps(doc)  # the fixture itself is plain JSON, as cdk.tf.json is
