# auditship %postun: let systemd forget the unit. As is usual for RPM, the user and
# /var/lib/auditship (the queue: events not yet shipped) stay after an erase.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || :
fi
