# $1: 0 after an erase, 1 after an upgrade: then restart the service alone, with the new
# binary; the sockets stay open, so no connection is refused, and the sessions pass to
# the new binary through systemd's file descriptor store.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart realtime.service >/dev/null 2>&1 || :
    fi
fi
# rpm owns the files, not their folders: remove those left empty (kept: .rpmsave files).
if [ "$1" -eq 0 ]; then
    rmdir /usr/share/realtime/www /usr/share/realtime \
        /usr/share/doc/realtime/examples/supervisor /usr/share/doc/realtime/examples \
        /usr/share/doc/realtime /etc/realtime 2>/dev/null || :
fi
