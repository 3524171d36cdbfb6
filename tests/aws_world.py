"""The AWS test world: moto's EC2 server, a Price List stand-in, and what the tests say of them
(shared through conftest.py)."""

import json
import logging
import os
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from realhost import free_port

REGION = "us-west-2"


def moto_server():
    """moto's server on a loopback port, as strict as EC2 where moto can be told; stop() ends it."""
    os.environ["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"
    import moto.settings

    # EC2 refuses to launch from an AMI that does not exist or was deregistered (InvalidAMIID.NotFound,
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html); moto only warns
    # unless told (moto/ec2/models/instances.py, run_instances: settings.ENABLE_AMI_VALIDATION).
    moto.settings.ENABLE_AMI_VALIDATION = True
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    class OneRequestAtATime(ThreadedMotoServer):
        """EC2 answers parallel requests (labvm makes a cluster's workers in parallel) as it answers them one
        by one; moto's backends are plain dicts with no lock and moto supports no concurrent access
        (moto's documentation says so since getmoto/moto#7166): three parallel RunInstances once
        ended in moto's own 500 page.  Each request holds the backend alone, so a test meets EC2's behaviour
        and never moto's races."""

        def _server_entry(self) -> None:  # ThreadedMotoServer._server_entry with the app behind one lock
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server

            app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

            def one_at_a_time(environ, start_response):
                with lock:
                    return list(app(environ, start_response))

            self._server = make_server(
                self._ip_address, self._port, one_at_a_time, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    port = free_port()
    server = OneRequestAtATime(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def aws_env(endpoint: str) -> dict:
    return {
        "AWS_ENDPOINT_URL_EC2": endpoint,
        "AWS_ENDPOINT_URL_SSM": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,  # `inv check` (and `up`'s checks) ask who is calling
        "AWS_ENDPOINT_URL_SERVICE_QUOTAS": endpoint,
        "AWS_ENDPOINT_URL_PRICING": endpoint,  # moto has no Price List API: no price, and no call leaves the machine
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


def tags(resource) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def labvm_instances(ec2, *states):
    filters = [{"Name": "tag:labvm:profile", "Values": ["aws"]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def provider_for(lab, **settings):
    from labvm import config
    from labvm.providers.aws import AwsProvider

    lab.write_hosts(
        {
            "aws": {
                "provider": "aws",
                "region": REGION,
                "user": "ubuntu",
                "instance_type": "t3.small",
                "ssh_cidr": "127.0.0.1/32",
                **settings,
            }
        }
    )
    return AwsProvider(config.load(lab.hosts).profile("aws"))


def shared_image(ec2) -> str:
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def delete_default_vpc(ec2) -> None:
    """Control Tower and many institutional accounts have no default VPC."""
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    for subnet in ec2.describe_subnets(Filters=vpc_filter)["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    for gateway in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])[
        "InternetGateways"
    ]:
        ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])


def lab_subnet(ec2) -> dict:
    """A VPC of the lab's own with a subnet that does not give instances a public address."""
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
    # "By default, nondefault subnets have the IPv4 public addressing attribute set to false"
    # (https://docs.aws.amazon.com/vpc/latest/userguide/subnet-public-ip.html); moto sets it true on
    # the first subnet of a zone, so it is set here as EC2 would have it.
    ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    return ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]


def owned(ec2, owner: str) -> dict:
    """What EC2 holds for one owner: live instances, security groups, key pairs, Elastic IPs."""
    mine = [{"Name": "tag:labvm:owner", "Values": [owner]}]
    live = mine + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    return {
        "instances": [
            i["InstanceId"] for r in ec2.describe_instances(Filters=live)["Reservations"] for i in r["Instances"]
        ],
        "groups": [g["GroupName"] for g in ec2.describe_security_groups(Filters=mine)["SecurityGroups"]],
        "keys": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=mine)["KeyPairs"]],
        "addresses": [a["PublicIp"] for a in ec2.describe_addresses(Filters=mine)["Addresses"]],
    }


CLOSED = "http://127.0.0.1:9"  # nothing listens: where the AWS Pricing API is, for these tests


class BlackHole:
    """A price endpoint that accepts and never answers (a captive portal, a proxy or a firewall that drops
    what follows the handshake): loopback TCP connections accepted, held open, never read nor answered.
    `connections` counts the connections made to it; close() ends them."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.held: list[socket.socket] = []
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            self.held.append(connection)

    @property
    def connections(self) -> int:
        return len(self.held)

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


def tagged(profile, owner="hedy", kind="instance"):
    return [
        {
            "ResourceType": kind,
            "Tags": [{"Key": "labvm:profile", "Value": profile}, {"Key": "labvm:owner", "Value": owner}],
        }
    ]


def price_product(usd: str, unit: str, family: str, usagetype: str, service: str = "AmazonEC2", **attributes) -> dict:
    """One product of GetProducts' PriceList (before it is made a JSON string), as
    https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html and the
    awscli example (awscli/examples/pricing/get-products.rst: a "Storage" product priced per "GB-Mo") show it."""
    sku = f"SKU{zlib.crc32(usagetype.encode()):010d}"
    rate = f"{sku}.JRTCKXETXF.6YS6EN2CT7"
    return {
        "product": {
            "productFamily": family,
            "sku": sku,
            "attributes": {
                "usagetype": usagetype,
                "locationType": "AWS Region",
                "regionCode": REGION,
                "servicecode": service,
                **attributes,
            },
        },
        "serviceCode": service,
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "offerTermCode": "JRTCKXETXF",
                    "sku": sku,
                    "effectiveDate": "2026-11-01T00:00:00Z",
                    "termAttributes": {},
                    "priceDimensions": {
                        rate: {
                            "unit": unit,
                            "beginRange": "0",
                            "endRange": "Inf",
                            "appliesTo": [],
                            "rateCode": rate,
                            "pricePerUnit": {"USD": usd},
                            "description": f"${usd} per {unit}",
                        }
                    },
                }
            }
        },
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z",
    }


# us-west-2's rates of what bills while no instance runs (https://aws.amazon.com/ebs/pricing/,
# https://aws.amazon.com/vpc/pricing/, 2026-11), as the Price List names them, with the neighbours a
# monthly price must not take (the snapshot archive tier in the same family).
STORAGE_PRICES = {
    ("AmazonEC2", "Storage", "gp3"): [
        price_product("0.0800000000", "GB-Mo", "Storage", "USW2-EBS:VolumeUsage.gp3", volumeApiName="gp3")
    ],
    ("AmazonEC2", "Storage Snapshot", ""): [
        price_product("0.0500000000", "GB-Mo", "Storage Snapshot", "USW2-EBS:SnapshotUsage"),
        price_product("0.0125000000", "GB-Mo", "Storage Snapshot", "USW2-EBS:SnapshotArchiveStorage"),
    ],
    ("AmazonVPC", "", ""): [  # public IPv4: AmazonVPC's since 2024-02-01, group VPCPublicIPv4Address, no productFamily
        price_product(
            "0.0050000000", "Hrs", "", "USW2-PublicIPv4:InUseAddress", "AmazonVPC", group="VPCPublicIPv4Address"
        ),
        price_product(
            "0.0050000000", "Hrs", "", "USW2-PublicIPv4:IdleAddress", "AmazonVPC", group="VPCPublicIPv4Address"
        ),
    ],
}


class PriceList:
    """The AWS Price List Query API's GetProducts (awsJson1_1, X-Amz-Target AWSPriceListService.GetProducts)
    on loopback, answering one on-demand price as https://docs.aws.amazon.com/aws-cost-management/latest/
    APIReference/API_pricing_GetProducts.html shows it: PriceList holds each product as a JSON string.  With
    `storage` (STORAGE_PRICES) it also answers EBS volumes, snapshots and public IPv4 addresses by the
    request's ServiceCode and filters; anything else gets an empty PriceList."""

    def __init__(self, usd_per_hour: str, storage: dict | None = None):
        product = {
            "product": {"productFamily": "Compute Instance", "sku": "SKU1", "attributes": {}},
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    "SKU1.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": "SKU1",
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "termAttributes": {},
                        "priceDimensions": {
                            "SKU1.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "beginRange": "0",
                                "endRange": "Inf",
                                "appliesTo": [],
                                "rateCode": "SKU1.JRTCKXETXF.6YS6EN2CT7",
                                "pricePerUnit": {"USD": usd_per_hour},
                                "description": f"${usd_per_hour} per On Demand Linux Instance Hour",
                            }
                        },
                    }
                }
            },
        }
        self.requests = []
        fake = self

        def answer(request: dict) -> list[dict]:
            asked = {f["Field"]: f["Value"] for f in request.get("Filters", [])}
            if "instanceType" in asked:
                return [product]
            key = (request["ServiceCode"], asked.get("productFamily", ""), asked.get("volumeApiName", ""))
            return (storage or {}).get(key, []) if asked.get("regionCode") == REGION else []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.headers["X-Amz-Target"], request))
                body = json.dumps(
                    {"FormatVersion": "aws_v1", "PriceList": [json.dumps(p) for p in answer(request)]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"


def line_of(table: str, resource_id: str) -> str:
    """The one table line of a resource: listed once, however many profiles see it."""
    (line,) = [line for line in table.splitlines() if f" {resource_id} " in line]
    return line


# The Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) as AWS publishes it: an AMI of the DLAMI owner
# (898082745236: the owner of the Deep Learning AMIs moto itself lists, moto/ec2/resources/amis.json) named as
# the DLAMI release notes name each release (https://docs.aws.amazon.com/dlami/latest/devguide/
# appendix-ami-release-notes.html), and its public SSM parameter (find-dlami-id.html:
# /aws/service/deeplearning/ami/$architecture/$ami_type/latest/ami-id), which moto's SSM does not have.
DLAMI_OWNER = "898082745236"
DLAMI_PARAMETER = "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
DLAMI_NAMES = {
    "x86_64": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20261006",
    "arm64": "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20261006",
}


def driver_images() -> dict[str, str]:
    """The DLAMI of each architecture in moto's EC2 of REGION and its public parameter in moto's SSM: the
    parameter cannot be put through PutParameter ("No access to reserved parameter name", as in AWS), so it is
    set in moto's backend, as moto sets the public parameters it has.  Their AMI ids by architecture."""
    import datetime

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ssm.models import Parameter, ssm_backends

    ec2 = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    ssm = ssm_backends[DEFAULT_ACCOUNT_ID][REGION]
    made = {}
    for arch, name in DLAMI_NAMES.items():
        ami_id = f"ami-0d1a{zlib.crc32(arch.encode()):013x}"
        ec2.amis[ami_id] = Ami(
            ec2,
            ami_id=ami_id,
            name=name,
            description=f"Supported EC2 instances: G4dn, G5, G6, P4, P5 ({arch})",
            owner_id=DLAMI_OWNER,
            owner_alias="amazon",
            public=True,
            architecture=arch,
            virtualization_type="hvm",
            root_device_type="ebs",
            root_device_name="/dev/sda1",
            region_name=f"{REGION}a",
        )
        parameter = DLAMI_PARAMETER.format(arch=arch)
        ssm._parameters[parameter].append(
            Parameter(
                account_id=DEFAULT_ACCOUNT_ID,
                name=parameter,
                value=ami_id,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.datetime.now(datetime.timezone.utc),
                version=1,
                data_type="aws:ec2:image",
            )
        )
        made[arch] = ami_id
    return made
