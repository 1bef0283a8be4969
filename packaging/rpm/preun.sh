# $1: 0 when the package is erased, 1 on an upgrade (nothing to stop then).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now realtime.socket realtime-flash.socket realtime.service >/dev/null 2>&1 || :
fi
