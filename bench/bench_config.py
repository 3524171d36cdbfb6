"""hosts.yml's schema: labvm's dataclasses (labvm/config/) against pydantic v2, msgspec and cattrs (+attrs).

    .venv/bin/python bench/bench_config.py                                  (the libraries .venv holds)
    .venv/bin/python bench/bench_config.py --python /tmp/w-venv/bin/python  (the others from that Python)

A library neither Python imports is skipped, and the run says so.  Each library holds the same subset of
keys (provider, address, user, port, identity, autostop, sync_dir, env:, notebook:, aws's own keys),
checks what labvm's Kinds check with labvm's own check functions (what a switch would keep: host names,
durations, paths) and the rest natively (ranges, choices, lists, unknown keys), strictly ("22" is no port).

1. Start-up, in-process after `import yaml`: `import labvm.config` as now (its dataclasses) against the
   same with the library imported and the schema's classes defined (labvm's checks stay), each in the
   Python that runs the library; and, whole processes, `import tasks` (what `inv --list` imports)
   against `import invoke` for scale: labvm.cli imports labvm.config only inside a task, so a library
   lands on every task that reads hosts.yml, not on `inv --list`.
2. Validating the repository's hosts.yml and a generated 50-profile hosts.yml, already parsed: each
   library's models for every profile (`defaults:` merged in) against labvm.config.load (every key of
   every profile checked) with the task's profile resolved to a Profile, as every task does; and with
   every profile resolved (${VAR}, the path rules on the file system, a Profile each), for reference.
3. The same 50 profiles with one key misspelt: the time to labvm's one-line message (file, key path,
   did-you-mean, the valid keys), built from the library's error where the library's own says less.

Each line is the median of several rounds, each round every arm in turn, each arm a fresh process
that reports the median of its own repetitions.  Nothing is asserted; the figures are printed.
"""

import argparse
import difflib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIBRARIES = ("pydantic", "msgspec", "cattrs")
TOP_KEYS = ("default", "defaults", "profiles")
_COMMON = ("provider", "address", "port", "user", "identity", "autostop", "sync_dir", "env", "notebook")
KEYS = {  # the subset each library declares, for did-you-mean: per provider, and in each nested mapping
    "local": _COMMON,
    "ssh": _COMMON,
    "aws": (*_COMMON, "region", "instance_type", "image", "volume_size", "spot", "elastic_ip", "tags", "subnet"),
    "env": ("manager", "packages", "environment_file", "prefix", "python"),
    "notebook": ("port", "local_port", "workspace", "multiplexer", "password"),
}


def report(name: str, value: float, base: float, unit: str, note: str) -> None:
    print(f"{name:<46} {value:8.2f} {unit:<3} baseline {base:8.2f} {unit:<3} ratio {value / base:5.2f}  ({note})")


# --- the schema in each library -------------------------------------------------------------------------


def _raise_problem(kind: Any, value: Any) -> Any:
    """value as labvm's Kind reads it, or a ValueError with the Kind's own words (the library adds where)."""
    message = kind.check(value)
    if message:
        raise ValueError(message)
    return kind.read(value)


def pydantic_schema() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """One validate function per provider: the profile's mapping -> a model, or pydantic's ValidationError."""
    from typing import Annotated, Literal, Optional

    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

    from labvm.config import kinds

    def kind(k: Any) -> Any:
        return BeforeValidator(lambda value: _raise_problem(k, value))

    strict = ConfigDict(extra="forbid", strict=True, frozen=True)
    Port = Annotated[int, Field(ge=1, le=65535)]

    class Env(BaseModel):
        model_config = strict
        manager: Literal["conda", "uv", "venv"] = "conda"
        packages: list[str] = ["jupyterlab"]  # strict: a YAML list is no tuple
        environment_file: Annotated[Optional[Path], kind(kinds.LOCAL_PATH)] = None
        prefix: Annotated[str, kind(kinds.HOST_PATH)] = "~/.labvm/env"
        python: Annotated[str, kind(kinds.HOST_PATH)] = "python3"

    class Notebook(BaseModel):
        model_config = strict
        port: Port = 8888
        local_port: Port = 8888
        workspace: Annotated[str, kind(kinds.WORKSPACE_PATH)] = "~/work"
        multiplexer: Literal["tmux", "screen", "nohup"] = "tmux"
        password: str = ""

    class Common(BaseModel):
        model_config = strict
        address: Annotated[str, kind(kinds.HOST)] = ""
        port: Port = 22
        user: Annotated[str, kind(kinds.USER_NAME)] = ""
        identity: Annotated[Optional[Path], kind(kinds.LOCAL_PATH)] = None
        autostop: Annotated[int, kind(kinds.DURATION_SECONDS)] = 3600
        sync_dir: Annotated[Path, kind(kinds.LOCAL_PATH)] = Path("notebooks")
        env: Env = Env()
        notebook: Notebook = Notebook()

    class Local(Common):
        provider: Literal["local"]

    class Ssh(Common):
        provider: Literal["ssh"]

    class Aws(Common):
        provider: Literal["aws"]
        region: str = ""
        instance_type: str = ""
        image: str = "ubuntu-24.04"
        volume_size: Annotated[int, Field(gt=0)] = 100
        spot: bool = False
        elastic_ip: bool = False
        tags: dict[str, str] = {}
        subnet: str = ""

    return {
        model.model_fields["provider"].annotation.__args__[0]: model.model_validate  # type: ignore[union-attr]
        for model in (Local, Ssh, Aws)
    }


def pydantic_problems(error: Any) -> list[tuple[str, str, str]]:
    """(key path, unknown key or "", message) of each error pydantic found."""
    return [
        (
            ".".join(str(part) for part in e["loc"]),
            str(e["loc"][-1]) if e["type"] == "extra_forbidden" else "",
            e["msg"].removeprefix("Value error, "),
        )
        for e in error.errors()
    ]


def msgspec_schema() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """One validate function per provider: the profile's mapping -> a Struct, or msgspec's ValidationError."""
    from typing import Annotated, Literal, Optional, Union

    import msgspec

    from labvm.config import kinds

    Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
    options = {"forbid_unknown_fields": True, "kw_only": True}

    class Env(msgspec.Struct, **options):  # type: ignore[call-arg]
        manager: Literal["conda", "uv", "venv"] = "conda"
        packages: tuple[str, ...] = ("jupyterlab",)
        environment_file: Optional[str] = None
        prefix: str = "~/.labvm/env"
        python: str = "python3"

        def __post_init__(self) -> None:  # msgspec has no per-field validator: the checks run here
            for name in ("prefix", "python"):
                _raise_problem(kinds.HOST_PATH, getattr(self, name))
            if self.environment_file is not None:
                _raise_problem(kinds.LOCAL_PATH, self.environment_file)

    class Notebook(msgspec.Struct, **options):  # type: ignore[call-arg]
        port: Port = 8888
        local_port: Port = 8888
        workspace: str = "~/work"
        multiplexer: Literal["tmux", "screen", "nohup"] = "tmux"
        password: str = ""

        def __post_init__(self) -> None:
            _raise_problem(kinds.WORKSPACE_PATH, self.workspace)

    class Common(msgspec.Struct, **options):  # type: ignore[call-arg]
        address: str = ""
        port: Port = 22
        user: str = ""
        identity: Optional[str] = None
        autostop: Union[int, str, bool] = 3600
        sync_dir: str = "notebooks"
        env: Env = msgspec.field(default_factory=Env)
        notebook: Notebook = msgspec.field(default_factory=Notebook)

        def __post_init__(self) -> None:
            if self.address:
                _raise_problem(kinds.HOST, self.address)
            if self.user:
                _raise_problem(kinds.USER_NAME, self.user)
            for path in (self.identity, self.sync_dir):
                if path is not None:
                    _raise_problem(kinds.LOCAL_PATH, path)
            self.autostop = _raise_problem(kinds.DURATION_SECONDS, self.autostop)

    class Local(Common, **options):  # type: ignore[call-arg]
        provider: Literal["local"]

    class Ssh(Common, **options):  # type: ignore[call-arg]
        provider: Literal["ssh"]

    class Aws(Common, **options):  # type: ignore[call-arg]
        provider: Literal["aws"]
        region: str = ""
        instance_type: str = ""
        image: str = "ubuntu-24.04"
        volume_size: Annotated[int, msgspec.Meta(gt=0)] = 100
        spot: bool = False
        elastic_ip: bool = False
        tags: dict[str, str] = msgspec.field(default_factory=dict)
        subnet: str = ""

    def validate(model: type) -> Callable[[dict[str, Any]], Any]:
        return lambda data: msgspec.convert(data, type=model, strict=True)

    return {"local": validate(Local), "ssh": validate(Ssh), "aws": validate(Aws)}


def msgspec_problems(error: Any) -> list[tuple[str, str, str]]:
    """msgspec stops at the first error: one (key path, unknown key or "", message), parsed from its text."""
    message, _, at = str(error).partition(" - at `$")
    path = at.rstrip("`").lstrip(".")
    if message.startswith("Object contains unknown field `"):
        unknown = message.split("`")[1]
        return [(f"{path}.{unknown}".lstrip("."), unknown, message)]
    return [(path, "", message)]


def cattrs_schema() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """One validate function per provider: the profile's mapping -> an attrs class, or cattrs' errors.
    labvm's checks are structure hooks on NewTypes: an attrs validator's error loses the key's path."""
    from typing import Literal, NewType, Optional

    import attrs
    import cattrs

    from labvm.config import kinds

    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def checked(name: str, kind: Any) -> Any:
        sort = NewType(name, str)
        converter.register_structure_hook(sort, lambda value, _type: _raise_problem(kind, value))
        return sort

    Host, UserName, LocalPath = (
        checked("Host", kinds.HOST),
        checked("UserName", kinds.USER_NAME),
        checked("LocalPath", kinds.LOCAL_PATH),
    )
    HostPath, Workspace = checked("HostPath", kinds.HOST_PATH), checked("Workspace", kinds.WORKSPACE_PATH)
    Duration, Port = checked("Duration", kinds.DURATION_SECONDS), checked("Port", kinds.PORT)
    Positive = checked("Positive", kinds.POSITIVE_INT)

    @attrs.frozen
    class Env:
        manager: Literal["conda", "uv", "venv"] = "conda"
        packages: tuple[str, ...] = ("jupyterlab",)
        environment_file: Optional[LocalPath] = None
        prefix: HostPath = "~/.labvm/env"
        python: HostPath = "python3"

    @attrs.frozen
    class Notebook:
        port: Port = 8888
        local_port: Port = 8888
        workspace: Workspace = "~/work"
        multiplexer: Literal["tmux", "screen", "nohup"] = "tmux"
        password: str = ""

    @attrs.frozen(kw_only=True)
    class Common:
        provider: str
        address: Host = ""
        port: Port = 22
        user: UserName = ""
        identity: Optional[LocalPath] = None
        autostop: Duration = 3600
        sync_dir: LocalPath = "notebooks"
        env: Env = attrs.Factory(Env)
        notebook: Notebook = attrs.Factory(Notebook)

    @attrs.frozen(kw_only=True)
    class Aws(Common):
        region: str = ""
        instance_type: str = ""
        image: str = "ubuntu-24.04"
        volume_size: Positive = 100
        spot: bool = False
        elastic_ip: bool = False
        tags: dict[str, str] = attrs.Factory(dict)
        subnet: str = ""

    def exactly(sort: type) -> Callable[[Any, Any], Any]:  # cattrs' own hooks call int("22") and str(8)
        def structure(value: Any, _type: Any) -> Any:
            if type(value) is not sort:
                raise ValueError(f"must be {sort.__name__}, not {value!r}")
            return value

        return structure

    for sort in (int, str, bool):
        converter.register_structure_hook(sort, exactly(sort))

    def validate(model: type) -> Callable[[dict[str, Any]], Any]:
        return lambda data: converter.structure(data, model)

    return {"local": validate(Common), "ssh": validate(Common), "aws": validate(Aws)}


def cattrs_problems(error: Any) -> list[tuple[str, str, str]]:
    """(key path, unknown key or "", message) of each error, from cattrs.transform_error's lines
    (with the check's own words, not cattrs' "invalid value")."""
    import cattrs

    def words(exception: BaseException, _type: Any) -> str:
        return str(exception) if isinstance(exception, ValueError) else cattrs.v.format_exception(exception, _type)

    problems = []
    for line in cattrs.transform_error(error, path="$", format_exception=words):
        message, _, path = line.rpartition(" @ $")
        path = path.lstrip(".")
        if message.startswith("extra fields found ("):
            problems += [
                (f"{path}.{unknown}".lstrip("."), unknown, "extra field")
                for unknown in message[len("extra fields found (") : -1].split(", ")
            ]
        else:
            problems.append((path, "", message))
    return problems


SCHEMAS = {
    "pydantic": (pydantic_schema, pydantic_problems),
    "msgspec": (msgspec_schema, msgspec_problems),
    "cattrs": (cattrs_schema, cattrs_problems),
}


# --- the arms -------------------------------------------------------------------------------------------


def _merge(defaults: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A profile over `defaults:`, a mapping merged one level down (as labvm.config.hosts._merge)."""
    merged = dict(defaults)
    for key, value in settings.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if nested else value
    return merged


def library_load(library: str, validators: dict[str, Any], doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """doc's profiles as the library's models, or LookupError with labvm's lines (file, key, did-you-mean)."""
    _, problems_of = SCHEMAS[library]
    problems = [
        f"{key}: unknown key{did_you_mean(key, TOP_KEYS)}; valid keys: {', '.join(TOP_KEYS)}"
        for key in doc
        if key not in TOP_KEYS
    ]
    defaults, models = doc.get("defaults") or {}, {}
    for name, settings in (doc.get("profiles") or {}).items():
        merged = _merge(defaults, settings)
        provider = merged.get("provider")
        if provider not in validators:
            problems.append(
                f"profiles.{name}.provider: must be one of {', '.join(validators)}"
                f"{did_you_mean(str(provider), validators)}"
            )
            continue
        try:
            models[name] = validators[provider](merged)
        except Exception as error:  # each library's own ValidationError
            for key, unknown, message in problems_of(error):
                if unknown:
                    valid = KEYS[key.split(".")[0] if "." in key else provider]
                    message = f"unknown key{did_you_mean(unknown, valid)}; valid keys: {', '.join(valid)}"
                problems.append(f"profiles.{name}.{key}: {message}")
    if problems:
        raise LookupError("\n".join(f"{path}: {p}" for p in problems))
    return models


def did_you_mean(word: str, choices: Any) -> str:
    """As labvm.config.kinds.did_you_mean, so every arm builds the same message."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def worker(arm: str, files: list[Path], repetitions: int) -> None:
    """Print {file: [median seconds to validate it, its first message line]} as JSON: one arm, in-process."""
    sys.path[:0] = [str(ROOT)]
    from labvm.config import hosts, reading

    docs = {path: reading.parse_yaml(path, reading.read_text(path, "hosts.yml")) for path in files}
    if arm.startswith("labvm"):
        hosts.read_text = lambda path, what: str(path)  # the file is parsed already: validation alone is timed
        hosts.parse_yaml = lambda path, text: docs[path]

        def validate(path: Path) -> Any:
            try:
                config = hosts.load(path)
                return [config.profile(name) for name in (config.names if arm == "labvm-all" else [config.default])]
            except hosts.LabvmError as error:
                return str(error)
    else:
        validators = SCHEMAS[arm][0]()

        def validate(path: Path) -> Any:
            try:
                return library_load(arm, validators, docs[path], path)
            except LookupError as error:
                return str(error)

    results = {}
    for path in files:
        times, outcome = [], None
        for _ in range(repetitions):
            start = time.perf_counter()
            outcome = validate(path)
            times.append(time.perf_counter() - start)
        results[str(path)] = [statistics.median(times), outcome if isinstance(outcome, str) else ""]
    print(json.dumps(results))


# --- the hosts.yml files --------------------------------------------------------------------------------


def generated_hosts(folder: Path, count: int = 50, typo: bool = False) -> Path:
    """A hosts.yml of `count` profiles (ssh, aws, local in turn) over the repository's `defaults:`;
    typo: profile p07's port written `prot`."""
    lines = [
        "default: p00",
        "defaults:",
        "  env: {manager: conda, packages: [jupyterlab, numpy, pandas]}",
        "  notebook: {port: 8888, local_port: 8888, workspace: ~/work, multiplexer: tmux}",
        "  autostop: 60m",
        "profiles:",
    ]
    for i in range(count):
        lines.append(f"  p{i:02d}:")
        if i % 3 == 0:
            lines += [
                "    provider: ssh",
                f"    address: ws{i}.example.org",
                "    user: ubuntu",
                f"    {'prot' if typo and i == 7 else 'port'}: 22",
                "    identity: ~/.ssh/id_ed25519",
                "    sync_dir: notebooks/{profile}",
                "    autostop: 1h30m",
            ]
        elif i % 3 == 1:
            lines += [
                "    provider: aws",
                "    region: us-west-2",
                "    instance_type: c5.large",
                "    image: ubuntu-24.04",
                "    volume_size: 100",
                "    spot: false",
                "    elastic_ip: true",
                "    tags: {Project: ocean, Owner: hedy}",
                f"    {'prot' if typo and i == 7 else 'port'}: 22",
                "    env: {manager: uv, packages: [jupyterlab, xarray]}",
                "    notebook: {port: 8890}",
            ]
        else:
            lines += ["    provider: local", "    env: {manager: uv, packages: [jupyterlab]}"]
    path = folder / ("hosts-typo.yml" if typo else "hosts-50.yml")
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the run --------------------------------------------------------------------------------------------


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def pythons(other: str | None) -> dict[str, str]:
    """The Python that imports each library: this one, else --python; a library neither imports is skipped."""
    found = {}
    for library in LIBRARIES:
        for python in (sys.executable, other):
            imports = python and subprocess.run([python, "-c", f"import {library}, yaml"], capture_output=True)
            if imports and imports.returncode == 0:
                found[library] = python
                break
        else:
            print(f"{library}: skipped (neither {sys.executable} nor {other or 'a --python'} imports it)")
    return found


def in_process(python: str, before: str, timed_code: str) -> float:
    """Seconds `timed_code` takes in a fresh `python` that has run `before` (no start-up in the figure)."""
    code = f"{before}; import time; start = time.perf_counter(); {timed_code}; print(time.perf_counter() - start)"
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        sys.exit(f"{python} -c {timed_code!r} failed: {run.stderr.strip().splitlines()[-1]}")
    return float(run.stdout)


def bench_startup(found: dict[str, str], rounds: int) -> None:
    """1.: import labvm.config as now, against the same with the library imported and the schema's classes
    defined (labvm's checks stay), each in the Python that runs the library; `import tasks` for scale."""
    before = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]; import yaml, bench_config as b"
    arms = {f"now:{python}": (python, "import labvm.config") for python in {sys.executable, *found.values()}}
    arms.update(
        {library: (python, f"import labvm.config; b.SCHEMAS[{library!r}][0]()") for library, python in found.items()}
    )
    times: dict[str, list[float]] = {}
    floor: dict[str, list[float]] = {}
    for _ in range(rounds):
        for arm, (python, code) in arms.items():
            times.setdefault(arm, []).append(in_process(python, before, code))
        floor.setdefault("tasks", []).append(timed([sys.executable, "-c", "import tasks"]))
        floor.setdefault("invoke", []).append(timed([sys.executable, "-c", "import invoke"]))
    ms = {arm: statistics.median(each) * 1e3 for arm, each in {**times, **floor}.items()}
    now = ms[f"now:{sys.executable}"]
    report("import labvm.config (dataclasses), in-process", now, now, "ms", "the baseline")
    for library, python in found.items():
        base = ms[f"now:{python}"]
        report(
            f"  + {library} and the schema's classes",
            ms[library],
            base,
            "ms",
            f"adds {ms[library] - base:.1f} ms to every task that reads hosts.yml",
        )
    report(
        "import tasks (inv --list), whole process",
        ms["tasks"],
        ms["invoke"],
        "ms",
        "baseline: import invoke; inv --list imports no schema",
    )


def bench_validation(found: dict[str, str], files: dict[str, Path], rounds: int, repetitions: int) -> None:
    """2. and 3.: each library's median against labvm.config.load's, on the same parsed documents."""
    arms = {"labvm": sys.executable, "labvm-all": sys.executable, **found}
    runs: dict[str, list[dict[str, list[Any]]]] = {}
    for _ in range(rounds):
        for arm, python in arms.items():
            command = [
                python,
                str(Path(__file__).resolve()),
                "--worker",
                arm,
                "--repetitions",
                str(repetitions),
                *map(str, files.values()),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            runs.setdefault(arm, []).append(json.loads(output))
    median = {
        arm: {path: statistics.median(run[path][0] for run in each) * 1e3 for path in each[0]}
        for arm, each in runs.items()
    }
    for arm, each in runs.items():  # a good file that fails would time the error path instead
        for label, path in files.items():
            if label != "one bad key" and each[0][str(path)][1]:
                print(f"WARNING: {arm} refuses {label}: {each[0][str(path)][1].splitlines()[0]}")
    for label, path in files.items():
        base = median["labvm"][str(path)]
        report(f"labvm.config.load, {label}", base, base, "ms", "every key checked, the task's profile resolved")
        report(
            f"  labvm, all resolved, {label}",
            median["labvm-all"][str(path)],
            base,
            "ms",
            "${VAR}, the path rules, a Profile each",
        )
        for library in found:
            report(f"  {library}, {label}", median[library][str(path)], base, "ms", "every profile a model")
    print("\nThe message for the misspelt key, first line, each arm:")
    for arm, each in runs.items():
        message = each[0][str(files["one bad key"])][1].splitlines()
        print(f"  {arm:<9} {message[0] if message else '(no error!)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="a Python that imports the libraries this one lacks (e.g. a throwaway venv)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repetitions", type=int, default=50, help="validations of each file per worker process")
    parser.add_argument("--worker", choices=("labvm", "labvm-all", *LIBRARIES), help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.files, args.repetitions)
        return
    print(f"hosts.yml schema benchmarks, {__import__('os').cpu_count()} cores, Python {sys.version.split()[0]}")
    found = pythons(args.python)
    for library, python in found.items():
        version = subprocess.run(
            [python, "-c", f"from importlib.metadata import version; print(version({library!r}))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"{library} {version} from {python}")
    bench_startup(found, args.rounds)
    folder = Path(tempfile.mkdtemp())
    files = {
        "repository hosts.yml": folder / "hosts.yml",
        "50 profiles": generated_hosts(folder),
        "one bad key": generated_hosts(folder, typo=True),
    }
    files["repository hosts.yml"].write_text((ROOT / "hosts.yml").read_text())
    bench_validation(found, files, args.rounds, args.repetitions)


if __name__ == "__main__":
    main()
