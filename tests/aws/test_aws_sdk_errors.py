"""Errors botocore raises itself, before or instead of EC2's answer (botocore.exceptions.BotoCoreError:
ParamValidationError, EndpointConnectionError, credential errors...): each one line with the next step,
never a traceback."""

import gzip
import json
from pathlib import Path

import botocore
import botocore.exceptions
import pytest

from aws_world import REGION, aws_env, provider_for, shared_image, tagged
from web_page_server import web_page

ROOT = Path(__file__).resolve().parents[2]


def older_ec2_model(folder: Path) -> Path:
    """botocore's EC2 model as botocore 1.38.24 and older have it: DeregisterImage without
    DeleteAssociatedSnapshots and DeleteSnapshotResults (both arrive in botocore 1.38.25, whose .changes/1.38.25.json
    says "ec2: Enable the option to automatically delete underlying Amazon EBS snapshots when deregistering
    Amazon Machine Images (AMIs)").  Given as AWS_DATA_PATH, botocore loads it before its own (botocore/loaders.py:
    the customer's paths come first)."""
    data = Path(botocore.__file__).parent / "data" / "ec2" / "2016-11-15" / "service-2.json.gz"
    model = json.loads(gzip.decompress(data.read_bytes()))
    del model["shapes"]["DeregisterImageRequest"]["members"]["DeleteAssociatedSnapshots"]
    del model["shapes"]["DeregisterImageResult"]["members"]["DeleteSnapshotResults"]
    target = folder / "ec2" / "2016-11-15"
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(model))
    return folder


def test_images_prune_with_an_older_botocore_is_one_line_with_the_upgrade(lab, ec2, moto, tmp_path):
    """`inv images --prune` as a user with boto3 older than labvm's floor runs it: botocore itself refuses
    DeleteAssociatedSnapshots (ParamValidationError, not a ClientError)."""
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (instance,) = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tagged("aws")
    )["Instances"]
    images = [
        ec2.create_image(
            InstanceId=instance["InstanceId"], Name=f"labvm-aws-{n}", TagSpecifications=tagged("aws", kind="image")
        )["ImageId"]
        for n in range(2)
    ]
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="hedy", AWS_DATA_PATH=str(older_ec2_model(tmp_path / "models")))
    lab.write_hosts({"aws": {"provider": "aws", "region": REGION}})
    result = lab.inv("images", "--host", "aws", "--prune", "--keep", "1", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "botocore" in line]
    assert 'Unknown parameter in input: "DeleteAssociatedSnapshots"' in line
    assert f"botocore {botocore.__version__} lacks what labvm asks of AWS" in line
    assert line.endswith(".venv/bin/pip install -e '.[aws]' installs the botocore labvm needs (1.38.25 or later)")
    assert len(ec2.describe_images(ImageIds=images)["Images"]) == 2  # nothing was deregistered


def test_the_floor_in_pyproject_is_the_botocore_labvm_names():
    """pip installs what pyproject.toml asks for; labvm's message names the same version."""
    from labvm.providers.aws.api import BOTOCORE_NEEDED

    text = (ROOT / "pyproject.toml").read_text()
    needed = ".".join(map(str, BOTOCORE_NEEDED))
    # boto3 x.y.z requires botocore>=x.y.z (boto3's setup.py): one floor for both.
    assert text.count(f'"boto3>={needed}"') == 2 and '"boto3>=1.34"' not in text


@pytest.mark.parametrize(
    "raised,said",
    [
        (
            botocore.exceptions.ParamValidationError(
                report="Invalid length for parameter ImageId, value: 0, valid min length: 1"
            ),
            "AWS SDK refused describe_images: Parameter validation failed: Invalid length for parameter ImageId, "
            f"value: 0, valid min length: 1; labvm sent what botocore {botocore.__version__} refuses: please report "
            "it with this line",
        ),
        (
            botocore.exceptions.ReadTimeoutError(endpoint_url="https://ec2.us-west-2.amazonaws.com/"),
            'AWS did not answer: Read timeout on endpoint URL: "https://ec2.us-west-2.amazonaws.com/"; check the '
            "network (a VPN or proxy?) and try again",
        ),
        (
            botocore.exceptions.SSLError(endpoint_url="https://ec2.us-west-2.amazonaws.com/", error="self-signed"),
            "AWS did not answer: SSL validation failed for https://ec2.us-west-2.amazonaws.com/ self-signed; check the "
            "network (a VPN or proxy?) and try again",
        ),
        (
            botocore.exceptions.UnauthorizedSSOTokenError(),
            "AWS SDK: The SSO session associated with this profile has expired or is otherwise invalid. To refresh "
            "this SSO session run aws sso login with the corresponding profile.; `aws sts get-caller-identity` "
            "shows what boto3 finds (AWS_PROFILE picks the credentials)",
        ),
        (
            botocore.exceptions.CredentialRetrievalError(provider="custom-process", error_msg="exit 1"),
            "AWS SDK: Error when retrieving credentials from custom-process: exit 1; `aws sts get-caller-identity` "
            "shows what boto3 finds (AWS_PROFILE picks the credentials)",
        ),
    ],
)
def test_any_botocore_error_through_the_images_verb_is_one_line(lab, monkeypatch, raised, said):
    """botocore raises before or instead of EC2's answer: `inv images` (Provider.images) shows one line."""
    from labvm.errors import LabvmError

    provider = provider_for(lab)

    def describe_images(**kwargs):
        raise raised

    monkeypatch.setattr(provider.api.ec2, "describe_images", describe_images)
    with pytest.raises(LabvmError) as error:
        provider.images()
    assert str(error.value).startswith(said) and "\n" not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


@pytest.mark.parametrize("status", [200, 500])
def test_a_web_page_instead_of_ec2_is_one_line(lab, status):
    """A captive portal (200) or a proxy's error page (500, `<!doctype html>`: botocore's generic-error test
    looks for `<html>` only, parsers.py _is_generic_error_response) makes botocore raise ResponseParserError,
    which is no BotoCoreError: `inv images` says what it met, with the next step."""
    with web_page(status) as endpoint:
        lab.extra_env.update(aws_env(endpoint), LABVM_OWNER="hedy")
        lab.write_hosts({"aws": {"provider": "aws", "region": REGION}})
        result = lab.inv("images", "--host", "aws", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "labvm: AWS's answer to describe_images was not AWS's: a web page (a proxy or a Wi-Fi login page between "
        "this laptop and AWS?); open any web page to log in, check HTTPS_PROXY, and try again"
    )


def test_the_permissions_to_ask_for_hold_every_call_of_a_first_up_and_terminate(lab, ec2):
    """What a user without EC2 rights asks an admin for is read from labvm's AWS code
    (labvm/providers/aws/permissions.py): every EC2 operation a first `up` and a `terminate` send on moto (each
    seen at botocore's before-call event) is in it, as IAM names it (service:Operation)."""
    from aws_world import public_key

    from labvm.providers.aws.permissions import permissions

    provider = provider_for(lab, image=shared_image(ec2))
    sent: set[str] = set()
    provider.api.ec2.meta.events.register("before-call.ec2.*", lambda model, **_: sent.add(f"ec2:{model.name}"))
    provider.terminate(provider.create(public_key=public_key()))
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances"} <= sent
    assert sent <= set(permissions()), sent - set(permissions())
