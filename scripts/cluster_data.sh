#!/bin/sh
# The head's data folder, read-only, at the same path on each cluster worker (sshfs over SFTP):
#   cluster_data.sh serve    on the head: the data key in ~/.ssh/authorized_keys, one line of labvm's,
#                            allowed only OpenSSH's sftp-server -R (read-only), only from the workers
#   cluster_data.sh unserve  on the head: that line removed
#   cluster_data.sh mount    on a worker: sshfs installed (sudo -n), the folder made, mounted read-only
#   cluster_data.sh unmount  on a worker: unmounted (fusermount), the data key's files removed
#   LABVM_DATA_MOUNT      the data folder (hosts.yml data.mount or its default; ~ is this login's home)
#   LABVM_DATA_MARK       serve, unserve: the comment that names labvm's line (one per cluster)
#   LABVM_DATA_KEY        serve: the data key's public half ("ssh-ed25519 AAAA...")
#   LABVM_DATA_FROM       serve: the workers' cluster addresses, one a line (sshd's from= list)
#   LABVM_DATA_SOURCE     mount: the folder on the head, as the head resolved it
#   LABVM_DATA_HEAD, LABVM_DATA_HEAD_PORT, LABVM_DATA_HEAD_USER   mount: where the head's sshd is
#   LABVM_DATA_FILES      mount, unmount: this worker's data key and known_hosts, FILES.key and
#                         FILES.known_hosts (labvm put them there, 0600), relative to the home
# Prints one JSON object on stdout; progress and errors go to stderr.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

# sftp-server's place on each family of distributions (Debian/Ubuntu, RHEL/Fedora/Rocky, Arch, SUSE).
SFTP_SERVERS="/usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/ssh/sftp-server"

json_text() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

folder() {
    dir=$(expand_home "${LABVM_DATA_MOUNT:?LABVM_DATA_MOUNT is required}")
    case $dir in /*) ;; *) dir="$HOME/$dir" ;; esac
    case $dir in *"
"*) die "the data folder's path holds a line break" ;; esac
}

# -- the head ---------------------------------------------------------------------------

# authorized_keys without labvm's line for this cluster (matched by its whole trailing comment).
others() {
    awk -v mark=" $mark" '{ n = length($0) - length(mark) + 1; if (n > 0 && substr($0, n) == mark) next; print }' "$keys"
}

serve() {
    folder
    [ -d "$dir" ] || die "no data folder at $dir on the head; inv up mounts it"
    real=$(cd "$dir" && pwd -P)
    server=
    for candidate in $SFTP_SERVERS; do
        if [ -x "$candidate" ]; then server=$candidate; break; fi
    done
    [ -n "$server" ] || die "OpenSSH's sftp-server is not installed on the head (looked in $SFTP_SERVERS); install openssh-server's sftp part"
    key=${LABVM_DATA_KEY:?LABVM_DATA_KEY is required}
    mark=${LABVM_DATA_MARK:?LABVM_DATA_MARK is required}
    # A worker named by DNS (cluster.hosts) connects from its addresses: sshd matches from= against
    # the address unless UseDNS is on, so each name is resolved here, where the connection arrives.
    from=
    for address in ${LABVM_DATA_FROM:?LABVM_DATA_FROM is required}; do
        resolved=$address
        case $address in
            *[!0-9.:]*) resolved=$(getent ahosts "$address" | awk '{print $1}' | sort -u | tr '\n' ' ') ;;
        esac
        [ -n "$resolved" ] || die "the worker $address does not resolve on the head"
        for one in $resolved; do from="${from:+$from,}$one"; done
    done
    # sshd(8) AUTHORIZED_KEYS FILE FORMAT: restrict (no pty, forwarding, agent, X11, user rc),
    # from= (only these addresses), command= (only sftp-server; -R: read-only, sftp-server(8)).
    line="restrict,from=\"$from\",command=\"$server -R\" $key $mark"
    umask 077
    [ -d "$HOME/.ssh" ] || mkdir -m 700 "$HOME/.ssh"
    keys="$HOME/.ssh/authorized_keys"
    [ -e "$keys" ] || : > "$keys"
    if [ "$(grep -cxF -- "$line" "$keys" || true)" = 1 ] && [ "$(others | wc -l)" -eq "$(($(wc -l < "$keys") - 1))" ]; then
        changed=false
        say "cluster data: the workers' read-only key already in ~/.ssh/authorized_keys"
    else
        # Written whole beside it and renamed: a half-written authorized_keys would lock the user out.
        staged="$keys.labvm-$$"
        { others; printf '%s\n' "$line"; } > "$staged"
        chmod 600 "$staged"
        mv -f "$staged" "$keys"
        changed=true
        say "cluster data: the workers' read-only key set in ~/.ssh/authorized_keys"
    fi
    printf '{"path": %s, "sftp_server": %s, "changed": %s}\n' "$(json_text "$real")" "$(json_text "$server")" "$changed"
}

unserve() {
    mark=${LABVM_DATA_MARK:?LABVM_DATA_MARK is required}
    keys="$HOME/.ssh/authorized_keys"
    removed=false
    if [ -e "$keys" ] && [ "$(others | wc -l)" -ne "$(wc -l < "$keys")" ]; then
        umask 077
        staged="$keys.labvm-$$"
        others > "$staged"
        chmod 600 "$staged"
        mv -f "$staged" "$keys"
        removed=true
    fi
    printf '{"removed": %s}\n' "$removed"
}

# -- a worker ---------------------------------------------------------------------------

# What is mounted at $dir: "FSTYPE SOURCE", or nothing.
mounted() {
    findmnt -n -o FSTYPE --mountpoint "$dir" 2>/dev/null | head -n 1 || true
}

mounted_source() {
    findmnt -n -o SOURCE --mountpoint "$dir" 2>/dev/null | head -n 1 || true
}

release() {
    if command -v fusermount3 >/dev/null 2>&1; then fusermount3 -u "$dir" 2>/dev/null || fusermount3 -uz "$dir"
    else fusermount -u "$dir" 2>/dev/null || fusermount -uz "$dir"; fi
}

need_sshfs() {
    command -v sshfs >/dev/null 2>&1 && return 0
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        say "cluster data: installing sshfs"
        if command -v apt-get >/dev/null 2>&1; then
            sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q sshfs >&2 \
                || { sudo -n apt-get update -q >&2 && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q sshfs >&2; }
        elif command -v dnf >/dev/null 2>&1; then
            sudo -n dnf install -y -q fuse-sshfs >&2
        fi
    fi
    command -v sshfs >/dev/null 2>&1 \
        || die "sshfs is not installed on this worker and could not be (sudo -n apt-get or dnf); install it (sudo apt-get install sshfs, or dnf install fuse-sshfs) and run inv cluster again"
}

mount_data() {
    folder
    files="$HOME/${LABVM_DATA_FILES:?LABVM_DATA_FILES is required}"
    source="${LABVM_DATA_HEAD_USER:?}@${LABVM_DATA_HEAD:?}:${LABVM_DATA_SOURCE:?}"
    case $LABVM_DATA_HEAD in *:*) source="$LABVM_DATA_HEAD_USER@[$LABVM_DATA_HEAD]:$LABVM_DATA_SOURCE" ;; esac
    case $files in *,*) die "the data key's path $files holds a comma, which sshfs -o cannot carry" ;; esac
    [ -s "$files.key" ] && [ -s "$files.known_hosts" ] || die "the data key is not on this worker; inv cluster puts it"
    action=mounted
    case $(mounted) in
        "") ;;
        fuse.sshfs)
            if [ "$(mounted_source)" = "$source" ] && ls "$dir" >/dev/null 2>&1; then
                action="already mounted"
            else  # another head, or its sshfs died: mounted again
                say "cluster data: $dir was mounted from $(mounted_source); mounting it again"
                release
                action=remounted
            fi
            ;;
        *) die "$dir is already a mount point ($(mounted)) on this worker; labvm leaves it as it is" ;;
    esac
    if [ "$action" != "already mounted" ]; then
        need_sshfs
        [ -d "$dir" ] || mkdir -p "$dir"
        [ -z "$(ls -A "$dir")" ] || die "$dir on this worker holds files the mount would hide; move them and run inv cluster again"
        err="$files.err"
        if ! sshfs -o "ro,reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,ConnectTimeout=15" \
            -o "IdentityFile=$files.key,IdentitiesOnly=yes,UserKnownHostsFile=$files.known_hosts" \
            -o "GlobalKnownHostsFile=/dev/null,StrictHostKeyChecking=yes,UpdateHostKeys=no,BatchMode=yes" \
            -o "Port=${LABVM_DATA_HEAD_PORT:-22}" "$source" "$dir" 2>"$err"; then
            why=$(grep -v '^[[:space:]]*$' "$err" | tail -n 1)
            rm -f "$err"
            die "sshfs could not mount $source: ${why:-it said nothing}"
        fi
        rm -f "$err"
    fi
    printf '{"action": %s, "path": %s}\n' "$(json_text "$action")" "$(json_text "$dir")"
}

unmount_data() {
    folder
    files="$HOME/${LABVM_DATA_FILES:?LABVM_DATA_FILES is required}"
    action="not mounted"
    if [ "$(mounted)" = fuse.sshfs ]; then
        release
        action=unmounted
    fi
    rm -f "$files.key" "$files.known_hosts"
    printf '{"action": %s, "path": %s}\n' "$(json_text "$action")" "$(json_text "$dir")"
}

case ${1:-} in
    serve) serve ;;
    unserve) unserve ;;
    mount) mount_data ;;
    unmount) unmount_data ;;
    *) die "usage: cluster_data.sh serve|unserve|mount|unmount" ;;
esac
