#!/bin/sh
# Adds labvm's public key (LABVM_PUBKEY) to ~/.ssh/authorized_keys once.
set -eu
. "$(dirname "$0")/common.sh"
key=${LABVM_PUBKEY:?LABVM_PUBKEY is required}
umask 077
[ -d "$HOME/.ssh" ] || mkdir -m 700 "$HOME/.ssh"
keys="$HOME/.ssh/authorized_keys"
[ -e "$keys" ] || : > "$keys"
if grep -qxF -- "$key" "$keys"; then
    say "keys: labvm key already in ~/.ssh/authorized_keys"
    exit 0
fi
# A file without a final newline would glue our key onto the last one.
if [ -s "$keys" ] && [ -n "$(tail -c 1 "$keys")" ]; then printf '\n' >> "$keys"; fi
printf '%s\n' "$key" >> "$keys"
say "keys: labvm key added to ~/.ssh/authorized_keys"
