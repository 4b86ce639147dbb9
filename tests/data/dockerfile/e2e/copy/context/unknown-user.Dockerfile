FROM busybox
COPY passwd group /etc/
COPY --chown=nosuchuser a.txt /unknown-user.txt
COPY --chown=app:nosuchgroup a.txt /unknown-group.txt
COPY --chown=nosuchuser:staff a.txt /unknown-user-known-group.txt
