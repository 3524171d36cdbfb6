"""`inv audit`: what labvm left in the clouds of hosts.yml, what of it bills, and the next step for each zombie.

Every labvm-tagged resource the credentials of the cloud profiles can see is listed, whatever its
profile or owner.  Profiles that share credentials and a place (an AWS region, a clouds.yaml
entry, a GCE project) are listed once, together.  A cloud that cannot be reached is one line,
and the audit goes on with the others.
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from datetime import datetime, timezone

from . import prices
from .config import Config, Member
from .errors import LabvmError
from .providers import Provider, Resource, for_profile
from .text import clean

STOPPED_DAYS = 7  # a VM nobody started for this long is forgotten, and its disk bills on
KEEP_IMAGES = 3  # what `inv images --prune` keeps by default
KINDS = ("instance", "address", "data", "backup", "volume", "image", "snapshot")  # the table's order
NONE = "—"  # no age, no price
KEPT = "disks, addresses, images and snapshots"  # what bills by the month, VM or no VM
OVERRIDE = "price_per_hour: in hosts.yml gives a profile's price"


def report(config: Config, as_json: bool) -> str:
    """The table (or JSON) of everything labvm left in the clouds of hosts.yml, each zombie's next step, and
    what it bills."""
    places, unreachable, skipped = _places(config)
    with ThreadPoolExecutor() as pool:  # clouds answer in parallel: the audit takes as long as the slowest
        listed = list(pool.map(_inventory, places.values()))
    rows, answered = [], []
    for ((cloud, scope), providers), (resources, monthly, error) in zip(places.items(), listed):
        if error:
            unreachable.append(
                {"cloud": cloud, "scope": scope, "profiles": [p.profile.name for p in providers], "error": error}
            )
        else:
            answered.append(f"{cloud} {scope}")
        rows += _judge(resources, providers, config.names, monthly)
    rows.sort(
        key=lambda row: (row["cloud"], row["scope"], KINDS.index(row["kind"]), row["profile"], row["since"] or "")
    )
    running = [row for row in rows if row["kind"] == "instance" and row["state"] == "running"]
    kept = [row for row in rows if row["kind"] != "instance"]
    priced = [row["hourly_usd"] for row in running if row["hourly_usd"] is not None]
    kept_priced = [row["monthly_usd"] for row in kept if row["monthly_usd"] is not None]
    if as_json:
        return json.dumps(
            {
                "resources": rows,
                "unreachable": unreachable,
                "not_audited": skipped,
                "running_usd_per_hour": round(sum(priced), 6) if priced else None,
                "running_usd_per_hour_by_owner": _sums(running, "hourly_usd"),
                "kept_usd_per_month": round(sum(kept_priced), 6) if kept_priced else None,
                "kept_usd_per_month_by_owner": _sums(kept, "monthly_usd"),
            },
            indent=2,
        )

    lines = _table(rows) if rows else [f"nothing labvm made is left in {', '.join(answered)}"] if answered else []
    if not places and not unreachable:
        lines.append("no cloud profile in hosts.yml: nothing to audit")
    for u in unreachable:
        lines.append(
            f"cannot audit {u['cloud']}{' ' + u['scope'] if u['scope'] else ''} "
            f"(profile {', '.join(u['profiles'])}): {u['error']}"
        )
    if skipped:
        lines.append(f"not audited: {', '.join(skipped)} (local and ssh profiles: labvm owns no cloud resources there)")
    zombies = sum(1 for row in rows if row["next_step"])
    summary = f"resources: {len(rows)}, with a next step: {zombies}, running instances: {len(running)}"
    if priced:
        summary += f" (≈ ${_money(sum(priced))}/h for the {len(priced)} with a price)"
    if kept_priced:
        summary += f", {KEPT}: ≈ ${_month(sum(kept_priced))}/month for the {len(kept_priced)} with a price"
    lines.append(summary)
    lines += [f"  {owner or '(no owner tag)'}: {spend}" for owner, spend in _by_owner(running, kept).items()]
    clouds = {cloud: providers[0] for (cloud, _), providers in places.items()}  # each says why it shows no price
    unpriced = sorted({row["cloud"] for row in running if row["hourly_usd"] is None})
    if unpriced:
        lines.append(f"$/h {NONE}: " + "; ".join(clouds[cloud].NO_PRICE for cloud in unpriced) + f" ({OVERRIDE})")
    unpriced = sorted({row["cloud"] for row in kept if row["monthly_usd"] is None})
    if unpriced:
        lines.append(f"$/mo {NONE}: " + "; ".join(clouds[cloud].NO_MONTHLY_PRICE for cloud in unpriced))
    return "\n".join(lines)


def _sums(rows: list[dict], price: str) -> dict[str, float]:
    """Each owner's sum of the known prices (`price` of each row); owners without one are left out."""
    sums: dict[str, float] = {}
    for row in rows:
        if row[price] is not None:
            sums[row["owner"]] = round(sums.get(row["owner"], 0) + row[price], 6)
    return sums


def _by_owner(running: list[dict], kept: list[dict]) -> dict[str, str]:
    """What each owner's running VMs cost an hour and their disks, addresses, images and snapshots a
    month, the most expensive owner first (by the hour, then by the month)."""
    hours, months = _sums(running, "hourly_usd"), _sums(kept, "monthly_usd")
    owners: dict[str, list] = {}
    for row in running:
        owners.setdefault(row["owner"], []).append(row["hourly_usd"])
    spend = {}
    for owner in sorted({*owners, *months}, key=lambda owner: (-hours.get(owner, 0), -months.get(owner, 0))):
        hourly = owners.get(owner, [])
        known = [h for h in hourly if h is not None]
        words = f"{len(hourly)} running VM{'s' if len(hourly) > 1 else ''}" if hourly else "no running VM"
        if known:
            words += f", ≈ ${_money(sum(known))}/h"
        if len(known) < len(hourly):
            words += f" ({len(hourly) - len(known)} without a price)" if known else " (no price known)"
        if owner in months:
            mine = [row for row in kept if row["owner"] == owner]
            missing = sum(row["monthly_usd"] is None for row in mine)
            words += f"; ≈ ${_month(months[owner])}/month for {KEPT}" + (
                f" ({missing} without a price)" if missing else ""
            )
        spend[owner] = words
    return spend


def _places(config: Config) -> tuple[dict[tuple[str, str], list[Provider]], list[dict], list[str]]:
    """The cloud profiles' providers grouped by what their credentials see; problems; local/ssh profiles."""
    places: dict[tuple[str, str], list[Provider]] = {}
    unreachable: list[dict] = []
    skipped: list[str] = []
    for name in config.names:
        if config.raw[name]["provider"] in ("local", "ssh"):
            skipped.append(name)
            continue
        try:
            provider = for_profile(config.profile(name))
        except LabvmError as e:
            unreachable.append(
                {
                    "cloud": config.raw[name]["provider"],
                    "scope": None,
                    "profiles": [name],
                    "error": clean(str(e).splitlines()[0]),
                }
            )
            continue
        places.setdefault((provider.profile.provider, provider.scope), []).append(provider)
    return places, unreachable, skipped


def _inventory(providers: list[Provider]) -> tuple[list[Resource], dict, str]:
    try:
        resources = _priced(providers[0].inventory(), providers)
    except LabvmError as e:
        return [], {}, clean(str(e).splitlines()[0])
    return resources, _monthly(resources, providers[0]), ""


def _monthly(resources: list[Resource], provider: Provider) -> dict[tuple[str, str], float | None]:
    """(kind, id) -> what each volume, image, snapshot and address costs a month where the provider's profile
    runs (labvm.prices: the cloud's price list, cached, never failing); None where no price is known."""
    return {
        (r.kind, r.id): prices.per_month(provider, _priced_as(r.kind), r.size_gb, r.state, r.type)
        if r.region in ("", provider.where())
        else None
        for r in resources
        if _priced_as(r.kind) in prices.MONTHLY_KINDS
    }


def _priced_as(kind: str) -> str:
    """A data volume (hosts.yml data:) bills as any volume of its type, its backups as any snapshot."""
    return {"data": "volume", "backup": "snapshot"}.get(kind, kind)


def _priced(resources: list[Resource], providers: list[Provider]) -> list[Resource]:
    """Each instance with its price an hour: its profile's price_per_hour: where hosts.yml gives one for
    its type, else the cloud's (labvm.prices: cached, never failing) where it runs in the providers' region."""
    profiles = {provider.tags.profile: provider for provider in providers}  # profile tag -> its provider
    priced = []
    for r in resources:
        if r.kind == "instance" and r.hourly_usd is None:
            provider = profiles.get(_member(r.profile)[0])
            usd = prices.override(provider.profile, provider, r.type) if provider else None
            if usd is None and r.region in ("", providers[0].where()):
                usd = prices.lookup(providers[0], r.type, r.spot)
            r = replace(r, hourly_usd=usd)
        priced.append(r)
    return priced


def _judge(
    resources: list[Resource],
    providers: list[Provider],
    all_profiles: tuple[str, ...],
    monthly: dict[tuple[str, str], float | None] | None = None,
) -> list[dict]:
    """Each resource as a row, with why it is a zombie and the next step ("" for both when it is not), and
    what it costs a month (`monthly`, by kind and id) where it is no instance.  A data volume (kind "data")
    is kept on purpose while its profile exists: no zombie, its price a month shown."""
    known = {}
    me = ""
    for provider in providers:
        me = provider.tags.owner  # as this profile's resources carry it
        known[provider.tags.profile] = provider.profile.name
    now = datetime.now(timezone.utc)
    images = sorted((r for r in resources if r.kind == "image"), key=lambda r: r.since or now, reverse=True)
    newest: dict[tuple[str, str], list[str]] = {}
    for image in images:
        newest.setdefault((image.profile, image.owner), []).append(image.id)
    heads = {(r.profile, r.owner) for r in resources if r.kind == "instance" and _member(r.profile)[1] is None}
    rows = []
    for r in resources:
        age = (now - r.since).total_seconds() if r.since else None
        cluster, index = _member(r.profile)
        profile = known.get(cluster)
        # labvm finds resources by owner too; the owner tag is anyone's text in the account: quoted.
        inv = f"{'' if r.owner == me else f'LABVM_OWNER={shlex.quote(r.owner)} '}inv"
        why, step = "", ""
        if profile is None:  # the tag as the Resource holds it, cleaned: quoted, not repr()'d again
            why = (
                f"profile '{cluster}' of hosts.yml does not look in {r.cloud} {r.scope}"
                if cluster in all_profiles
                else f"no profile '{cluster}' in hosts.yml"
            )
            step = r.delete
        elif index is not None and r.kind == "instance" and (cluster, r.owner) not in heads:
            why, step = f"a worker of {profile} whose head VM is gone", r.delete
        elif r.kind == "instance" and r.state == "running":
            why, step = "running: billed by the hour", f"{inv} down --host {profile}"
        elif r.kind == "instance" and r.state == "stopped" and age and age > STOPPED_DAYS * 86400:
            why = f"stopped, not started for {_age(age)}: its disk is billed"
            step = f"{inv} snapshot --host {profile}, then {inv} terminate --host {profile}"
        elif r.kind == "instance" and r.state == "shelved" and age and age > STOPPED_DAYS * 86400:
            # Nova makes no image of a shelved server (createImage needs ACTIVE or SHUTOFF): start it first.
            why = f"shelved, not started for {_age(age)}: its disk is billed"
            step = (
                f"{inv} start --host {profile}, {inv} snapshot --host {profile}, then {inv} terminate --host {profile}"
            )
        elif r.kind == "instance" and r.state == "error":
            why, step = (
                "in ERROR: it does not run, its disk is kept",
                f"{inv} up --host {profile} --replace, or {r.delete}",
            )
        elif r.kind == "image" and newest[(r.profile, r.owner)].index(r.id) >= KEEP_IMAGES:
            why, step = (
                f"older than the newest {KEEP_IMAGES} images of {profile}",
                f"{inv} images --host {profile} --prune --keep {KEEP_IMAGES}",
            )
        elif r.kind == "snapshot":
            why, step = "a snapshot of no image (its AMI is gone)", r.delete
        elif r.kind == "volume":
            why, step = "a volume attached to nothing", r.delete
        elif r.kind == "address" and r.state == "unattached":
            why, step = (
                "an address attached to nothing, billed",
                f"{inv} up --host {profile} uses it again, or {r.delete}",
            )
        rows.append(
            {
                **asdict(r),
                "monthly_usd": (monthly or {}).get((r.kind, r.id)),
                "role": "" if index is None else "worker",
                "index": index,
                "since": r.since.isoformat() if r.since else None,
                "age_seconds": int(age) if age is not None else None,
                "why": why,
                "next_step": step,
            }
        )
    return rows


def _member(profile: str) -> tuple[str, int | None]:
    """(the profile, the worker's index) of a cluster worker's name, aws+w2; (profile, None) otherwise."""
    member = Member.parse(profile)
    return (member.head, member.index) if member else (profile, None)


def _table(rows: list[dict]) -> list[str]:
    header = ("CLOUD", "KIND", "PROFILE", "OWNER", "ID", "STATE", "AGE", "DETAIL", "$/H", "$/MO", "NEXT STEP")
    cells = [header] + [
        tuple(
            clean(cell)
            for cell in (
                f"{row['cloud']} {row['scope']}",
                row["role"] if row["kind"] == "instance" and row["role"] else row["kind"],
                row["profile"],
                row["owner"],
                row["id"],
                row["state"],
                _age(row["age_seconds"]),
                _detail(row),
                "" if row["kind"] != "instance" else NONE if row["hourly_usd"] is None else _money(row["hourly_usd"]),
                "" if row["kind"] == "instance" else NONE if row["monthly_usd"] is None else _month(row["monthly_usd"]),
                f"{row['why']}: {row['next_step']}" if row["next_step"] else "ok",
            )
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]]) for line in cells]


def _detail(row: dict) -> str:
    if row["kind"] == "instance":
        return row["type"]
    if row["kind"] == "address":
        return row["address"]
    size = row["size_gb"]
    return "" if size is None else f"{size:.0f} GB" if size >= 10 else f"{size:.1f} GB" if size >= 0.1 else "<0.1 GB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"


def _money(usd: float) -> str:
    return f"{usd:.5f}".rstrip("0").rstrip(".")


def _month(usd: float) -> str:
    """A month's price in cents, as a bill shows it; below a cent, as _money shows an hour's."""
    return f"{usd:.2f}" if usd >= 0.01 else _money(usd)
