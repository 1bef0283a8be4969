# The realtime user, before the files owned by its group are unpacked. The sysusers.d file
# is not installed yet, so its line is given here (packaging/realtime.sysusers).
systemd-sysusers --replace=/usr/lib/sysusers.d/realtime.conf - <<'SYSUSERS' || :
u realtime - "Realtime message server" /nonexistent /usr/sbin/nologin
SYSUSERS
