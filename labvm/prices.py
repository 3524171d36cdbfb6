"""What a VM costs an hour (hosts.yml's `price_per_hour:`, else the cloud's price list) and what its disks,
images, snapshots and addresses cost a month (the cloud's price list), cached on the laptop.

A price is an estimate that helps decide whether to stop a VM; it never decides anything itself.  So
no failure here reaches a verb: no rights to the price API, no network, an answer not understood or
a lookup slower than LOOKUP_SECONDS all mean "no price", and nothing is shown rather than a guess.
Nor does a price hold a verb up: a price API that failed or did not answer in time is not asked again
for UNANSWERED_MINUTES, by this run or any other (the record is in the cache), and a lookup past its
time goes on behind the verb, its answer cached if it comes while labvm still runs.

The cache is one JSON file (0600) in labvm's run folder of the SSH home (~/.ssh/labvm/run/prices.json):
labvm keeps all its laptop state there already (keys, tunnels, keepers' logs), in a 0700 folder that
exists on every platform and follows LABVM_SSH_DIR, so tests and several checkouts never share one.
A price is kept CACHE_DAYS (a spot price SPOT_CACHE_HOURS: it follows supply and demand); an older one
is asked again, and used while the cloud cannot be reached.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

from .config import Profile
from .errors import LabvmError
from .files import write_private
from .providers import Provider

CACHE_DAYS = 7
# Spot prices move with supply and demand (EC2's spot price history has a new entry whenever a zone's price
# changes, https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-instances-history.html): an hour at most.
SPOT_CACHE_HOURS = 1
LOOKUP_SECONDS = 5.0  # what a verb waits for one price, however the cloud's SDK retries; past it: no price
UNANSWERED_MINUTES = 30  # a price API that failed or did not answer is left alone this long, by every run
CACHE_LIMIT = 1_000_000  # bytes: a larger file is not labvm's cache, and is started over
_lock = threading.Lock()  # one writer at a time in this process; between processes a lost write is a miss
# (cloud, place, what: spot, on-demand or month) whose lookup failed in this run, whether or not the cache could
# keep it (spot, on-demand and monthly prices may come from different APIs, as on AWS).
_unreachable: set[str] = set()
MONTHLY_KINDS = ("volume", "image", "snapshot", "address")


def price_per_hour(profile: Profile, provider: Provider, size: str | None = None) -> float | None:
    """USD an hour of one machine of `size` (None: the profile's own size) for this profile: hosts.yml's
    override, else the cached price, else the cloud's answer (cached).  None when none is known."""
    try:
        given = override(profile, provider, size)
        if given is not None:
            return given
        wanted = size or provider.size()
        if not wanted:  # a machine labvm does not make has no size, and no published price
            return None
        spot = provider.describe().spot
        key = _key(provider, wanted, spot)
        price = lookup(provider, wanted, spot)
        if size is None:  # what known_price reads for this profile, without a provider
            _store("profiles", _profile_id(profile), {"key": key, "settings": _fingerprint(profile)})
        return price
    except Exception:  # a price never fails a verb (see the module's note)
        return None


def lookup(provider: Provider, size: str, spot: bool) -> float | None:
    """The cloud's price of `size` where the provider's profile runs: the cache while fresh, else asked
    (under LOOKUP_SECONDS) and kept; when the cloud cannot be reached, the cached price however old."""
    try:
        return _cached(provider, _key(provider, size, spot), spot, lambda: provider.price_per_hour(size, spot), size)
    except Exception:
        return None


def per_month(
    provider: Provider, kind: str, size_gb: float | None, state: str = "", volume_type: str = ""
) -> float | None:
    """USD a month of one volume, image or snapshot of `size_gb` (the cloud's price per GB-month times it),
    or of one address in `state`, where the provider's profile runs; cached as `lookup` caches an hourly
    price.  None when the cloud publishes no price, the size is unknown, or anything fails."""
    try:
        if kind not in MONTHLY_KINDS or (kind != "address" and size_gb is None):
            return None
        key = "/".join(
            (
                provider.profile.provider,
                provider.where(),
                "month",
                kind,
                state if kind == "address" else volume_type or "-",
            )
        )
        unit = _cached(provider, key, "month", lambda: provider.price_per_month(kind, state, volume_type), kind)
        if unit is None or kind == "address":
            return unit
        return unit * size_gb if size_gb is not None else None
    except Exception:
        return None


def _cached(provider: Provider, key: str, what: bool | str, ask, name: str) -> float | None:
    """The cache's price under `key` while fresh, else ask() (under LOOKUP_SECONDS) and kept; when the
    cloud cannot be reached, or failed lately (UNANSWERED_MINUTES), the cached price however old (None
    without one)."""
    cache = _read()
    entry = cache.get("prices", {}).get(key)
    kept = SPOT_CACHE_HOURS * 3600 if what is True else CACHE_DAYS * 86400
    if entry and time.time() - entry["at"] < kept:
        return entry["usd"]
    place = "/".join((provider.profile.provider, provider.where(), _what_words(what)))
    failed = cache.get("unanswered", {}).get(place, {}).get("at", 0)
    if place in _unreachable or time.time() - failed < UNANSWERED_MINUTES * 60:
        return entry["usd"] if entry else None
    answered, price = _ask(ask, name, key)
    if not answered:
        _unreachable.add(place)
        _store("unanswered", place, {"at": time.time()})
        return entry["usd"] if entry else None
    return price


def _what_words(what: bool | str) -> str:
    """How the cache names a kind of price: "spot", "on-demand" or "month"."""
    return what if isinstance(what, str) else "spot" if what else "on-demand"


def known_price(profile_name: str, hosts_path: str) -> float | None:
    """What labvm knows of the profile's price without asking any cloud: hosts.yml's override, else the
    price its last lookup cached (of any age), if the profile's cloud settings are still those it was
    asked for.  For the keeper, which must not wait on the network; never raises."""
    try:
        from . import config

        profile = config.load(Path(hosts_path)).profile(profile_name)
        if profile.price_per_hour is not None:
            return profile.price_per_hour
        cache = _read()
        record = cache.get("profiles", {}).get(_profile_id(profile))
        if not record or record.get("settings") != _fingerprint(profile):
            return None
        entry = cache.get("prices", {}).get(record["key"])
        return float(entry["usd"]) if entry and entry.get("usd") is not None else None
    except Exception:
        return None


def remember_data_month(profile: Profile, usd: float) -> None:
    """What the profile's data volume costs a month, as labvm last priced it: for the keeper's asleep page,
    which asks no cloud.  Kept with the data: settings it was priced for."""
    _store("data", _profile_id(profile), {"settings": _data_fingerprint(profile), "usd": usd})


def known_data_month(profile_name: str, hosts_path: str) -> tuple[int, float | None] | None:
    """(GB, USD a month) of the profile's data volume as hosts.yml gives it and labvm last priced it (None for
    the price where none was, or data: changed since); None without data:.  Never raises, asks no cloud."""
    try:
        from . import config

        profile = config.load(Path(hosts_path)).profile(profile_name)
        if profile.data is None:
            return None
        record = _read().get("data", {}).get(_profile_id(profile))
        if not record or record.get("settings") != _data_fingerprint(profile):
            return profile.data.size, None
        return profile.data.size, float(record["usd"])
    except Exception:
        return None


def _data_fingerprint(profile: Profile) -> str:
    return json.dumps([_fingerprint(profile), str(profile.data)], default=str)


def per_hour(price: float) -> str:
    """The words "about $0.085/h": cents from 10 cents up, three places below that, two significant figures
    below a cent."""
    if price >= 0.1:
        shown = f"{price:.2f}"
    elif price >= 0.01:
        shown = f"{price:.3f}".rstrip("0")
    elif price > 0:
        shown = f"{price:.{1 - math.floor(math.log10(price))}f}".rstrip("0")
    else:
        shown = "0"
    return f"about ${shown}/h"


def size_words(profile: Profile, provider: Provider) -> str:
    """The words "c5.large in us-west-2, about $0.085/h"; without the price when none is known; "" when labvm
    knows neither (a local or ssh profile without price_per_hour:)."""
    try:
        size, where, spot = provider.size(), provider.where(), provider.describe().spot
    except Exception:
        size, where, spot = "", "", False
    price = price_per_hour(profile, provider)
    shown = f"{size} (spot)" if spot else size
    parts = [shown + (f" in {where}" if where else "")] if size else []
    if price is not None:
        parts.append(per_hour(price))
    return ", ".join(parts)


def override(profile: Profile, provider: Provider, size: str | None) -> float | None:
    """hosts.yml's price of this size: the profile's for its own size (and workers of that size), the
    cluster's for workers of another worker_size; None when it gives none.  Never raises."""
    try:
        own = size is None or size == provider.size()
    except Exception:
        own = False
    if own:
        return profile.price_per_hour
    if profile.cluster and size == profile.cluster.worker_size:
        return profile.cluster.price_per_hour
    return None


def _ask(ask, name: str, key: str) -> tuple[bool, float | None]:
    """(whether the cloud answered, its price) within LOOKUP_SECONDS; an answer is cached under `key`.  A
    daemon thread: a lookup that hangs past the limit is left behind and never holds up the verb or the
    exit; if it answers while labvm still runs (a slow catalog during `up`), its answer is cached all the same."""
    outcome: list = []

    def asking():
        try:
            answer = ask()
            price = float(answer) if answer is not None and math.isfinite(answer) and answer >= 0 else None
        except Exception:
            return
        _store("prices", key, {"usd": price, "at": time.time()})
        outcome.append(price)

    thread = threading.Thread(target=asking, daemon=True, name=f"price {name}")
    thread.start()
    thread.join(LOOKUP_SECONDS)
    return (True, outcome[0]) if outcome else (False, None)


def _key(provider: Provider, size: str, spot: bool) -> str:
    return "/".join((provider.profile.provider, provider.where(), provider.priced_as(size), _what_words(spot)))


def _profile_id(profile: Profile) -> str:
    return f"{Path(profile.source).resolve()}#{profile.name}"


def _fingerprint(profile: Profile) -> str:
    return json.dumps(dict(profile.cloud_settings), sort_keys=True, default=str)


def _path() -> Path:
    from .sshconfig import SshHome

    return SshHome.current().run / "prices.json"


def _read() -> dict:
    try:
        path = _path()
        if not path.is_file() or path.stat().st_size > CACHE_LIMIT:
            return {}
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, LabvmError):  # no cache (or no SSH home to keep one in) is an empty one
        return {}
    return cache if isinstance(cache, dict) else {}


def _store(section: str, key: str, value: dict) -> None:
    """cache[section][key] = value: read, changed, written whole (a new 0600 file put in place), so a
    reader never sees half a file.  A cache that cannot be written is only a lookup more next time."""
    with _lock:
        cache = _read()
        cache.setdefault(section, {})[key] = value
        try:
            path = _path()
        except LabvmError:
            return
        try:
            write_private(path, json.dumps(cache))
        except OSError:  # a cache: the price is asked again next time
            pass
