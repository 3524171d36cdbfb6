#!/bin/sh
# Makes the Python environment Jupyter runs in, and installs only what is missing.
#   LABVM_ENV_MANAGER  conda | uv | venv
#   LABVM_ENV_PREFIX   where the environment lives (~ allowed)
#   LABVM_PACKAGES     requirements, one per line
#   LABVM_ENV_FILE     environment.yml (conda) or requirements.txt (uv/venv) already on the host, or empty
#   LABVM_PYTHON       interpreter for uv/venv
#   LABVM_CONDA_URL, LABVM_CONDA_SHA256, LABVM_CONDA_ROOT   Miniforge installer and where it goes
set -eu
. "$(dirname "$0")/common.sh"

manager=${LABVM_ENV_MANAGER:?}
prefix=$(expand_home "${LABVM_ENV_PREFIX:?}")
python=${LABVM_PYTHON:-python3}
env_file=${LABVM_ENV_FILE:-}
mkdir -p "$STATE"
ENV_STAMP=.labvm-env-state  # in the env: it goes with it
# Lab networks often inspect TLS with their own CA: trust the system's store, as pip and conda do.
UV_SYSTEM_CERTS=1
export UV_SYSTEM_CERTS

# Requirements from LABVM_PACKAGES as positional parameters (no word splitting, no globbing).
set --
while IFS= read -r requirement; do
    [ -n "$requirement" ] && set -- "$@" "$requirement"
done <<END
${LABVM_PACKAGES:-}
END

# The env's state as one digest: its inputs (hosts.yml's env settings, the environment file) and the
# names of its packages' metadata folders, which carry their versions (site-packages' *.dist-info and
# *.egg-info, what the package-by-package check below reads; conda-meta's name-version-build.json).
# Any install, uninstall or version change, labvm's or by hand (pip, uv, conda), adds, removes or
# renames one; Python's own files (__pycache__) do not count.  Fails (then the env is checked
# package by package) where there is no env yet.
env_state() {
    [ -x "$prefix/bin/python" ] || return 1
    installed=$(for folder in "$prefix"/lib/python*/site-packages "$prefix/conda-meta"; do
        if [ -d "$folder" ]; then ls -d "$folder"/*.dist-info "$folder"/*.egg-info "$folder"/*.json 2>/dev/null || true; fi
    done)
    [ -n "$installed" ] || return 1
    file_digest=
    if [ -n "$env_file" ]; then file_digest=$(sha256sum < "$env_file") || return 1; fi
    printf '%s\n' "$manager" "$python" "${LABVM_CONDA_ROOT:-}" "${LABVM_PACKAGES:-}" "$file_digest" "$installed" \
        | sha256sum | cut -d' ' -f1
}

# The state this script last left the env current in; a prepared host answers from it without
# starting the env's Python (about 0.1 s an `up`).
current_state() {
    state=$(env_state) || return 1
    [ "$state" = "$(cat "$prefix/$ENV_STAMP" 2>/dev/null || true)" ]
}

remember_state() {
    state=$(env_state) || { rm -f "$prefix/$ENV_STAMP"; return 0; }
    printf '%s\n' "$state" > "$prefix/$ENV_STAMP.$$" && mv -f "$prefix/$ENV_STAMP.$$" "$prefix/$ENV_STAMP"
}

if current_state; then
    say "env: nothing to do; every package is in $prefix"
    exit 0
fi

# Prints each requirement the env does not satisfy yet, one per line.
missing_pip() {
    [ -x "$prefix/bin/python" ] || { printf '%s\n' "$@"; return; }
    "$prefix/bin/python" -c '
import re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
for spec in sys.argv[1:]:
    try:
        if Requirement:
            req = Requirement(spec)
            version = metadata.version(req.name)
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                print(spec)
        else:
            metadata.version(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])
    except Exception:
        print(spec)
' "$@"
}

missing_conda() {
    [ -x "$prefix/bin/python" ] || { printf '%s\n' "$@"; return; }
    installed=$("$conda" list -p "$prefix" --export)
    for requirement in "$@"; do
        name=$(printf '%s\n' "$requirement" | sed 's/[<>=! \[].*//')
        printf '%s\n' "$installed" | awk -F= -v n="$name" 'tolower($1) == tolower(n) {found = 1} END {exit !found}' \
            || printf '%s\n' "$requirement"
    done
}

find_uv() {
    for candidate in "$(command -v uv 2>/dev/null || true)" "$HOME/.local/bin/uv" "$STATE/uv/bin/uv"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then printf '%s\n' "$candidate"; return 0; fi
    done
    return 1
}

fetch() {
    case $1 in
        /*) cp "$1" "$2" ;;
        file://*) cp "${1#file://}" "$2" ;;
        *) if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$2" "$1"
           elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
           else die "neither curl nor wget on the host to download $1"; fi ;;
    esac
}

install_uv() {
    say "env: installing uv into $STATE/uv"
    if "$python" -m venv "$STATE/uv" >/dev/null 2>&1 && "$STATE/uv/bin/pip" install -q uv >&2; then
        return 0
    fi
    rm -rf "$STATE/uv"
    tmp=$(mktemp)
    fetch https://astral.sh/uv/install.sh "$tmp" || die "could not install uv; install it on the host (pip install uv) or set env.manager: venv"
    UV_INSTALL_DIR="$STATE/uv/bin" UV_NO_MODIFY_PATH=1 sh "$tmp" >&2
    rm -f "$tmp"
}

# Runs an installer with its output in ~/$ENV_LOG; shows its progress lines (uv's
# "Resolved/Prepared/Installed N packages", warnings, errors) but not one line per package,
# and ends with a one-line summary.  Keeps the installer's exit status.
quietly() {
    what=$1; shift
    started=$(date +%s)
    : > "$HOME/$ENV_LOG"
    # Its own status file: a run cut off by a dropped connection may still be ending, and
    # machines sharing a home (NFS) run this at the same time.
    status_file=$(mktemp "$STATE/env.status.XXXXXX")
    { "$@" 2>&1; echo "$?" > "$status_file"; } | tee -a "$HOME/$ENV_LOG" | awk '
        /^ *[-+~] [A-Za-z0-9_.-]+[=@ ]/ { next }
        NF { print "env:   " $0; fflush() }' >&2
    status=$(cat "$status_file"); rm -f "$status_file"
    [ "$status" = 0 ] || return "${status:-1}"
    count=$(grep -c '^ *+ ' "$HOME/$ENV_LOG" || true)
    if [ "$count" -gt 0 ]; then say "env: installed $what: $count packages in $(( $(date +%s) - started ))s (list: ~/$ENV_LOG)"
    else say "env: installed $what in $(( $(date +%s) - started ))s (details: ~/$ENV_LOG)"; fi
}

file_changed() {
    [ -n "$env_file" ] || return 1
    new=$(sha256sum "$env_file" | cut -d' ' -f1)
    [ "$new" != "$(cat "$prefix/.labvm-environment-file" 2>/dev/null || true)" ]
}
remember_file() { sha256sum "$env_file" | cut -d' ' -f1 > "$prefix/.labvm-environment-file"; }


case $manager in
    uv|venv)
        missing=$(missing_pip "$@")
        if [ "$manager" = uv ]; then
            uv=$(find_uv) || { install_uv; uv=$(find_uv) || die "uv did not install; set env.manager: venv"; }
        fi
        if [ ! -x "$prefix/bin/python" ]; then
            say "env: creating $manager environment in $prefix"
            if [ "$manager" = uv ]; then "$uv" venv -q --python "$python" "$prefix" >&2
            else "$python" -m venv "$prefix" >&2 || die "$python -m venv failed; on Debian/Ubuntu install python3-venv, or set env.manager: uv"; fi
        fi
        pip_install() {
            if [ "$manager" = uv ]; then "$uv" pip install --python "$prefix/bin/python" "$@"
            else "$prefix/bin/python" -m pip install -q --disable-pip-version-check "$@"; fi
        }
        ;;
    conda)
        conda_root=$(expand_home "${LABVM_CONDA_ROOT:?}")
        conda="$conda_root/bin/conda"
        if [ ! -x "$conda" ]; then
            url=${LABVM_CONDA_URL:?}
            say "env: installing Miniforge into $conda_root from $url"
            installer=$(mktemp)
            fetch "$url" "$installer"
            if [ -n "${LABVM_CONDA_SHA256:-}" ]; then
                actual=$(sha256sum "$installer" | cut -d' ' -f1)
                [ "$actual" = "$LABVM_CONDA_SHA256" ] || { rm -f "$installer"; die "Miniforge installer sha256 is $actual, expected env.conda_installer_sha256 $LABVM_CONDA_SHA256"; }
            fi
            bash "$installer" -b -p "$conda_root" >&2
            rm -f "$installer"
        fi
        missing=$(missing_conda "$@")
        if [ ! -x "$prefix/bin/python" ]; then
            say "env: creating conda environment in $prefix"
            "$conda" create -y -q -p "$prefix" python >&2
        fi
        pip_install() { "$conda" install -y -q -p "$prefix" "$@"; }
        ;;
    *) die "env.manager must be conda, uv or venv, not $manager" ;;
esac

changed=0
if [ -n "$missing" ]; then
    set --
    while IFS= read -r requirement; do set -- "$@" "$requirement"; done <<END
$missing
END
    say "env: installing $*"
    quietly "$*" pip_install "$@" || die "installing $* failed (see the lines above; all of it in ~/$ENV_LOG)"
    changed=1
fi
if file_changed; then
    say "env: applying $env_file"
    if [ "$manager" = conda ]; then quietly "$env_file" "$conda" env update -q -p "$prefix" -f "$env_file"
    else quietly "$env_file" pip_install -r "$env_file"; fi || die "applying $env_file failed (see the lines above; all of it in ~/$ENV_LOG)"
    remember_file
    changed=1
fi
remember_state
if [ "$changed" = 0 ]; then say "env: nothing to do; every package is in $prefix"; else say "env: ready in $prefix"; fi
