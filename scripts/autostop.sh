#!/bin/sh
# Idle auto-stop on the host: autostop.sh apply | extend
#   LABVM_AUTOSTOP_IDLE     idle seconds before the machine stops itself; 0 turns autostop off
#   LABVM_AUTOSTOP_LOAD     a 1-minute load average at or above this is activity
#   LABVM_AUTOSTOP_GPU      an NVIDIA GPU's utilisation (%) at or above this is activity (default 10)
#   LABVM_AUTOSTOP_COMMAND  what stops the machine (default: sudo -n shutdown -h now)
#   LABVM_AUTOSTOP_SET_BY   hosts.yml | inv autostop
#   LABVM_AUTOSTOP_KEEP     1: keep a setting made with `inv autostop` (what setup passes)
#   LABVM_PORT              Jupyter's port on the host
#   LABVM_AUTOSTOP_SCHEDULER  HOST:PORT on a cluster's worker VM: it stops itself once its head's
#                           Dask scheduler there stops answering (autostop.py WORKER_GRACE), not
#                           when Jupyter is idle; empty on the head and on a single VM
# Writes layout.py AUTOSTOP_SETTINGS, then runs autostop.py check every minute: a systemd timer
# where systemd runs and sudo is allowed, else the user's crontab.  Prints the status as JSON.
# extend: the machine counts as in use until LABVM_AUTOSTOP_UNTIL (epoch seconds; 0 ends an
# extension now), then idle time counts again by itself.  Prints the status as JSON.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

# The system's python3 outlives any env labvm installs; the check needs only the stdlib.
py=$(command -v python3 || true)
[ -n "$py" ] || py=$(env_python "$(expand_home "${LABVM_ENV_PREFIX:-~/.labvm/env}")")
user=$(id -un)
unit="$AUTOSTOP_UNIT_PREFIX$user"
mark=$AUTOSTOP_CRON_MARK

can_sudo() { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
has_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# Writes $2 to the root-owned file $1 only when it differs; true if it changed.
install_file() {
    if [ -f "$1" ] && printf '%s\n' "$2" | cmp -s - "$1"; then return 1; fi
    printf '%s\n' "$2" | as_root tee "$1" > /dev/null
}

schedule_systemd() {
    changed=0
    install_file "/etc/systemd/system/$unit.service" "[Unit]
Description=labvm: stop this machine when $user's Jupyter and logins have been idle

[Service]
Type=oneshot
User=$user
ExecStart=\"$py\" \"$here/autostop.py\" check" && changed=1
    install_file "/etc/systemd/system/$unit.timer" "[Unit]
Description=labvm: idle check every minute for $user

[Timer]
OnBootSec=2min
OnUnitActiveSec=1min
AccuracySec=10s

[Install]
WantedBy=timers.target" && changed=1
    [ "$changed" = 0 ] || as_root systemctl daemon-reload
    as_root systemctl enable --now "$unit.timer" >/dev/null 2>&1
}

crontab_without_labvm() { crontab -l 2>/dev/null | grep -v -F "$mark" || true; }

schedule_cron() {
    line="* * * * * '$py' '$here/autostop.py' check >/dev/null 2>&1 $mark"
    if crontab -l 2>/dev/null | grep -q -x -F "$line"; then return; fi
    { crontab_without_labvm; printf '%s\n' "$line"; } | crontab -
}

unschedule() {
    if [ -f "/etc/systemd/system/$unit.timer" ] && can_sudo; then
        as_root systemctl disable --now "$unit.timer" >/dev/null 2>&1 || true
        as_root rm -f "/etc/systemd/system/$unit.timer" "/etc/systemd/system/$unit.service"
        as_root systemctl daemon-reload
    fi
    if command -v crontab >/dev/null 2>&1 && crontab -l 2>/dev/null | grep -q -F "$mark"; then
        crontab_without_labvm | crontab -
    fi
}

apply() {
    mkdir -p "$STATE"
    idle=$("$py" "$here/autostop.py" configure)
    if [ "$idle" = 0 ]; then
        unschedule
        say "autostop: off; this machine runs until you stop it"
    else
        if has_systemd && can_sudo; then
            schedule_systemd
            how="a systemd timer ($unit.timer)"
        elif command -v crontab >/dev/null 2>&1; then
            schedule_cron
            how="cron"
        else
            die "autostop needs systemd (with sudo) or cron on the host; install cron (sudo apt-get install cron) or set autostop: off"
        fi
        say "autostop: checked every minute by $how; decisions in ~/$AUTOSTOP_LOG"
        if [ -z "${LABVM_AUTOSTOP_COMMAND:-}" ] && ! can_sudo; then
            say "autostop: warning: $user may not run 'sudo -n shutdown', so the machine cannot stop itself; allow it in sudoers"
        fi
    fi
    "$py" "$here/autostop.py" status
}

extend() {
    case ${LABVM_AUTOSTOP_UNTIL:-} in
        '' | *[!0-9]*) die "LABVM_AUTOSTOP_UNTIL must be a time in epoch seconds (0 ends the extension), not '${LABVM_AUTOSTOP_UNTIL:-}'" ;;
    esac
    mkdir -p "$STATE"
    "$py" "$here/autostop.py" extend
    "$py" "$here/autostop.py" status
}

case ${1:-} in
    apply) apply ;;
    extend) extend ;;
    *) die "usage: autostop.sh apply|extend" ;;
esac
