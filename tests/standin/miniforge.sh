#!/bin/sh
# A stand-in for the Miniforge installer (Miniforge itself cannot be downloaded here).
# It honours the batch flags labvm uses (-b -p PREFIX) and installs a `conda` that keeps
# the CLI contract labvm relies on: create / install / list --export / env update -p.
# Packages are recorded, not installed; every call is logged to PREFIX/calls.log.
set -eu
batch=0 prefix=""
while [ $# -gt 0 ]; do
    case $1 in -b) batch=1 ;; -p) prefix=$2; shift ;; esac
    shift
done
[ "$batch" = 1 ] && [ -n "$prefix" ] || { echo "usage: miniforge.sh -b -p PREFIX" >&2; exit 2; }
mkdir -p "$prefix/bin"
cat > "$prefix/bin/conda" <<'CONDA'
#!/bin/sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
printf '%s\n' "$*" >> "$root/calls.log"
command=$1; shift
[ "$command" = env ] && { command="env $1"; shift; }
prefix="" file="" packages=""
while [ $# -gt 0 ]; do
    case $1 in
        -p) prefix=$2; shift ;;
        -f) file=$2; shift ;;
        -y|-q|--export) ;;
        *) packages="$packages $1" ;;
    esac
    shift
done
case $command in
    create)
        mkdir -p "$prefix/bin" "$prefix/conda-meta"
        ln -sf "$(command -v python3)" "$prefix/bin/python"
        for p in $packages; do echo "$p=1.0=0" >> "$prefix/conda-meta/packages"; done ;;
    install)
        for p in $packages; do echo "$p=1.0=0" >> "$prefix/conda-meta/packages"; done ;;
    list)
        cat "$prefix/conda-meta/packages" 2>/dev/null || true ;;
    "env update")
        [ -f "$file" ] ;;
    *) echo "stand-in conda: $command not supported" >&2; exit 2 ;;
esac
CONDA
chmod +x "$prefix/bin/conda"
