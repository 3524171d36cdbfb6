"""`up` on a prepared host, as the user reads it (issue 28 C12): no "already open" for a tunnel this
`up` just woke, and `status` says when a changed notebook.port takes effect."""

from realhost import free_port, ssh_profile, url_of


def test_up_after_down_does_not_call_the_tunnel_it_wakes_already_open(lab, user, sshd):
    lab.write_hosts({"vm": ssh_profile(user, sshd)})
    lab.inv("up", "--host", "vm", "--no-browser")
    lab.inv("down", "--host", "vm", "--no-sync")
    woken = lab.inv("up", "--host", "vm", "--no-browser").output
    assert "already open" not in woken, woken
    assert url_of(woken)
    again = lab.inv("up", "--host", "vm", "--no-browser").output  # a rerun: it was open before
    assert "tunnel: already open" in again, again
    lab.inv("down", "--host", "vm", "--no-sync")


def test_status_says_a_changed_notebook_port_waits_for_the_next_up(lab, user, sshd):
    profile = ssh_profile(user, sshd)
    lab.write_hosts({"vm": profile})
    lab.inv("up", "--host", "vm", "--no-browser")
    old, new = profile["notebook"]["port"], free_port()
    profile["notebook"]["port"] = new
    lab.write_hosts({"vm": profile})
    status = lab.inv("status", "--host", "vm").stdout
    assert f"running on host port {old}" in status, status
    assert f"notebook.port is now {new}; it takes effect at the next `inv up --host vm`" in status, status
    lab.inv("down", "--host", "vm", "--no-sync")
