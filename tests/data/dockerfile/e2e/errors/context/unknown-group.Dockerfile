FROM busybox
COPY passwd group /etc/
COPY --chown=app:nosuchgroup a.txt /
