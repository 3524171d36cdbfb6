"""hosts.yml (+ .env) -> validated, frozen Profile objects.

Every problem in the file is reported at once, one line each, naming the file, the
profile and the key, with the closest valid key for a typo. `${VAR}` is resolved only for
the profiles a task uses, so a missing GCE_PROJECT never blocks `inv up --host local`.

Both files may come from a colleague or a repository, so each is a trust boundary:
- `.env` feeds `${VAR}`; only dotenv_to_environ() names also enter the process environment,
  and a name that changes where labvm talks or what it (or a shell it starts) runs is refused.
- `${VAR}` reads `.env` and, from the environment, only environ_to_hosts() names: a shared
  hosts.yml cannot carry GITHUB_TOKEN or AWS_SECRET_ACCESS_KEY out in a host name.
- a local path hosts.yml names (environment_file, which goes to the VM; sync_dir, which labvm writes
  and sends from) is what the checkout could have shipped: inside hosts.yml's folder, no dot part, none
  of labvm's own state (_checkout_path_problem); on the VM paths are plain (workspace), and sync
  patterns never reach a dot-folder.
- the cloud SDKs' own files are named by the user alone: their variables never come from .env, and
  from the shell only as full paths (providers.registry.sdk_files_problem), never read from the
  current folder.

The parts, each importing only those before it:
    reading     bounded UTF-8 reads, strict YAML, no anchor bomb
    variables   .env, the environment, ${VAR}: the allow and refuse lists (the clouds' names: the registry's)
    kinds       what a value may be: one Kind (check + reading) per sort of value
    paths       the local paths hosts.yml names (_checkout_path_problem)
    member      a cluster worker's name among profiles (<head>+w<N>)
    schema      Profile and its parts: each key declared once, on its field (a cloud's: on its settings)
    hosts       load() and Config: the file read whole, a profile resolved on demand
"""

from ..errors import LabvmError
from .hosts import MAX_PROFILE_NAME, TOP_KEYS, Config, load
from .kinds import (
    CONTROL,
    DNS_LABEL,
    DURATION,
    JUMP,
    SIZE,
    USER,
    WORKSPACE,
    Kind,
    host_problem,
    jump_problem,
    parse_duration,
    parse_size,
)
from .member import Member
from .paths import PACKAGE_DIR
from .reading import MAX_FILE_BYTES, MAX_VALUES
from .schema import (
    CLUSTER_PACKAGES,
    COMMON_KEYS,
    DEFAULT_AUTOSTOP,
    DEFAULT_SYNC,
    DEFAULT_SYNC_MAX_FILE,
    DEFAULT_SYNC_MAX_TOTAL,
    ENV_MANAGERS,
    EXISTING,
    MINIFORGE_URL,
    MULTIPLEXERS,
    ClusterSpec,
    DataSpec,
    EnvSpec,
    NotebookSpec,
    Profile,
    cloud_keys,
    provider_names,
)
from .variables import DOTENV_OWNER, VAR, dotenv_refused, dotenv_to_environ, environ_to_hosts

__all__ = [
    "CLUSTER_PACKAGES",
    "COMMON_KEYS",
    "CONTROL",
    "DEFAULT_AUTOSTOP",
    "DEFAULT_SYNC",
    "DEFAULT_SYNC_MAX_FILE",
    "DEFAULT_SYNC_MAX_TOTAL",
    "DNS_LABEL",
    "DOTENV_OWNER",
    "DURATION",
    "ENV_MANAGERS",
    "EXISTING",
    "JUMP",
    "MAX_FILE_BYTES",
    "MAX_PROFILE_NAME",
    "MAX_VALUES",
    "MINIFORGE_URL",
    "MULTIPLEXERS",
    "PACKAGE_DIR",
    "SIZE",
    "TOP_KEYS",
    "USER",
    "VAR",
    "WORKSPACE",
    "ClusterSpec",
    "Config",
    "DataSpec",
    "EnvSpec",
    "Kind",
    "LabvmError",
    "Member",
    "NotebookSpec",
    "Profile",
    "cloud_keys",
    "dotenv_refused",
    "dotenv_to_environ",
    "environ_to_hosts",
    "host_problem",
    "jump_problem",
    "load",
    "parse_duration",
    "parse_size",
    "provider_names",
]
