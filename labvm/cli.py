"""What tasks.py needs to stay thin: the profile for --host, and errors as one clean exit.

Nothing heavy is imported here: `inv --list` loads this module and should cost no more
than invoke itself; config, Fabric and the rest load when a task runs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import invoke
from invoke.exceptions import Exit
from invoke.parser import Argument, ParserContext

from .errors import LabvmError
from .text import clean

HOSTS_FILE = Path(__file__).resolve().parent.parent / "hosts.yml"
HOST_HELP = "profile in hosts.yml (default: $LABVM_HOST, then `default:`)"
# What each option's value is, shown in a task's help (`--interval=SECONDS`) where invoke would say STRING.
METAVARS = {
    "host": "PROFILE",
    "interval": "SECONDS",
    "idle": "DURATION",
    "extend": "DURATION",
    "workers": "COUNT",
    "keep": "COUNT",
    "from_image": "IMAGE",
    "name": "PREFIX",
    "share": "ACCOUNT",
    "size": "TYPE",
    "grow": "GB",
    "restore": "BACKUP",
    "zone": "ZONE",
    "local": "PATH",
    "remote": "PATH",
}


class Verb(invoke.Task):
    """A task whose --host has the short flag -H: `inv up -h`, as everywhere else, asks for the task's help.

    invoke gives each option its first free letter (--host would take -h, so `-h` alone failed with "Flag
    host needed value") and has no way to name a short flag (pyinvoke/invoke#174): this is the one place.
    """

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        """invoke's arguments, each value-taking one with the word its help shows for the value."""
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            argument.metavar = METAVARS.get(argument.attr_name or argument.name or "")  # type: ignore[attr-defined]
        return arguments

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        """invoke's options, with -h kept for help and -H for --host."""
        opts = super().arg_opts(name, default, taken_names | {"h", "H"})
        if name == "host" and self.auto_shortflags:
            opts["names"] = ["host", "H"]
        return opts


_INVOKES_HELP_FOR = ParserContext.help_for


def _help_for(self: ParserContext, flag: str) -> tuple[str, str]:
    """invoke's help line for a flag, with a Verb's metavar for the value: invoke names it by its type
    alone (STRING, INT; nothing for a repeatable option: invoke/parser/context.py, help_for) and has no
    setting for it."""
    names, text = _INVOKES_HELP_FOR(self, flag)
    argument = self.flags[flag]
    metavar = getattr(argument, "metavar", None)
    if not (metavar and argument.takes_value):
        return names, text
    spelled = sorted(self.names_for(flag), key=len)  # as invoke orders them: -H before --host
    return ", ".join(f"{name} {metavar}" if len(name) == 2 else f"{name}={metavar}" for name in spelled), text


ParserContext.help_for = _help_for  # type: ignore[method-assign]  # the one place invoke words an option


def task(*args: Any, **kwargs: Any) -> Any:
    """invoke's @task (bare or with options), each task a Verb."""
    return invoke.task(*args, klass=Verb, **kwargs)


def load():
    """hosts.yml read and checked (labvm.config); imported only when a task runs, for `inv --list`."""
    from . import config

    return config.load(HOSTS_FILE)


def session(context, host: str | None, plan: bool = False):
    """The profile's session; --plan or invoke's --dry print cloud API calls instead of making them."""
    from .session import Session

    return Session(load().resolve(host), context, plan or bool(context.config.run.dry))


def keys(context, host: str | None) -> None:
    """`inv keys`: the identity hosts.yml names is the question here, so a missing one refuses
    (other tasks go on with labvm's key, labvm.reach), before labvm's key is made or authorised."""
    from .session import Session
    from .sshconfig import SshHome

    profile = load().resolve(host)
    if profile.provider != "local":
        SshHome.current().check_identity(profile)
    with Session(profile, context, bool(context.config.run.dry)) as current:  # as session() makes it
        current.keys()


SYNC_HELP = "bring notebooks home first (--no-sync skips it)"
PLAN_HELP = "print the cloud API calls that would be made, and make none (invoke's --dry too)"


def status(context, host: str | None) -> str:
    """`inv status`: one block per profile of hosts.yml, or only --host's."""
    from . import status as status_module

    config = load()
    names = [config.resolve(host).name] if host else list(config.names)
    return "\n".join(status_module.report(config, names, context))


def check(context, host: str | None, as_json: bool) -> None:
    """Prints one line per check; exit status 1 when one failed."""
    from .preflight import report
    from .providers import Check
    from .session import Session

    profile = load().resolve(host)  # a broken hosts.yml is its own error, not a check
    try:
        current = Session(profile, context)
    except LabvmError as e:  # the cloud refused us while labvm connected (OpenStack logs in at once)
        results = [Check("credentials", False, str(e).splitlines()[0])]
    else:
        with current:
            results = current.check()
    print(report(results, as_json))
    if not all(c.ok for c in results):
        raise Exit(code=1)


def audit(as_json: bool) -> str:
    """`inv audit`: what labvm left in the clouds of hosts.yml, as a table or as JSON."""
    from .audit import report

    return report(load(), as_json)


def whole_number(value, option: str, default: int, minimum: int) -> int:
    """A numeric option as typed (invoke passes it as text): a clear line instead of a traceback."""
    if value is None:
        return default
    text = str(value).strip()
    if not text.isdigit():
        raise LabvmError(f"{option}: must be a whole number, e.g. {option} {default}, not {value!r}")
    if int(text) < minimum:
        raise LabvmError(f"{option}: must be at least {minimum}, not {text}")
    return int(text)


def guarded(body):
    """A LabvmError becomes its message and exit status 1: never a traceback."""

    @functools.wraps(body)
    def run(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except LabvmError as e:  # its words may come from a cloud, a VM or hosts.yml: cleaned here, whatever forgot to
            raise Exit("\n".join(f"labvm: {clean(line)}" for line in str(e).splitlines()), code=1) from None
        except KeyboardInterrupt:
            raise Exit("labvm: interrupted; run the same task again to resume", code=130) from None

    return run
