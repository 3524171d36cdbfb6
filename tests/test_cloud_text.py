"""Text a cloud holds reaches the terminal cleaned: names, tags, metadata, faults and error messages,
written by co-members of the account or by the cloud itself.

A Name tag, an image name, an owner label or a fault message carries a right-to-left override
(U+202E: text that reads otherwise than it is), the C1 CSI (U+009B) and ESC[2J (both start a terminal
escape: this one erases the screen) and a newline (a line that looks like labvm's own).  `inv` runs in
a subprocess, as a user runs it, against moto's EC2 server, tests/fake_openstack.py and
tests/fake_gce.py; its stdout and stderr are read as bytes: none of those characters is in them, and
each is shown visibly where the text is (labvm.text.clean's `\\u202e`, `\\x9b`, `\\x1b`, `\\x0a`).
"""

import dataclasses
import os
import pty
import re
import subprocess
import unicodedata
import urllib.request

import boto3
import openstack
import pytest
from aws_world import CLOSED, REGION, aws_env
from gce_world import fake_gce_for
from fake_openstack import FakeOpenStack
from hypothesis import given, settings
from hypothesis import strategies as st
from openstack_world import LABELS, SETTINGS, boot
from realhost import INV, free_port, ssh_profile

from labvm.providers import Check, Image, Instance, Resource
from labvm.providers.base import Volume

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # openstacksdk's own notices

# What a co-member writes: a bidi override, the C1 CSI, ESC[2J, a newline.
HOSTILE = "\u202eevil\x9b2J\x1b[2J\nnext"
SHOWN = "\\u202eevil\\x9b2J\\x1b[2J\\x0anext"
# EC2 answers in XML 1.0, which has no ESC (its Char production leaves out C0 but tab, LF and CR): a tag
# comes back with everything else, the C1 CSI included.
HOSTILE_EC2 = "\u202eevil\x9b2J\nnext"
SHOWN_EC2 = "\\u202eevil\\x9b2J\\x0anext"


# Unicode's Bidi_Control characters (PropList.txt): each reorders the text around it.
BIDI_CONTROLS = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def acted_on(text: str) -> list[str]:
    """Every character a terminal would act on or reorder: controls (C0, DEL, C1: escapes, moves,
    erasing), line and paragraph separators, lone surrogates, bidi controls."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") or c in BIDI_CONTROLS]


def raw_controls(output: bytes) -> list[str]:
    """acted_on() for labvm's output, where a newline ends one of labvm's own lines."""
    return [c for c in acted_on(output.decode("utf-8")) if c != "\n"]  # labvm writes UTF-8: strict


def inv(lab, *args: str, answer: bytes | None = None) -> subprocess.CompletedProcess:
    """`inv` as a user runs it, its output as bytes; `answer`: typed on a terminal (a prompt's reply)."""
    terminal = None
    if answer is not None:
        keyboard, terminal = pty.openpty()
        os.write(keyboard, answer)
    try:
        result = subprocess.run(
            [*INV, *args],
            capture_output=True,
            env=lab.env,
            cwd=lab.directory,
            timeout=300,
            stdin=terminal if terminal is not None else subprocess.DEVNULL,
            check=False,
        )
    finally:
        if terminal is not None:
            os.close(terminal)
            os.close(keyboard)
    output = result.stdout + result.stderr
    assert b"Traceback" not in output, output.decode("utf-8", "replace")
    assert raw_controls(result.stdout) == [] and raw_controls(result.stderr) == [], output
    return result


def shown(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).decode("utf-8")


def kept_in_order(said: str, value: str) -> bool:
    """Every character of `said` a terminal does not act on is in `value`, in its order: nothing cut."""
    rest = iter(value)
    return all(c in rest for c in said if not acted_on(c))


# -- the boundary: what a provider returns -----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(said=st.text(st.characters(codec="utf-8")) | st.sampled_from([HOSTILE, "\ud800", "\x00\x85\u2028"]))
def test_any_text_a_cloud_says_is_inert_visible_and_whole_in_what_a_provider_returns(said):
    """Instance, Image, Volume, Resource and Check (what every provider returns, whichever cloud, whichever verb)
    hold no character a terminal acts on, cut nothing, and stay as they are when made again."""
    records = [
        Instance(said, said, said, said, said, said, said, zone=said),
        Image(said, said, said, said),
        Volume(said, said, 20, said, said, said, said, (said, said)),
        Resource(said, said, said, said, said, said, said, None, said, type=said, address=said, region=said),
        Check(said, False, said),
    ]
    for record in records:
        values = [getattr(record, field.name) for field in dataclasses.fields(record)]
        for value in [v for field in values for v in (field if isinstance(field, tuple) else (field,))]:
            if isinstance(value, str):
                assert acted_on(value) == []
                assert value == said if not acted_on(said) else kept_in_order(said, value)
        assert dataclasses.replace(record) == record  # audit replaces a Resource to price it


# -- AWS ------------------------------------------------------------------------------------------


@pytest.fixture
def aws(moto, lab):
    def reset():  # moto's state is one per process, shared with every other module's moto server
        urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10)

    reset()
    lab.extra_env.update(aws_env(moto), AWS_ENDPOINT_URL_PRICING=CLOSED, LABVM_OWNER="hedy")
    # EC2 "allows any character in its tags" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/
    # Using_Tags.html, Tag restrictions).
    lab.write_hosts(
        {
            "aws": {
                "provider": "aws",
                "region": REGION,
                "user": "ubuntu",
                "instance_type": "t3.small",
                "ssh_cidr": "127.0.0.1/32",
                "address": "127.0.0.1",
                "port": free_port(),
            }
        }
    )
    yield boto3.client(
        "ec2", endpoint_url=moto, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    reset()


def run_instance(ec2, **tags) -> str:
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"][0]["InstanceId"]


def test_an_ec2_name_tag_in_terminate_s_question(aws, lab):
    head = run_instance(aws, **{"labvm:profile": "aws", "labvm:owner": "hedy", "Name": HOSTILE_EC2})
    asked = inv(lab, "terminate", "--host", "aws", "--force", "--no-sync", answer=b"n\n")
    assert f"Terminate {head} ({SHOWN_EC2}) and delete its disk? [y/N]" in shown(asked)
    assert asked.returncode == 1 and "labvm: not confirmed; nothing changed" in shown(asked)
    assert aws.describe_instances(InstanceIds=[head])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def test_ec2_tags_in_the_audit(aws, lab):
    theirs = run_instance(
        aws, **{"labvm:profile": f"aws{HOSTILE_EC2}", "labvm:owner": HOSTILE_EC2, "Name": HOSTILE_EC2}
    )
    audited = inv(lab, "audit")
    (row,) = [line for line in shown(audited).splitlines() if theirs in line]
    assert re.search(f"  aws{re.escape(SHOWN_EC2)} +{re.escape(SHOWN_EC2)}  {theirs}  ", row), row
    assert f"no profile 'aws{SHOWN_EC2}' in hosts.yml" in row
    assert f"  {SHOWN_EC2}: 1 running VM" in shown(audited)  # the owner's spend line


def test_ec2_worker_names_in_status(aws, lab, user, sshd):
    lab.write_hosts(
        {
            "aws": ssh_profile(
                user,
                sshd,
                provider="aws",
                region=REGION,
                instance_type="t3.small",
                ssh_cidr="127.0.0.1/32",
                cluster={"workers": 1},
            )
        }
    )
    run_instance(aws, **{"labvm:profile": "aws", "labvm:owner": "hedy", "Name": "labvm-aws"})
    worker = run_instance(
        aws,
        **{
            "labvm:profile": "aws",
            "labvm:owner": "hedy",
            "labvm:cluster": "aws",
            "labvm:role": "worker",
            "labvm:index": "1",
            "Name": f"{HOSTILE_EC2}-w1",
        },
    )
    status = inv(lab, "status", "--host", "aws")
    assert f"cluster: {SHOWN_EC2}-w1 ({worker}): VM running" in shown(status)


def test_an_ec2_error_message_that_echoes_text(aws, lab):
    """EC2's refusals quote what they were given (InvalidAMIID.*: the image id)."""
    hosts = lab.hosts.read_text()
    ami = aws.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lab.hosts.write_text(hosts.replace("instance_type: t3.small", f"instance_type: t3.small\n    image: {ami}"))
    refused = inv(lab, "up", "--host", "aws", "--no-browser", "--from-image", f"ami-{HOSTILE_EC2}")
    assert refused.returncode == 1
    assert f"labvm: AWS InvalidAMIID.NotFound: The image id '[ami-{SHOWN_EC2}]' does not exist; " in shown(refused)


# -- OpenStack ------------------------------------------------------------------------------------


@pytest.fixture
def cades(lab, monkeypatch):
    with FakeOpenStack() as fake:
        clouds = lab.directory / "clouds.yaml"
        clouds.write_text(fake.clouds_yaml("cades"))
        lab.extra_env.update(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="", LABVM_OWNER="hedy")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))  # the co-member's SDK, in this process
        lab.write_hosts(
            {"cades": {**SETTINGS, "address": "127.0.0.1", "port": free_port(), "ssh_cidr": "127.0.0.1/32"}}
        )
        yield fake


def test_a_glance_image_name_in_the_image_list(cades, lab):
    # Glance takes any string of up to 255 characters as a name (glance/api/v2/images.py,
    # get_base_properties: name {"type": ["null", "string"], "maxLength": 255}).
    image = cades._image(HOSTILE, status="active", **LABELS)
    listed = inv(lab, "images", "--host", "cades")
    assert f"{image['id']}  {image['created_at']}  available  {SHOWN}" in shown(listed)


def test_a_nova_fault_in_up_s_error(cades, lab):
    cades.fail_next_boot = f"No valid host was found. {HOSTILE}"  # a fault quotes the exception Nova caught
    broken = inv(lab, "up", "--host", "cades", "--no-browser")
    assert broken.returncode == 1 and f"went ERROR: No valid host was found. {SHOWN}; `inv up" in shown(broken)
    again = inv(lab, "up", "--host", "cades", "--no-browser")
    assert again.returncode == 1 and f"is in ERROR: No valid host was found. {SHOWN}; `inv up" in shown(again)


def test_nova_metadata_in_the_audit(cades, lab):
    # Server metadata values are any string of up to 255 characters (nova/api/validation/parameter_types.py,
    # metadata); Nova's own name rule keeps controls and format characters out of server names.
    conn = openstack.connect(cloud="cades")
    try:
        theirs = boot(conn, name="labvm-cades-theirs", metadata={"labvm:profile": "cades", "labvm:owner": HOSTILE}).id
    finally:
        conn.close()
    audited = inv(lab, "audit")
    (row,) = [line for line in shown(audited).splitlines() if theirs in line]
    assert re.search(f"  cades +{re.escape(SHOWN)}  {theirs}  ", row), row
    assert f"  {SHOWN}: 1 running VM" in shown(audited)


# -- GCE ------------------------------------------------------------------------------------------


@pytest.fixture
def gce(lab):
    with fake_gce_for(lab) as fake:
        yield fake


def test_a_hosts_yml_text_google_would_echo_back_never_reaches_google(gce, lab):
    """Google's refusals quote the resource they did not find (an image family a colleague's hosts.yml
    names): such a text is refused where hosts.yml is read, before any call to the cloud."""
    lab.write_hosts(
        {
            "gce": {
                "provider": "gce",
                "project": "proj",
                "zone": "us-west1-b",
                "machine_type": "e2-small",
                "image_family": f"debian-12{HOSTILE}",
                "ssh_cidr": "127.0.0.1/32",
                "address": "127.0.0.1",
                "port": free_port(),
                "user": "lab",
            }
        }
    )
    before = len(gce.requests)
    for args in (("up", "--host", "gce", "--no-browser"), ("up", "--host", "gce", "--plan")):
        refused = inv(lab, *args)
        assert refused.returncode == 1
        assert "profiles.gce.image_family: must be plain text" in shown(refused)
    assert len(gce.requests) == before
