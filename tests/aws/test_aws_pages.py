"""EC2's answers that come in pages (a NextToken): labvm reads every page."""

from aws_world import provider_for, shared_image, tagged


def test_audit_lists_every_instance_of_an_account_with_more_than_a_page(lab, ec2):
    """A class's account with more labvm instances than one page: EC2 pages DescribeInstances with a NextToken
    (botocore's ec2 paginators-1.json: input NextToken, result Reservations; moto pages at 100 reservations
    unasked, SmallPages at 2).  One unpaginated call left the third out of `inv audit`."""
    from moto_ec2_rules import SmallPages

    image = shared_image(ec2)
    for student in range(3):
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            TagSpecifications=tagged("aws", f"s{student}"),
        )
    with SmallPages(2):
        rows = [r for r in provider_for(lab).inventory() if r.kind == "instance"]
    assert sorted(r.owner for r in rows) == ["s0", "s1", "s2"]
