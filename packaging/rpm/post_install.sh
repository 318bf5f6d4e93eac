# auditship %post ($1: 1 on install, 2 or more on upgrade): the service's user and
# state directory, then the unit. Enabling on first install only; an upgrade keeps
# the administrator's choice and restarts a running service on the new binary.
getent group auditship >/dev/null || groupadd --system auditship
getent passwd auditship >/dev/null || useradd --system --gid auditship --no-create-home \
    --home-dir /var/lib/auditship --shell /sbin/nologin --comment "auditship daemon" auditship
install -d -m 0700 -o auditship -g auditship /var/lib/auditship
if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || :
    fi
    if [ "$1" -eq 1 ]; then
        systemctl enable auditship.service >/dev/null 2>&1 || :
    elif [ -d /run/systemd/system ]; then
        systemctl try-restart auditship.service || :
    fi
fi
