# Sourced by labvm's scripts on the host: state paths (layout.py, which labvm reads too) and small helpers.
# Every value from hosts.yml arrives as an environment variable and stays quoted.
. "$(dirname "$0")/layout.py"
STATE="$HOME/$STATE_DIR"

say() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ~ and ~/x arrive literally (they are quoted on the way); expand them here.
expand_home() {
    case $1 in
        "~") printf '%s\n' "$HOME" ;;
        "~/"*) printf '%s/%s\n' "$HOME" "${1#"~/"}" ;;
        *) printf '%s\n' "$1" ;;
    esac
}

# The interpreter for nbctl.py: the env's own once it exists (so status works early too).
env_python() {
    if [ -x "$1/bin/python" ]; then printf '%s\n' "$1/bin/python"; else command -v python3 || die "python3 not found on the host; install it (apt-get install python3)"; fi
}
