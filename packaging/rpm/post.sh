# $1: 1 on a fresh install, 2 or more on an upgrade (the old package's %postun restarts).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Enabled as the presets say (50-realtime.preset: both sockets), then opened.
    systemctl --no-reload preset realtime.socket realtime-flash.socket >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ] && systemctl --quiet is-enabled realtime.socket; then
        systemctl start realtime.socket realtime-flash.socket >/dev/null 2>&1 || :
    fi
fi
