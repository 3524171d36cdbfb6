#!/bin/sh
# The profile's data volume (hosts.yml data:) mounted at its folder, for good: data.sh
#   LABVM_DATA_MOUNT    the folder (~, ~/x or /x): where the volume's filesystem is mounted
#   LABVM_DATA_OWNER    the login that owns the folder (default: whoever runs this)
#   LABVM_DATA_DEVICES  where the guest may find the volume, one path a line, the likeliest first
#                       (the cloud's /dev/disk/by-id names: labvm.providers.base.Volume.devices)
#   LABVM_DATA_WAIT     seconds to wait for one of them to appear (udev adds it after the attach)
#   LABVM_DATA_FSTAB    the fstab to keep the mount in (default /etc/fstab; tests name a copy)
# Runs as root: started as the login, it runs itself again with `sudo -n` (mount, mkfs, fstab).
# A filesystem on the volume is never formatted again; a blank volume is formatted ext4, labelled
# labvm's only once mkfs finished (a format killed halfway is recognised by its temporary label
# and done again).  Mounted by filesystem UUID with nofail, in one fstab line of labvm's (its
# x-labvm.data option), replaced on each run, never duplicated.  Safe to run again: a run that
# finds it all in place changes nothing.  Prints one JSON line: what is mounted and what it did.
# `data.sh usage` only reads: the mounted filesystem's size, used and free bytes (or that none is mounted).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

FINAL_LABEL="labvm-data"     # a filesystem labvm made and finished (ext4 labels: 16 bytes at most)
PARTIAL_LABEL="labvm-partial" # a format labvm began: until relabelled, nothing of the user's is on it
MARK="x-labvm.data"          # mount(8): "x-*" options are comments for userspace, never sent to the kernel
# Mounted with nofail (a missing volume does not stop the boot), waited for 30 s at boot, fsck'd
# after the root disk: as AWS ("Make an Amazon EBS volume available for use") and Google Cloud
# ("Format and mount a non-boot disk on a Linux VM") write their fstab lines.
OPTIONS="defaults,nofail,x-systemd.device-timeout=30s,$MARK"

owner=${LABVM_DATA_OWNER:-$(id -un)}
mount_dir=$(expand_home "${LABVM_DATA_MOUNT:?LABVM_DATA_MOUNT: the folder to mount the data volume at}")
fstab=${LABVM_DATA_FSTAB:-/etc/fstab}
wait_seconds=${LABVM_DATA_WAIT:-60}

did=""  # what this run changed, as JSON strings: "folder", "formatted", "mounted", "grown", "fstab"
changed() { did="${did:+$did,}\"$1\""; }

# -- the inputs, checked before anything acts on them ----------------------------------------------

check_mount_dir() {
    case $mount_dir in
        /*) ;;
        *) die "data.mount: must be an absolute folder or one inside the home, not '$mount_dir'" ;;
    esac
    # fstab separates its fields by blanks and lines by newlines: a folder with a newline, a tab or a
    # backslash (fstab's escape) is refused; a space is written \040 (fstab(5)).
    controls=$(printf '%s' "$mount_dir" | tr -cd '\001-\037\177'; echo .)
    case $mount_dir in
        *'\'*) controls="\\." ;;
    esac
    [ "$controls" = . ] || die "data.mount: a folder name with a newline, a tab, a backslash or a control character cannot go into fstab; choose a plainer one"
    case /$mount_dir/ in
        */../* | */./*) die "data.mount: '.' and '..' are not allowed in '$mount_dir'" ;;
    esac
}

# Not a system folder, nor a folder holding the homes: mounting over it would hide what the VM needs.
check_not_system() {
    case $1 in
        / | /bin | /bin/* | /boot | /boot/* | /dev | /dev/* | /etc | /etc/* | /lib | /lib/* | /lib64 | /lib64/* \
            | /proc | /proc/* | /run | /run/* | /sbin | /sbin/* | /sys | /sys/* | /usr | /usr/* \
            | /home | /root | /var | /tmp | /opt | /srv | /mnt | /media | "$HOME" | "$(getent passwd "$owner" | cut -d: -f6)")
            die "data.mount: '$1' is a system folder (or the home itself); mounting the volume there would hide what the VM needs; use ~/data or /data" ;;
    esac
}

check_owner() {
    uid=$(id -u "$owner" 2>/dev/null) || die "no user '$owner' on this VM to own the data folder"
    gid=$(id -g "$owner")
}

# The first candidate that is a block device, waited for up to $wait_seconds.  A /dev/disk/by-id path names
# this volume alone (its serial); any other path (/dev/xvdf) is a name the kernel may give another disk, so
# where by-id paths are offered, the others count only once those had BY_ID_FIRST seconds to appear (udev
# links them a moment after the attach).
BY_ID_FIRST=10
find_device() {
    [ -n "${LABVM_DATA_DEVICES:-}" ] || die "no device path for the data volume was given"
    for candidate in $LABVM_DATA_DEVICES; do
        # A path, in the characters udev's by-id names use (only a block device is then used).
        case $candidate in
            /*[!A-Za-z0-9._:+@=,/-]* | [!/]*) die "'$candidate' is not a device path labvm accepts" ;;
        esac
    done
    by_id=0
    case $LABVM_DATA_DEVICES in */by-id/*) by_id=1 ;; esac
    waited=0
    while :; do
        for candidate in $LABVM_DATA_DEVICES; do
            case $candidate in
                */by-id/*) ;;
                *) [ "$by_id" = 0 ] || [ "$waited" -ge "$BY_ID_FIRST" ] || continue ;;
            esac
            if [ -b "$candidate" ]; then
                device=$candidate
                block=$(readlink -f "$candidate")
                return 0
            fi
        done
        [ "$waited" -lt "$wait_seconds" ] \
            || die "the data volume did not appear on the VM within ${wait_seconds}s (looked for: $(echo $LABVM_DATA_DEVICES)); is it attached?"
        [ "$waited" -gt 0 ] || say "data: waiting for the volume to appear ($(echo $LABVM_DATA_DEVICES))"
        sleep 1
        waited=$((waited + 1))
    done
}

# -- what the device holds ----------------------------------------------------------------------

# One value of blkid's low-level probe (-p: the device itself, no cache); "" when none.
probed() { blkid -p -o export "$block" 2>/dev/null | sed -n "s/^$1=//p" | head -n 1; }

# "blank" | "ours" | "partial" | "ext4" | "xfs" | dies saying what it holds.
classify() {
    holders=$(ls "/sys/class/block/${block##*/}/holders" 2>/dev/null || true)
    [ -z "$holders" ] || die "$device is in use by $(echo $holders) (device-mapper, LVM or RAID); labvm will not touch it"
    set +e
    blkid -p -o export "$block" >/dev/null 2>&1
    found=$?
    set -e
    # wipefs knows signatures of its own as well: a blank volume is blank to both.
    signatures=$(wipefs --no-act --parsable "$block" 2>/dev/null | cut -d, -f4 | tr '\n' ' ')
    if [ "$found" = 2 ] && [ -z "$signatures" ]; then
        echo blank
        return
    fi
    [ "$found" = 0 ] || die "$device holds more than one signature or cannot be read (${signatures:-blkid status $found}); labvm will not format it"
    table=$(probed PTTYPE)
    [ -z "$table" ] || die "$device holds a partition table ($table); labvm will not format it: use a blank volume, or mount its partition yourself"
    type=$(probed TYPE)
    label=$(probed LABEL)
    case $type in
        ext4)
            case $label in
                "$PARTIAL_LABEL") echo partial ;;
                "$FINAL_LABEL") echo ours ;;
                *) echo ext4 ;;
            esac
            ;;
        xfs) echo xfs ;;
        *) die "$device holds ${type:-something} (not ext4 or xfs); labvm will not format it: use a blank volume, or wipe it yourself" ;;
    esac
}

# Formats ext4 under the temporary label, then labels it labvm's: a kill -9 before the relabel
# leaves a filesystem the next run knows to be half-made.  root_owner: the login owns it from
# mkfs on; -m 0: no blocks kept for root on a data disk (Google Cloud's mkfs line).
format() {
    say "data: formatting $device ($block) as ext4"
    force=""
    if [ "$1" = partial ]; then force=-F; fi  # mkfs asks before it overwrites a filesystem, even our half-made one
    mkfs.ext4 -q $force -m 0 -L "$PARTIAL_LABEL" -E "root_owner=$uid:$gid" "$block" </dev/null >&2
    e2label "$block" "$FINAL_LABEL"
    changed formatted
}

# -- the folder and the mount -------------------------------------------------------------------

# Each missing folder on the way made and given to the owner; the folder as the kernel names it.
make_folder() {
    path=""
    rest=${mount_dir#/}
    while [ -n "$rest" ]; do
        part=${rest%%/*}
        [ "$part" = "$rest" ] && rest="" || rest=${rest#*/}
        [ -n "$part" ] || continue
        path="$path/$part"
        if [ ! -e "$path" ] && [ ! -L "$path" ]; then
            mkdir "$path"
            chown "$uid:$gid" "$path"
            if [ "$path" = "$mount_dir" ]; then changed folder; fi
        fi
    done
    [ -d "$mount_dir" ] || die "data.mount: '$mount_dir' exists and is not a folder"
    real_dir=$(readlink -f "$mount_dir")
    check_not_system "$real_dir"
}

# Where the block device is mounted now ("" when nowhere), as findmnt writes it for people.
mounted_at() { findmnt -n -S "$block" -o TARGET 2>/dev/null | head -n 1 || true; }

# The folder is free for the volume: its mount point already, or a plain empty folder.  Checked
# before anything is formatted, so a refusal leaves the volume as it was.
check_folder() {
    if mountpoint -q "$real_dir"; then
        source=$(readlink -f "$(findmnt -n -M "$real_dir" -o SOURCE | head -n 1)")
        [ "$source" = "$block" ] && return 0
        die "$real_dir is already a mount point of $source; labvm mounts the data volume only on a plain folder"
    fi
    where=$(mounted_at)
    [ -z "$where" ] || die "$device is mounted at $where already, not at $real_dir; unmount it there (or set data.mount to it)"
    # Mounting would hide what the folder holds: refused, nothing moved.  The user decides where those
    # files go (often into the volume); labvm moving them as root could split what belongs together.
    if [ -n "$(ls -A "$real_dir")" ]; then
        count=$(ls -A "$real_dir" | wc -l | tr -d ' ')
        die "$real_dir holds $count file(s) before the data volume is mounted there, which the mount would hide; move them elsewhere (into the volume once mounted, if you want them there)"
    fi
}

mount_volume() {
    mountpoint -q "$real_dir" && return 0  # by the volume itself: check_folder said so
    mount -t "$1" "$block" "$real_dir"
    changed mounted
}

# The path as an fstab field: a space is \040 (fstab(5)); the rest was checked above.
fstab_field() { printf '%s' "$1" | sed 's/ /\\040/g'; }

# labvm's line (the one with $MARK) replaced by this volume's, the file renamed into place whole.
write_fstab() {
    line="UUID=$uuid $(fstab_field "$real_dir") $1 $OPTIONS 0 2"
    if [ -f "$fstab" ]; then
        # A line of someone else's for the same filesystem or folder: theirs, and it would clash.
        awk -v mark="$MARK" -v uuid="UUID=$uuid" -v dir="$(fstab_field "$real_dir")" '
            /^[ \t]*#/ || NF < 2 { next }
            index($4, mark) { next }
            $1 == uuid || $2 == dir { print; exit }' "$fstab" >"$fstab.labvm-clash" || true
        clash=$(cat "$fstab.labvm-clash")
        rm -f "$fstab.labvm-clash"
        [ -z "$clash" ] || die "$fstab already mounts this volume or folder in a line not labvm's ($clash); remove that line"
    fi
    temporary=$(mktemp "$fstab.labvm-XXXXXX")
    trap 'rm -f "$temporary"' EXIT
    { [ -f "$fstab" ] && awk -v mark="$MARK" 'NF >= 4 && !/^[ \t]*#/ && index($4, mark) { next } { print }' "$fstab"
      printf '%s\n' "$line"; } >"$temporary"
    if [ -f "$fstab" ] && cmp -s "$temporary" "$fstab"; then
        rm -f "$temporary"
        return 0
    fi
    chmod 644 "$temporary"
    sync "$temporary" 2>/dev/null || sync
    mv -f "$temporary" "$fstab"
    changed fstab
}

# The filesystem grown to the volume's size, mounted (both grow online): the cloud enlarged the volume
# (`inv data --grow`), and the guest saw it (EBS, Persistent Disk and Cinder's in-use extend tell the
# kernel).  Nothing to grow: both tools change nothing.  A filesystem that cannot grow keeps its size and
# the mount; the next run tries again.
grow_filesystem() {
    before=$(df -P -B1 "$real_dir" | awk 'NR == 2 { print $2 }')
    case $1 in
        ext4) grown=$(resize2fs "$block" 2>&1 >/dev/null) || say "data: resize2fs could not grow $device: $(printf '%s' "$grown" | tail -n 1)" ;;
        xfs) grown=$(xfs_growfs "$real_dir" 2>&1 >/dev/null) || say "data: xfs_growfs could not grow $device: $(printf '%s' "$grown" | tail -n 1)" ;;
    esac
    [ "$(df -P -B1 "$real_dir" | awk 'NR == 2 { print $2 }')" = "$before" ] || changed grown
}

json_text() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# -- the run: one at a time on a VM -----------------------------------------------------------

check_mount_dir
check_not_system "$mount_dir"
# `data.sh usage`: what `inv data` shows of the mounted volume, read only, as the login (no sudo).
if [ "${1:-}" = usage ]; then
    real_dir=$(readlink -f "$mount_dir" 2>/dev/null || true)
    if [ -n "$real_dir" ] && mountpoint -q "$real_dir"; then
        set -- $(df -P -B1 "$real_dir" | awk 'NR == 2 { print $2, $3, $4 }')
        case "${1:-}${2:-}${3:-x}" in
            *[!0-9]*) die "df gave no size for $real_dir" ;;
        esac
        printf '{"mounted": true, "size": %s, "used": %s, "free": %s}\n' "$1" "$2" "$3"
    else
        printf '{"mounted": false}\n'
    fi
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    # ~ was expanded above, with the login's own HOME; sudo may give root's.
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
        || die "mounting the data volume needs root: $owner may not run 'sudo -n' on this VM; allow it in sudoers (cloud images do)"
    exec sudo -n env LABVM_DATA_MOUNT="$mount_dir" LABVM_DATA_OWNER="$owner" \
        LABVM_DATA_DEVICES="${LABVM_DATA_DEVICES:-}" LABVM_DATA_WAIT="$wait_seconds" \
        LABVM_DATA_FSTAB="$fstab" sh "$here/data.sh"
fi
check_owner
find_device
mkdir -p /run/lock
exec 9>/run/lock/labvm-data.lock
flock -w 120 9 || die "another data.sh has held the data volume's lock for 2 minutes"

make_folder
check_folder
state=$(classify)
formatted=false
case $state in
    blank | partial)
        format "$state"
        formatted=true
        ;;
esac
fstype=$(probed TYPE)
uuid=$(probed UUID)
case $uuid in
    "" | *[!0-9A-Fa-f-]*) die "$device has no filesystem UUID labvm can use ('$uuid')" ;;
esac
mount_volume "$fstype"
grow_filesystem "$fstype"
write_fstab "$fstype"
[ "$formatted" = false ] || say "data: formatted $device as ext4, mounted at $real_dir"

set -- $(df -P -B1 "$real_dir" | awk 'NR == 2 { print $2, $4 }')
case "${1:-}${2:-x}" in
    *[!0-9]*) die "df gave no size for $real_dir" ;;
esac
printf '{"device": %s, "uuid": %s, "filesystem": %s, "formatted": %s, "mount": %s, "size": %s, "free": %s, "did": [%s]}\n' \
    "$(json_text "$device")" "$(json_text "$uuid")" "$(json_text "$fstype")" "$formatted" \
    "$(json_text "$real_dir")" "$1" "$2" "$did"
