"""`inv check` is read-only on the laptop too (issue 28, C10): on a fresh laptop it makes no key (it says
`up` would make it), and on the `local` profile it answers the laptop questions the README promises."""

from __future__ import annotations

import json
import re
import subprocess

from aws_world import REGION, aws_env, labvm_instances
from realhost import free_port


def test_check_on_a_fresh_laptop_makes_no_key(lab, ec2, moto):
    lab.extra_env.update(aws_env(moto), LABVM_OWNER="ada")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    profile = {"provider": "aws", "region": REGION, "instance_type": "t3.small", "image": image, "user": "ubuntu"}
    lab.write_hosts({"aws": {**profile, "ssh_cidr": "127.0.0.1/32"}})
    before = {
        i["InstanceId"] for i in labvm_instances(ec2)
    }  # moto's account is the test process's: other modules' instances stay

    result = lab.inv("check", "--host", "aws", "--json")
    found = {c["check"]: c for c in json.loads(result.stdout)}
    key = lab.ssh_dir / "labvm" / "id_ed25519"
    assert found["identity"]["ok"] and found["identity"]["detail"] == f"would make labvm's key at first `up` ({key})"
    assert found["key pair"]["detail"] == "no labvm key on this machine yet: the first `inv up` makes it and imports it"
    assert "made labvm's key" not in result.stdout + result.stderr
    assert not key.exists() and not key.with_suffix(".pub").exists()
    assert {i["InstanceId"] for i in labvm_instances(ec2)} == before


def test_check_on_the_local_profile_answers_the_laptop_questions(lab):
    lab.write_hosts({"local": {"provider": "local"}})
    checks = json.loads(lab.inv("check", "--host", "local", "--json").stdout)
    names = [c["check"] for c in checks]
    # README: "`inv check` starts with one line per laptop question (OpenSSH version, rsync or the fallback,
    # notifications, WSL, the keeper)".
    assert names[0] == "laptop" and {"openssh", "rsync", "notifications", "keeper"} <= set(names), names
    assert "local" in names


def identity_line(lab) -> str:
    output = lab.inv("check", "--host", "vm", check=False).stdout
    return next(line for line in output.splitlines() if re.match(r"(ok|FAIL)\s+identity\s", line))


def test_check_passes_a_missing_identity_where_labvms_key_logs_in(lab):
    """Issue 28, C7: `up` goes on with labvm's key where hosts.yml's identity file is missing (a new
    laptop, a typo); `inv check` says the same, and fails only where nothing else could log in."""
    missing = lab.directory / "lab_key"
    lab.write_hosts({"vm": {"provider": "ssh", "address": "127.0.0.1", "port": free_port(), "identity": str(missing)}})
    where = f"{lab.hosts}: profiles.vm.identity"
    assert re.match(rf"FAIL\s+identity\s+{re.escape(where)}: {re.escape(str(missing))} not found$", identity_line(lab))

    key = lab.ssh_dir / "labvm" / "id_ed25519"
    key.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    expected = f"{where}: {missing} not found; labvm's key {key} is used"
    assert re.match(rf"ok\s+identity\s+{re.escape(expected)}$", identity_line(lab))
